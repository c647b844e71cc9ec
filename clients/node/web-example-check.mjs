// The operator's dashboard, the example web app (examples/web, built) and a real backend client (the Node
// flagd provider over RPC) against one flagpole daemon serving examples/flags.json, in headless Chromium
// through playwright-core. Used by daemon/tests/it/web_example.rs.
//
// Usage: node web-example-check.mjs MANAGEMENT_URL OFREP_URL EVALUATION_PORT TOKEN FLAG_FILE WEB_DIST SHOTS_DIR
// Prints one JSON line per check, then {"ok":true}. Screenshots of each state go to SHOTS_DIR.
import { createServer } from 'node:http';
import { readFileSync, writeFileSync, renameSync, mkdirSync } from 'node:fs';
import { extname, join, normalize } from 'node:path';
import { chromium } from 'playwright-core';
import { OpenFeature, ProviderEvents } from '@openfeature/server-sdk';
import { FlagdProvider } from '@openfeature/flagd-provider';

const [management, ofrep, evaluationPort, token, flagFile, dist, shots] = process.argv.slice(2);
const check = (name, detail = {}) => console.log(JSON.stringify({ check: name, ...detail }));
const problems = [];
mkdirSync(shots, { recursive: true });

// The built app, served as any static host would.
const types = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml' };
const server = createServer((request, response) => {
  const path = normalize(new URL(request.url, 'http://x').pathname).replace(/^(\.\.[/\\])+/, '');
  const file = join(dist, path === '/' ? 'index.html' : path);
  try {
    const body = readFileSync(file);
    response.writeHead(200, { 'Content-Type': types[extname(file)] || 'application/octet-stream' });
    response.end(body);
  } catch {
    response.writeHead(404);
    response.end();
  }
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const app = `http://127.0.0.1:${server.address().port}/?ofrep=${encodeURIComponent(ofrep)}&user=shopper-1`;

// The backend client.
await OpenFeature.setProviderAndWait(
  new FlagdProvider({ host: '127.0.0.1', port: Number(evaluationPort), resolverType: 'rpc', cache: 'disabled' }),
);
const backend = OpenFeature.getClient();
const backendChanges = [];
OpenFeature.addHandler(ProviderEvents.ConfigurationChanged, () => backendChanges.push(performance.now()));

const percentile = (values, p) => {
  const sorted = values.slice().sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
};
const until = async (what, condition, timeoutMs = 5000) => {
  const start = performance.now();
  while (!(await condition())) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return performance.now();
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const dashboard = await context.newPage();
  const shop = await context.newPage();
  let expectRefusal = false;
  for (const page of [dashboard, shop]) {
    page.setDefaultTimeout(15_000);
    page.on('pageerror', (error) => problems.push(`page: ${error.message}`));
    page.on('console', (message) => {
      if (expectRefusal && message.text().includes('status of 401')) {
        expectRefusal = false;
        return;
      }
      if (message.type() === 'error') problems.push(`console: ${message.text()}`);
    });
  }

  // The dashboard lists the example file's flags.
  await dashboard.goto(`${management}/ui/`);
  await dashboard.getByRole('link', { name: 'banner', exact: true }).waitFor();
  const listed = await dashboard.locator('tbody tr td:first-child').allTextContents();
  check('dashboard-flags', { listed });
  await dashboard.screenshot({ path: join(shots, '1-dashboard-flags.png'), fullPage: true });

  // The shop, as a visitor.
  await shop.goto(app);
  await shop.locator('[data-testid=checkout][data-variant]').waitFor();
  await until('the shop to load', async () => (await shop.locator('[data-testid=banner]').textContent()) === 'Welcome');
  check('shop', {
    checkout: await shop.locator('[data-testid=checkout]').getAttribute('data-variant'),
    banner: await shop.locator('[data-testid=banner]').textContent(),
  });
  await shop.screenshot({ path: join(shots, '2-shop-before.png') });

  // Explain shows the branch taken for an internal user.
  await dashboard.getByRole('link', { name: 'new-checkout', exact: true }).click();
  await dashboard.getByLabel('Evaluation context (JSON)').fill('{"targetingKey": "u-1", "email": "dev@example.com"}');
  await dashboard.getByRole('button', { name: 'Explain' }).click();
  const answer = await dashboard.locator('#explain-result .answer').textContent();
  const taken = await dashboard.locator('#explain-result .step.taken > .label').allTextContents();
  check('explain', { answer, taken });
  await dashboard.screenshot({ path: join(shots, '3-dashboard-explain.png'), fullPage: true });

  // A wrong token is refused in the page.
  await dashboard.getByLabel('Admin token (kept for this tab only)').fill('wrong');
  await dashboard.getByRole('button', { name: 'Use', exact: true }).click();
  await dashboard.getByRole('heading', { name: 'Kill switch' }).waitFor();
  await dashboard.getByLabel('Override', { exact: true }).selectOption({ label: 'Everyone gets on' });
  await dashboard.getByRole('button', { name: 'Apply override…' }).click();
  expectRefusal = true;
  await dashboard.getByRole('dialog').getByRole('button', { name: 'Apply' }).click();
  const refused = await dashboard.getByRole('status').filter({ hasText: 'Not set' }).textContent();
  check('wrong-token', { refused });
  await dashboard.screenshot({ path: join(shots, '4-dashboard-wrong-token.png'), fullPage: true });

  // The right token: the kill switch reaches the backend client and the shop within a second.
  const before = (await backend.getBooleanDetails('new-checkout', false, { targetingKey: 'api-1' })).value;
  await dashboard.getByRole('button', { name: 'Forget' }).click();
  await dashboard.getByLabel('Admin token (kept for this tab only)').fill(token);
  await dashboard.getByRole('button', { name: 'Use', exact: true }).click();
  await dashboard.getByRole('heading', { name: 'Kill switch' }).waitFor();
  await dashboard.getByLabel('Override', { exact: true }).selectOption({ label: 'Everyone gets on' });
  await dashboard.getByLabel('Reason', { exact: true }).fill('launch day');
  await dashboard.getByRole('button', { name: 'Apply override…' }).click();
  check('shop-state', {
    visibility: await shop.evaluate(() => document.visibilityState),
    streams: (await (await fetch(`${management}/metrics`)).text()).match(/flagpole_ofrep_sse_streams (\d+)/)?.[1],
  });
  const changesBefore = backendChanges.length;
  // The clock starts when the page sends the override (Playwright's click itself waits on its own).
  let flipped = 0;
  const sent = dashboard.waitForRequest((r) => r.method() === 'PUT' && r.url().includes('/api/v1/overrides/'))
    .then(() => { flipped = performance.now(); });
  await dashboard.getByRole('dialog').getByRole('button', { name: 'Apply' }).click();
  await sent;
  const shopAt = await until('the shop to show the new checkout', async () => (await shop.locator('[data-testid=checkout]').getAttribute('data-variant')) === 'new');
  const backendAt = await until('the backend client to see the override', async () => backendChanges.length > changesBefore
    && (await backend.getBooleanDetails('new-checkout', false, { targetingKey: 'api-1' })).value === true);
  await dashboard.getByText('Overridden by', { exact: false }).waitFor();
  check('kill-switch', { before, shopMs: Math.round(shopAt - flipped), backendMs: Math.round(backendAt - flipped) });
  await dashboard.screenshot({ path: join(shots, '5-dashboard-overridden.png'), fullPage: true });
  await shop.screenshot({ path: join(shots, '6-shop-overridden.png') });

  // Flag file edits reach the open dashboard and the shop without a reload: 20 edits of the banner.
  await dashboard.goto(`${management}/ui/`);
  await dashboard.getByRole('link', { name: 'banner', exact: true }).waitFor();
  const original = readFileSync(flagFile, 'utf8');
  const bannerDefault = () => dashboard.locator('tr', { has: dashboard.getByRole('link', { name: 'banner', exact: true }) })
    .locator('td').nth(3).textContent();
  const shopTimes = [];
  const dashboardTimes = [];
  for (let i = 1; i <= 20; i++) {
    const variant = i % 2 ? 'sale' : 'plain';
    const text = original.replace(/("banner"[\s\S]*?"defaultVariant":\s*)"plain"/, `$1"${variant}"`);
    if (text === original && variant === 'sale') throw new Error('the banner default was not found in the flag file');
    const start = performance.now();
    writeFileSync(`${flagFile}.tmp`, text);
    renameSync(`${flagFile}.tmp`, flagFile);
    const expected = variant === 'sale' ? 'Spring sale: 15% off' : 'Welcome';
    const [shopDone, dashboardDone] = await Promise.all([
      until(`the shop to show ${variant}`, async () => (await shop.locator('[data-testid=banner]').textContent()) === expected),
      until(`the dashboard to show ${variant}`, async () => (await bannerDefault()) === variant),
    ]);
    shopTimes.push(shopDone - start);
    dashboardTimes.push(dashboardDone - start);
    await new Promise((resolve) => setTimeout(resolve, 150));
  }
  const round = (v) => Math.round(v);
  check('edits', {
    count: shopTimes.length,
    shopP50: round(percentile(shopTimes, 50)),
    shopP99: round(percentile(shopTimes, 99)),
    dashboardP50: round(percentile(dashboardTimes, 50)),
    dashboardP99: round(percentile(dashboardTimes, 99)),
  });
  await shop.screenshot({ path: join(shots, '7-shop-after-edits.png') });
  await dashboard.screenshot({ path: join(shots, '8-dashboard-after-edits.png'), fullPage: true });

  if (problems.length) {
    console.log(JSON.stringify({ ok: false, problems }));
    process.exitCode = 1;
  } else {
    console.log(JSON.stringify({ ok: true }));
  }
} finally {
  await browser.close();
  await OpenFeature.close();
  server.close();
}
