// flagpole's dashboard (docs/dashboard.md). Plain DOM, no dependency, no inline code (the page's
// Content-Security-Policy allows only this file and the stylesheet). Every value from the API is written
// with textContent, never parsed as HTML.

const TOKEN_KEY = 'flagpole.adminToken';
const main = document.getElementById('main');
const live = document.getElementById('live');

// ---------------------------------------------------------------------------------------------------
// helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') node.textContent = value;
    else if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

async function api(path, options = {}) {
  const headers = { Accept: 'application/json' };
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  if (options.auth && token()) headers.Authorization = `Bearer ${token()}`;
  const response = await fetch(path, {
    method: options.method || 'GET',
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && (data.error || data.errorDetails)) || `HTTP ${response.status}`;
    throw new Error(message);
  }
  return data;
}

function when(unix) {
  if (!unix) return 'never';
  const seconds = Math.max(0, Math.round(Date.now() / 1000 - unix));
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

function announce(text) {
  live.textContent = text;
}

function show(title, ...content) {
  document.title = `${title} · flagpole`;
  main.replaceChildren(el('h2', { text: title }), ...content);
}

function failure(error) {
  return el('p', { class: 'error', role: 'alert', text: String(error.message || error) });
}

// ---------------------------------------------------------------------------------------------------
// the variant split: a bar per flag, with the numbers for screen readers and on hover

function split(usage) {
  const variants = Object.entries((usage && usage.variants) || {});
  const total = variants.reduce((sum, [, v]) => sum + v.count, 0);
  if (!total) return el('span', { class: 'muted', text: 'no evaluations' });
  const parts = variants
    .filter(([, v]) => v.count > 0)
    .map(([name, v]) => [name, v.count, Math.round((1000 * v.count) / total) / 10]);
  const label = parts.map(([name, count, pct]) => `${name} ${pct}% (${count})`).join(', ');
  const bar = el('span', { class: 'bar', role: 'img', 'aria-label': label, title: label });
  for (const [, , pct] of parts) {
    const segment = el('span');
    segment.style.width = `${pct}%`; // CSSOM: allowed under the page's style-src 'self'
    bar.append(segment);
  }
  return bar;
}

function staleBadges(flag) {
  const badges = (flag.stale || []).map((s) =>
    el('span', { class: 'badge', title: s.detail, text: s.reason.replace('_', ' ') }),
  );
  if (flag.override) badges.unshift(el('span', { class: 'badge override', text: 'overridden' }));
  return badges;
}

// ---------------------------------------------------------------------------------------------------
// views

async function flagsView() {
  const data = await api('/api/v1/flags');
  const rows = data.flags.map((flag) =>
    el(
      'tr',
      {},
      el('td', {}, el('a', { href: `#/flag/${encodeURIComponent(flag.key)}`, text: flag.key })),
      el('td', { text: flag.flagSetId ?? '' }),
      el('td', { text: flag.state }),
      el('td', { text: flag.defaultVariant ?? '(code default)' }),
      el('td', { text: flag.variants.join(', ') }),
      el('td', { text: [flag.owner, flag.kind, flag.expires && `expires ${flag.expires}`].filter(Boolean).join(' · ') }),
      el('td', {}, staleBadges(flag)),
      el('td', { text: when(flag.usage && flag.usage.lastEvaluated) }),
      el('td', {}, split(flag.usage)),
    ),
  );
  const head = ['Flag', 'Set', 'State', 'Default', 'Variants', 'Owner · kind · expiry', 'Markers', 'Last evaluated', 'Variant split'];
  show(
    'Flags',
    el('p', { class: 'muted', text: `${data.flags.length} flags; stale after ${Math.round(data.staleAfterSeconds / 86400)} days.` }),
    el('table', {}, el('caption', { class: 'visually-hidden', text: 'Every flag served' }),
      el('thead', {}, el('tr', {}, head.map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows)),
  );
}

async function flagView(key) {
  const data = await api(`/api/v1/flags/${encodeURIComponent(key)}`);
  const first = data.flags[0];
  const definitions = data.flags.map((flag) =>
    el('section', {},
      el('h3', { text: `Flag set ${flag.flagSetId ?? '(none)'} · source ${flag.source}` }),
      el('p', {}, staleBadges(flag), ' ', split(flag.usage)),
      el('pre', { text: JSON.stringify(flag.definition, null, 2) })),
  );
  const history = el('ol', { reversed: true },
    data.changes.slice().reverse().map((c) =>
      el('li', { text: `${new Date(c.time * 1000).toISOString()} ${c.kind} from ${c.source}${c.actor ? ` by ${c.actor}` : ''}${c.reason ? ` (${c.reason})` : ''}` }),
    ));
  show(
    key,
    el('p', {}, el('a', { href: '#/', text: '← all flags' })),
    ...definitions,
    killSwitch(key, first),
    explainForm(key),
    el('section', {}, el('h3', { text: 'Changes' }), data.changes.length ? history : el('p', { class: 'muted', text: 'None recorded since the daemon started.' })),
  );
}

function killSwitch(key, flag) {
  const status = el('p', { role: 'status' });
  const choice = el('select', { id: 'override-choice' },
    flag.variants.map((v) => el('option', { value: `variant:${v}`, text: `Everyone gets ${v}` })),
    el('option', { value: 'disable', text: 'Disable the flag' }));
  const reason = el('input', { id: 'override-reason', type: 'text', maxlength: '1024' });
  const ttl = el('input', { id: 'override-ttl', type: 'text', placeholder: '1h', size: '6' });
  const apply = el('button', {
    type: 'button',
    onclick: async () => {
      const [kind, variant] = choice.value.split(/:(.*)/s);
      const body = kind === 'disable' ? { state: 'DISABLED' } : { variant };
      if (reason.value) body.reason = reason.value;
      if (ttl.value) body.ttl = ttl.value;
      const what = kind === 'disable' ? `disable ${key}` : `serve ${variant} of ${key} to everyone`;
      if (!(await confirmAction(`This will ${what}${ttl.value ? ` for ${ttl.value}` : ''}, for every client, at once.`))) return;
      try {
        await api(`/api/v1/overrides/${encodeURIComponent(key)}`, { method: 'PUT', body, auth: true });
        status.className = 'done';
        status.textContent = 'Override set.';
      } catch (error) {
        status.className = 'error';
        status.textContent = `Not set: ${error.message}`;
      }
    },
  }, 'Apply override…');
  const clear = el('button', {
    type: 'button',
    disabled: !flag.override,
    onclick: async () => {
      if (!(await confirmAction(`This will lift the override of ${key}; its sources decide again.`))) return;
      try {
        await api(`/api/v1/overrides/${encodeURIComponent(key)}`, { method: 'DELETE', auth: true });
        status.className = 'done';
        status.textContent = 'Override lifted.';
      } catch (error) {
        status.className = 'error';
        status.textContent = `Not lifted: ${error.message}`;
      }
    },
  }, 'Lift override…');
  const current = flag.override
    ? el('p', { text: `Overridden by ${flag.override.actor}${flag.override.reason ? `: ${flag.override.reason}` : ''}${flag.override.expiresAt ? `, until ${new Date(flag.override.expiresAt * 1000).toISOString()}` : ''}.` })
    : el('p', { class: 'muted', text: 'Not overridden.' });
  return el('section', {},
    el('h3', { text: 'Kill switch' }),
    current,
    el('p', { id: 'token-hint', class: 'muted', hidden: Boolean(token()), text: 'Enter an admin token above to change it.' }),
    el('div', { class: 'row' },
      el('div', { class: 'field' }, el('label', { for: 'override-choice', text: 'Override' }), choice),
      el('div', { class: 'field' }, el('label', { for: 'override-reason', text: 'Reason' }), reason),
      el('div', { class: 'field' }, el('label', { for: 'override-ttl', text: 'Lift after (optional)' }), ttl),
      apply, clear),
    status);
}

function confirmAction(text) {
  const dialog = document.getElementById('confirm');
  document.getElementById('confirm-text').textContent = text;
  return new Promise((resolve) => {
    const ok = document.getElementById('confirm-ok');
    const cancel = document.getElementById('confirm-cancel');
    const done = (answer) => {
      ok.removeEventListener('click', yes);
      cancel.removeEventListener('click', no);
      dialog.removeEventListener('cancel', no);
      dialog.close();
      resolve(answer);
    };
    const yes = () => done(true);
    const no = () => done(false);
    ok.addEventListener('click', yes);
    cancel.addEventListener('click', no);
    dialog.addEventListener('cancel', no);
    dialog.showModal();
    cancel.focus();
  });
}

function explainForm(key) {
  const context = el('textarea', { id: 'explain-context', 'aria-describedby': 'explain-help', spellcheck: 'false' });
  context.value = '{\n  "targetingKey": "user-1"\n}';
  const out = el('div', { id: 'explain-result', 'aria-live': 'polite' });
  const run = el('button', {
    type: 'button',
    onclick: async () => {
      let parsed;
      try {
        parsed = JSON.parse(context.value || '{}');
      } catch (error) {
        out.replaceChildren(failure(new Error(`The context is not JSON: ${error.message}`)));
        return;
      }
      try {
        const explained = await api('/api/v1/explain', { method: 'POST', body: { flagKey: key, context: parsed } });
        out.replaceChildren(...explanation(explained));
      } catch (error) {
        out.replaceChildren(failure(error));
      }
    },
  }, 'Explain');
  return el('section', {},
    el('h3', { text: 'Explain' }),
    el('label', { for: 'explain-context' }, 'Evaluation context (JSON)'),
    context,
    el('p', { id: 'explain-help', class: 'muted', text: 'The answer a client with this context gets, and the path its targeting takes.' }),
    run, out);
}

function explanation(data) {
  const answer = data.variant
    ? `${data.reason}: variant ${data.variant} = ${JSON.stringify(data.value)}`
    : `${data.reason}${data.errorCode ? ` (${data.errorCode}: ${data.errorMessage})` : ''}`;
  const parts = [el('p', { class: 'answer', text: answer })];
  if (!data.targeting.ran) {
    parts.push(el('p', { class: 'muted', text: `Targeting did not run: ${data.targeting.why}.` }));
    return parts;
  }
  parts.push(el('ul', { class: 'tree', role: 'tree', 'aria-label': 'Targeting path' }, step(data.targeting.path, true)));
  return parts;
}

function step(node, taken) {
  const detail = node.detail || {};
  let text = node.op;
  if (node.rule !== undefined) text += ` ${JSON.stringify(node.rule)}`;
  if (node.ref) text += ` [$ref ${node.ref.join(', ')}]`;
  if (!node.evaluated) text += ' — not evaluated';
  else if (node.error) text += ` ✗ ${node.error}`;
  else if (node.result !== undefined && node.op !== 'literal') text += ` → ${JSON.stringify(node.result)}`;
  if (detail.kind === 'fractional' && detail.hash !== null && detail.hash !== undefined) {
    text += ` (key ${JSON.stringify(detail.bucketingKey)}, bucket ${detail.bucket} of ${detail.totalWeight}: ${detail.buckets.map((b) => `${JSON.stringify(b.variant)} [${b.start}, ${b.end})`).join(' ')})`;
  }
  if (detail.kind === 'semVer') text += ` (${detail.version ?? 'invalid'} ${detail.operator ?? '?'} ${detail.target ?? 'invalid'})`;
  if (detail.kind === 'var' && !detail.found) text += ' (not in the context)';
  const classes = ['step', node.error ? 'failed' : node.evaluated ? (taken ? 'taken' : '') : 'skipped'].filter(Boolean);
  const item = el('li', { class: classes.join(' '), role: 'treeitem', 'aria-expanded': node.children ? 'true' : undefined },
    el('span', { class: 'label', text }));
  if (node.children) {
    const chosen = detail.kind === 'branch' ? detail.taken : undefined;
    item.append(el('ul', { role: 'group' },
      node.children.map((child, i) => step(child, taken && (chosen === undefined ? child.evaluated : i === chosen)))));
  }
  return item;
}

function health(s) {
  if (s.consecutiveFailures === null || s.consecutiveFailures === undefined) return s.remote ? 'not fetched yet' : 'local';
  if (s.staleSince) return `serving its last good flags from ${when(s.staleSince)}`;
  if (s.overdue) return 'overdue';
  return s.consecutiveFailures ? `${s.consecutiveFailures} failures in a row` : 'healthy';
}

async function sourcesView() {
  const data = await api('/api/v1/sources');
  const rows = data.sources.map((s) =>
    el('tr', {},
      el('td', { text: s.source }),
      el('td', { text: String(s.priority) }),
      el('td', { text: String(s.flags) }),
      el('td', { class: s.overdue || s.consecutiveFailures || s.staleSince ? 'error' : 'done', text: health(s) }),
      el('td', { text: s.lastSuccess ? when(s.lastSuccess) : '—' }),
      el('td', { text: s.lastRejected ? `${when(s.lastRejected.time)}: ${s.lastRejected.error}` : s.lastError ? when(s.lastError) : '—' })));
  show('Sources',
    el('table', {},
      el('thead', {}, el('tr', {}, ['Source', 'Priority', 'Flags', 'Health', 'Last good load', 'Last error'].map((h) => el('th', { scope: 'col', text: h })))),
      el('tbody', {}, rows)));
}

function changeItem(c) {
  return el('li', { text: `${new Date(c.time * 1000).toISOString()} ${c.kind}${c.flag ? ` ${c.flag}` : ''} from ${c.source}${c.actor ? ` by ${c.actor}` : ''}${c.reason ? ` (${c.reason})` : ''}${c.error ? `: ${c.error}` : ''}` });
}

async function changesView() {
  const data = await api('/api/v1/changes?limit=200');
  const list = el('ol', { id: 'changes', reversed: true }, data.changes.slice().reverse().map(changeItem));
  show('Changes', el('p', { class: 'muted', text: 'Live: new changes appear at the top.' }), list);
}

// ---------------------------------------------------------------------------------------------------
// routing, the token, the live stream

async function render() {
  const hash = location.hash || '#/';
  try {
    if (hash.startsWith('#/flag/')) await flagView(decodeURIComponent(hash.slice(7)));
    else if (hash === '#/sources') await sourcesView();
    else if (hash === '#/changes') await changesView();
    else await flagsView();
  } catch (error) {
    show('Error', failure(error));
  }
}

function tokenState() {
  document.getElementById('token-state').textContent = token() ? 'Token set for this tab.' : 'Read-only.';
  const hint = document.getElementById('token-hint');
  if (hint) hint.hidden = Boolean(token());
}

document.getElementById('token-use').addEventListener('click', () => {
  const input = document.getElementById('token');
  if (input.value) sessionStorage.setItem(TOKEN_KEY, input.value.trim());
  input.value = '';
  tokenState();
});
document.getElementById('token-forget').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  tokenState();
});
document.getElementById('token').addEventListener('keydown', (event) => {
  if (event.key === 'Enter') document.getElementById('token-use').click();
});

let refresh = null;
function follow() {
  const stream = new EventSource('/api/v1/changes/stream');
  stream.addEventListener('change', (event) => {
    const entries = JSON.parse(event.data);
    announce(`${entries.length} change${entries.length === 1 ? '' : 's'}: ${entries.slice(0, 3).map((c) => `${c.kind} ${c.flag ?? c.source}`).join(', ')}`);
    const list = document.getElementById('changes');
    if (list) {
      for (const entry of entries) list.prepend(changeItem(entry));
      return;
    }
    // Other views re-read, once per burst, unless someone is typing in them.
    clearTimeout(refresh);
    refresh = setTimeout(() => {
      const typing = main.contains(document.activeElement) && /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
      if (!typing) render();
    }, 50);
  });
}

window.addEventListener('hashchange', async () => {
  await render();
  main.focus();
});
tokenState();
render();
follow();
