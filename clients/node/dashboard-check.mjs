// Drives flagpole's dashboard (/ui/ on the management port) in a real headless Chromium through
// playwright-core, as an operator would: the flag list, a flag's page, explain, the kill switch (refused
// without a token, then set with one, confirmed in a dialog), and the live change list following a flag
// file edit. Used by daemon/tests/it/dashboard.rs. Finds elements by role and accessible name, as a
// screen reader does; any console error or Content-Security-Policy violation fails the run.
//
// Usage: node dashboard-check.mjs MANAGEMENT_URL FLAG TOKEN FLAG_FILE NEW_FLAG_FILE_TEXT
// Prints one JSON line per check, then {"ok":true}.
import { writeFileSync, renameSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [base, flag, token, flagFile, newText] = process.argv.slice(2);
const check = (name, detail = {}) => console.log(JSON.stringify({ check: name, ...detail }));
const problems = [];

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  let expectRefusal = false;
  page.on('console', (message) => {
    // The one refusal this script provokes (the kill switch without a token) is logged by the browser.
    if (expectRefusal && message.text().includes('status of 401')) {
      expectRefusal = false;
      return;
    }
    if (message.type() === 'error') problems.push(`console: ${message.text()}`);
  });
  page.on('pageerror', (error) => problems.push(`page: ${error.message}`));
  page.setDefaultTimeout(15_000);

  const response = await page.goto(`${base}/ui/`);
  check('headers', { csp: response.headers()['content-security-policy'] });
  await page.getByRole('link', { name: flag, exact: true }).waitFor();
  check('flag-listed');
  // A flag whose key, variant and owner are markup: shown as text, never parsed.
  await page.getByRole('link', { name: '<img src=x onerror=alert(1)>', exact: true }).waitFor();
  check('hostile-names', {
    injected: await page.locator('main img, main b, main script').count(),
  });
  // The first Tab reaches the skip link; the token field has a name.
  await page.keyboard.press('Tab');
  check('first-tab', { focused: await page.evaluate(() => document.activeElement.textContent) });
  await page.getByLabel('Admin token (kept for this tab only)').waitFor();

  await page.getByRole('link', { name: flag, exact: true }).click();
  await page.getByRole('heading', { name: 'Kill switch' }).waitFor();
  check('flag-page');

  await page.getByLabel('Evaluation context (JSON)').fill('{"targetingKey": "u-1", "plan": "free"}');
  await page.getByRole('button', { name: 'Explain' }).click();
  const answer = await page.locator('#explain-result .answer').textContent();
  const taken = await page.locator('#explain-result .step.taken > .label').allTextContents();
  const skipped = await page.locator('#explain-result .step.skipped').count();
  check('explain', { answer, taken, skipped });

  // Without a token: refused, and the page says so.
  expectRefusal = true;
  await page.getByLabel('Override', { exact: true }).selectOption({ label: 'Everyone gets off' });
  await page.getByRole('button', { name: 'Apply override…' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Apply' }).click();
  const refused = await page.getByRole('status').filter({ hasText: 'Not set' }).textContent();
  check('refused-without-token', { refused });

  await page.getByLabel('Admin token (kept for this tab only)').fill(token);
  await page.getByRole('button', { name: 'Use', exact: true }).click();
  await page.getByRole('heading', { name: 'Kill switch' }).waitFor();
  await page.getByLabel('Override', { exact: true }).selectOption({ label: 'Everyone gets off' });
  await page.getByLabel('Reason', { exact: true }).fill('incident 7');
  // Cancel first: nothing happens.
  await page.getByRole('button', { name: 'Apply override…' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Cancel' }).click();
  const afterCancel = await (await fetch(`${base}/api/v1/overrides`)).json();
  check('cancelled', { overrides: Object.keys(afterCancel.overrides) });
  await page.getByRole('button', { name: 'Apply override…' }).click();
  const question = await page.locator('#confirm-text').textContent();
  await page.getByRole('dialog').getByRole('button', { name: 'Apply' }).click();
  // The page follows the change live (no reload): the kill switch now says who overrode it.
  await page.getByText('Overridden by', { exact: false }).waitFor();
  const overridden = await page.getByText('Overridden by', { exact: false }).textContent();
  check('override-set', { question, overridden });

  // The live change list: a flag file edit appears without a reload.
  await page.goto(`${base}/ui/#/changes`);
  await page.locator('#changes').waitFor();
  const before = await page.locator('#changes li').count();
  const tmp = `${flagFile}.dashboard-tmp`;
  writeFileSync(tmp, newText);
  renameSync(tmp, flagFile);
  await page.waitForFunction((n) => document.querySelectorAll('#changes li').length > n, before);
  const newest = await page.locator('#changes li').first().textContent();
  check('live-change', { newest });
  const announced = await page.locator('#live').textContent();
  check('announced', { announced });

  if (problems.length) {
    console.log(JSON.stringify({ ok: false, problems }));
    process.exitCode = 1;
  } else {
    console.log(JSON.stringify({ ok: true }));
  }
} finally {
  await browser.close();
}
