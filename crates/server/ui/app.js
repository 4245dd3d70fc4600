// Switchyard's console: a client of the server's own REST API, signed in
// with a token kept for the tab (sessionStorage) and sent as a bearer header
// on every call (no cookie, so another site cannot make calls in the
// operator's name). Every text from the server goes into the page as text,
// never as markup. The page follows the flag watch (server-sent events) and
// draws the current page again after each change.
'use strict';

const TOKEN_KEY = 'switchyard.token';
const main = document.getElementById('main');
const announcer = document.getElementById('announce');

// ---- DOM helpers -------------------------------------------------------

/** An element with attributes (`on*` are listeners) and children. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function announce(text) {
  // Cleared first, so the same words twice are read twice.
  announcer.textContent = '';
  setTimeout(() => (announcer.textContent = text), 50);
}

function json(v) {
  return JSON.stringify(v, null, 2);
}

function short(v) {
  return typeof v === 'string' ? v : JSON.stringify(v);
}

function when(ts) {
  return ts ? new Date(ts).toLocaleString() : '';
}

// ---- The API -------------------------------------------------------------

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

/** Calls the REST API; the answer's JSON, or an ApiError with its message. */
async function api(method, path, body, reason) {
  const headers = { authorization: `Bearer ${token()}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  // Percent-encoded UTF-8 (a header carries ASCII); the server decodes it.
  if (reason) headers['x-switchyard-reason'] = encodeURIComponent(reason);
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: 'no-store',
  });
  const text = await resp.text();
  if (!resp.ok) {
    let message = text;
    let code = 0;
    try {
      const s = JSON.parse(text);
      message = s.message || text;
      code = s.code || 0;
    } catch {}
    throw new ApiError(resp.status, code, message || `HTTP ${resp.status}`);
  }
  return text ? JSON.parse(text) : {};
}

function q(params) {
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') s.set(k, v);
  const t = s.toString();
  return t ? `?${t}` : '';
}

// ---- Who is signed in ------------------------------------------------------

let caller = null; // {name, scope}

function scopeAllows(need) {
  if (!caller) return false;
  const s = caller.scope;
  if (s === 'admin') return true;
  if (need === 'gating') return s === 'gating';
  if (need === 'reader') return s.startsWith('tenant:');
  if (need === 'flags') return s.startsWith('tenant:');
  return false;
}

function ownTenant() {
  return caller && caller.scope.startsWith('tenant:') ? caller.scope.slice(7) : '';
}

function isAdmin() {
  return caller && caller.scope === 'admin';
}

function showSignIn(message) {
  document.getElementById('nav').hidden = true;
  document.getElementById('signout').hidden = true;
  document.getElementById('who').textContent = '';
  const input = h('input', { id: 'token', type: 'password', autocomplete: 'off', required: true });
  const form = h(
    'form',
    {
      onsubmit: async (e) => {
        e.preventDefault();
        sessionStorage.setItem(TOKEN_KEY, input.value.trim());
        await start();
      },
    },
    h('div', { class: 'field' }, h('label', { for: 'token' }, 'Token'), input),
    h('p', { class: 'hint' }, 'A token of this server (admin, gating or tenant:<id>). It is kept for this tab only.'),
    h('div', { class: 'actions' }, h('button', { class: 'primary', type: 'submit' }, 'Sign in')),
  );
  main.replaceChildren(h('h1', {}, 'Sign in'), message ? h('p', { class: 'error', role: 'alert' }, message) : '', form);
  input.focus();
}

async function start() {
  if (!token()) return showSignIn();
  try {
    caller = await api('GET', '/v1/caller');
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    return showSignIn(e.status === 401 ? 'That token is not accepted.' : e.message);
  }
  document.getElementById('who').textContent = `${caller.name} (${caller.scope})`;
  const nav = document.getElementById('nav');
  for (const a of nav.querySelectorAll('a')) {
    const need = a.dataset.needs;
    a.hidden = need ? !scopeAllows(need) : caller.scope === 'gating';
  }
  nav.hidden = false;
  document.getElementById('signout').hidden = false;
  follow();
  route();
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  caller = null;
  current = null;
  drawing++;
  clearTimeout(redraw);
  stopFollowing();
  lastEvaluation = {};
  lastResolved = null;
  auditFilter = {};
  showSignIn(message);
}

document.getElementById('signout').addEventListener('click', () => signOut());

// ---- Routing -----------------------------------------------------------------

const pages = { flags, flag, tenants, rollouts, rollout, gates, audit };
let current = null;

function route() {
  if (!caller) return;
  const [, page = '', ...rest] = (location.hash || '').split('/');
  const name = page || (caller.scope === 'gating' ? 'rollouts' : 'flags');
  const render = pages[name] || flags;
  current = () => render(...rest.map(decodeURIComponent));
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.page === name || (name === 'flag' && a.dataset.page === 'flags') || (name === 'rollout' && a.dataset.page === 'rollouts')) {
      a.setAttribute('aria-current', 'page');
    } else {
      a.removeAttribute('aria-current');
    }
  }
  draw(true);
}

/** Draws the current page; `fresh`: a navigation (focus moves to it). */
let drawing = 0;

async function draw(fresh) {
  if (!current) return;
  const mine = ++drawing;
  const page = current;
  try {
    const content = await page();
    // A later drawing (or a sign-out, or another page) has the last word.
    if (mine !== drawing || page !== current || !caller) return;
    const nodes = (Array.isArray(content) ? content : [content]).filter((n) => n !== '' && n != null);
    // Drawing again in place: only the parts that show data ([data-live])
    // are replaced, so forms keep what is typed in them and their focus.
    if (!fresh) {
      const holder = document.createElement('div');
      holder.append(...nodes);
      const next = [...holder.querySelectorAll('[data-live]')];
      const live = [...main.querySelectorAll('[data-live]')];
      if (live.length && live.length === next.length) {
        live.forEach((el, i) => {
          // What the reader opened stays open; an unchanged part is left as
          // it is (with the focus in it).
          const opened = [...el.querySelectorAll('details')].map((d) => d.open);
          next[i].querySelectorAll('details').forEach((d, j) => (d.open = !!opened[j]));
          if (!el.isEqualNode(next[i])) el.replaceWith(next[i]);
        });
        return;
      }
      main.replaceChildren(...holder.childNodes);
      return;
    }
    main.replaceChildren(...nodes);
    main.focus();
  } catch (e) {
    if (mine !== drawing) return;
    if (e.status === 401) {
      signOut('The token is no longer accepted.');
      return;
    }
    // A drawing in place that fails keeps the page (and what is typed).
    if (!fresh) return announce(`Could not refresh: ${e.message}`);
    main.replaceChildren(h('h1', {}, 'Error'), h('p', { class: 'error', role: 'alert' }, e.message));
  }
}

window.addEventListener('hashchange', route);

// The skip link moves focus to the content (its #main is not a page).
document.querySelector('a.skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

// ---- Live: the flag watch as server-sent events ---------------------------

let watch = null;
let redraw = null;

function follow() {
  stopFollowing();
  // What the watch does not carry (tenants, rollouts' progress, gate runs,
  // other tenants' overrides) is read again every 2 s; a part that did not
  // change is left as it is.
  const timer = setInterval(() => draw(false), 2000);
  if (caller.scope === 'gating') {
    watch = { abort: () => clearInterval(timer) };
    return;
  }
  const controller = new AbortController();
  watch = { abort: () => (clearInterval(timer), controller.abort()) };
  const tenant = ownTenant();
  (async () => {
    let since = 0;
    while (!controller.signal.aborted) {
      try {
        const resp = await fetch(`/v1/flags:watch${q({ tenantId: tenant, sinceRevision: since || '' })}`, {
          headers: { authorization: `Bearer ${token()}`, accept: 'text/event-stream' },
          signal: controller.signal,
        });
        if (resp.status === 401) return signOut('The token is no longer accepted.');
        if (!resp.ok) throw new Error(`watch: HTTP ${resp.status}`);
        const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let cut;
          while ((cut = buf.indexOf('\n\n')) >= 0) {
            const event = buf.slice(0, cut);
            buf = buf.slice(cut + 2);
            let data = '';
            for (const line of event.split('\n')) {
              if (line.startsWith('id:')) since = Number(line.slice(3).trim()) || since;
              if (line.startsWith('data:')) data += line.slice(5);
            }
            let type = '';
            try {
              type = JSON.parse(data).result?.type || '';
            } catch {}
            if (data && !type.endsWith('HEARTBEAT')) changed();
          }
        }
      } catch (e) {
        if (controller.signal.aborted) return;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  })();
}

function stopFollowing() {
  if (watch) watch.abort();
  watch = null;
}

/** A change arrived: draw again once the burst is over. */
function changed() {
  clearTimeout(redraw);
  redraw = setTimeout(() => draw(false), 50);
}

/** A button's action: runs `call`, says how it went, draws the page again
 * and puts the focus on `focusTo` (the button itself may be gone). */
async function act(done, focusTo, call) {
  try {
    await call();
    announce(done);
  } catch (err) {
    announce(err.message);
    alert(err.message);
  }
  await draw(false);
  const target = main.querySelector(focusTo);
  if (target) {
    if (!target.hasAttribute('tabindex')) target.setAttribute('tabindex', '-1');
    target.focus();
  }
}

// ---- Forms ---------------------------------------------------------------------

/** A form whose submit calls `action`; errors show in it; typing marks it. */
function form(title, fields, label, action, attrs = {}) {
  const status = h('p', { class: 'hint', role: 'status' });
  const f = h(
    'form',
    {
      'aria-label': title,
      ...attrs,
      oninput: () => (f.dataset.editing = 'true'),
      onsubmit: async (e) => {
        e.preventDefault();
        status.className = 'hint';
        status.textContent = 'Working…';
        try {
          const msg = (await action(new FormData(f))) || 'Done.';
          f.dataset.editing = 'false';
          await draw(false);
          // The page was drawn again: the form's new copy says it.
          const again = [...main.querySelectorAll('form')].find((x) => x.getAttribute('aria-label') === title) || f;
          const said = again.querySelector('[role=status]') || status;
          said.className = 'okay';
          said.textContent = msg;
        } catch (err) {
          status.className = 'error';
          status.textContent = err.message;
        }
      },
    },
    h('div', { class: 'row' }, ...fields),
    h('div', { class: 'actions' }, h('button', { class: 'primary', type: 'submit' }, label)),
    status,
  );
  return f;
}

function field(name, label, attrs = {}) {
  const id = `f-${name}-${Math.random().toString(36).slice(2, 7)}`;
  const control = attrs.rows
    ? h('textarea', { id, name, ...attrs })
    : attrs.options
      ? h('select', { id, name }, ...attrs.options.map(([v, t]) => h('option', { value: v }, t)))
      : h('input', { id, name, ...attrs });
  if (attrs.value !== undefined && attrs.rows) control.value = attrs.value;
  return h('div', { class: attrs.rows ? 'field wide' : 'field' }, h('label', { for: id }, label), control);
}

function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what}: not JSON (${e.message})`);
  }
}

function reasonOf(data) {
  return (data.get('reason') || '').toString();
}

// ---- Flags ---------------------------------------------------------------------

async function flags() {
  const tenant = ownTenant();
  const list = await api('GET', `/v1/flags${q({ tenant, view: 'FLAG_VIEW_FULL', pageSize: 1000 })}`);
  const defs = list.definitions || [];
  const values = new Map((list.flags || []).map((f) => [f.flag, f]));
  const rows = defs.map((d) =>
    h(
      'tr',
      {},
      h('td', {}, h('a', { href: `#/flag/${encodeURIComponent(d.key)}` }, d.key)),
      h('td', {}, (d.type || '').replace('FLAG_TYPE_', '').toLowerCase()),
      h('td', {}, d.state),
      h('td', {}, d.defaultVariant || ''),
      h('td', {}, d.targeting ? 'yes' : ''),
      h('td', {}, values.has(d.key) ? short(values.get(d.key).value) : ''),
      h('td', {}, d.revision),
    ),
  );
  const table = h(
    'div',
    { class: 'scroll', tabindex: 0, role: 'region', 'aria-label': 'Flags', 'data-live': true },
    h(
      'table',
      {},
      h('caption', { class: 'visually-hidden' }, 'Flags'),
      h('thead', {}, h('tr', {}, ...['Flag', 'Type', 'State', 'Default variant', 'Rule', tenant ? 'Value' : 'Value', 'Revision'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, rows),
    ),
  );
  const out = [h('h1', {}, tenant ? `Flags of ${tenant}` : 'Flags'), table];
  if (isAdmin()) {
    out.push(
      h('h2', {}, 'New flag'),
      form(
        'New flag',
        [
          field('key', 'Key', { required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._\\-]*' }),
          field('type', 'Type', { options: [['FLAG_TYPE_BOOL', 'bool'], ['FLAG_TYPE_STRING', 'string'], ['FLAG_TYPE_NUMBER', 'number'], ['FLAG_TYPE_OBJECT', 'object']] }),
          field('variants', 'Variants (JSON)', { rows: 3, value: '{"on": true, "off": false}' }),
          field('defaultVariant', 'Default variant', { value: 'off' }),
          field('reason', 'Reason (audit log)', {}),
        ],
        'Create',
        async (data) => {
          const key = data.get('key').toString();
          await api(
            'POST',
            '/v1/flags',
            {
              key,
              type: data.get('type'),
              variants: parseJson(data.get('variants'), 'variants'),
              defaultVariant: data.get('defaultVariant'),
            },
            reasonOf(data),
          );
          return `Flag ${key} created.`;
        },
      ),
    );
  }
  return out;
}

/** Checks a rule as it is typed: JSON, and the variants it names. */
function checkRule(text, variants) {
  if (!text.trim()) return { ok: true, message: 'No rule: everyone gets the default variant.' };
  let rule;
  try {
    rule = JSON.parse(text);
  } catch (e) {
    return { ok: false, message: `Not JSON: ${e.message}` };
  }
  if (typeof rule !== 'object' || rule === null || Array.isArray(rule)) {
    return { ok: false, message: 'A rule is a JSON object, such as {"if": [...]}' };
  }
  const unknown = [];
  (function walk(v, parent) {
    if (Array.isArray(v)) {
      // fractional's [variant, weight] pairs and if's branches name variants.
      if (parent === 'fractional') {
        v.forEach((p) => Array.isArray(p) && typeof p[0] === 'string' && !(p[0] in variants) && unknown.push(p[0]));
      }
      v.forEach((x) => walk(x, null));
    } else if (v && typeof v === 'object') {
      for (const [k, x] of Object.entries(v)) walk(x, k);
    }
  })(rule, null);
  if (unknown.length) return { ok: false, message: `Names no variant of this flag: ${[...new Set(unknown)].join(', ')}` };
  return { ok: true, message: 'Looks right; the server checks it against flagd’s schema when you save.' };
}

let lastEvaluation = {};
/** The revision each flag's page shows now (kept up to date by redraws). */
const shownRevision = {};

async function flag(key) {
  const [{ flag: d }, tenantsList] = await Promise.all([
    api('GET', `/v1/flags/${encodeURIComponent(key)}`),
    isAdmin() ? api('GET', '/v1/tenants?pageSize=1000') : Promise.resolve({ tenants: [] }),
  ]);
  const variants = d.variants || {};
  shownRevision[key] = d.revision;
  const out = [
    h('p', {}, h('a', { href: '#/flags' }, '← Flags')),
    h('h1', {}, `Flag ${d.key}`),
    h(
      'div',
      { 'data-live': true },
      h('p', {}, `${(d.type || '').replace('FLAG_TYPE_', '').toLowerCase()}, ${d.state}, revision ${d.revision}`, d.description ? ` — ${d.description}` : ''),
      h('h2', {}, 'Variants'),
      h('table', {}, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Variant'), h('th', { scope: 'col' }, 'Value'))),
        h('tbody', {}, Object.entries(variants).map(([k, v]) => h('tr', {}, h('td', {}, k, k === d.defaultVariant ? ' (default)' : ''), h('td', {}, h('code', {}, short(v))))))),
      h('h2', {}, 'Rule'),
      h('pre', { id: 'rule' }, d.targeting ? json(d.targeting) : '(none)'),
    ),
  ];
  if (isAdmin()) {
    const editor = field('targeting', 'Targeting (flagd JsonLogic)', { rows: 8, value: d.targeting ? json(d.targeting) : '', 'aria-describedby': 'rule-check' });
    const check = h('p', { id: 'rule-check', class: 'hint', 'aria-live': 'polite' });
    const area = editor.querySelector('textarea');
    const validate = () => {
      const r = checkRule(area.value, variants);
      check.className = r.ok ? 'okay' : 'error';
      check.textContent = r.message;
      area.setAttribute('aria-invalid', r.ok ? 'false' : 'true');
    };
    area.addEventListener('input', validate);
    validate();
    out.push(
      h('h2', {}, 'Edit the rule'),
      form(
        'Edit the rule',
        [editor, check, field('reason', 'Reason (audit log)', {})],
        'Save rule',
        async (data) => {
          const text = data.get('targeting').toString();
          const r = checkRule(text, variants);
          if (!r.ok) throw new Error(r.message);
          await api(
            'PATCH',
            `/v1/flags/${encodeURIComponent(key)}${q({ expectedRevision: shownRevision[key] || d.revision, updateMask: 'targeting' })}`,
            { targeting: text.trim() ? JSON.parse(text) : null },
            reasonOf(data),
          );
          return 'Rule saved.';
        },
        { id: 'rule-form' },
      ),
    );
  }
  // Evaluate with a context (the last answer is kept across redraws).
  const result = h('div', { id: 'evaluation', 'aria-live': 'polite' });
  const showEvaluation = (r) =>
    result.replaceChildren(
      h('p', {}, 'Value ', h('code', {}, short(r.value)), ` (variant ${r.variant || '—'}, ${r.reason}, source ${r.source})`),
      r.errorCode ? h('p', { class: 'error' }, `${r.errorCode}: ${r.errorMessage}`) : '',
      h('ol', {}, (r.explanation || []).map((s) => h('li', {}, `${s.at}: ${s.operation}`, s.picked ? ` → ${s.picked}` : '', s.weights && s.weights.length ? ` (bucket ${s.bucket} of ${s.weights.map((w) => `${w.variant} ${w.weight}`).join(', ')})` : ''))),
    );
  if (lastEvaluation.key === key) showEvaluation(lastEvaluation.answer);
  out.push(
    h('h2', {}, 'Evaluate with this context'),
    form(
      'Evaluate',
      [
        field('tenantId', 'Tenant', { value: ownTenant(), readonly: ownTenant() ? true : undefined }),
        field('context', 'Context (JSON)', { rows: 3, value: '{"targetingKey": "user-1"}' }),
      ],
      'Evaluate',
      async (data) => {
        const context = parseJson(data.get('context'), 'context');
        const r = await api('POST', `/v1/flags/${encodeURIComponent(key)}:evaluate`, {
          tenantId: data.get('tenantId') || undefined,
          context,
          explain: true,
        });
        lastEvaluation = { key, answer: r };
        showEvaluation(r);
        return `Evaluated: ${short(r.value)}`;
      },
      { 'data-editing': 'false' },
    ),
    result,
  );
  if (isAdmin()) {
    const tenants = tenantsList.tenants || [];
    const effective = await Promise.all(
      tenants.map((t) =>
        api('GET', `/admin/feature-flags${q({ tenant: t.id })}`)
          .then((all) => [t.id, all.find((f) => f.flag === key)])
          .catch(() => [t.id, null]),
      ),
    );
    out.push(
      h('h2', {}, 'Per tenant'),
      h(
        'div',
        { class: 'scroll', tabindex: 0, role: 'region', 'aria-label': 'Per tenant', 'data-live': true },
        h('table', { id: 'per-tenant', tabindex: -1 },
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Tenant'), h('th', { scope: 'col' }, 'Effective value'), h('th', { scope: 'col' }, 'Source'), h('th', { scope: 'col' }, ''))),
          h('tbody', {}, effective.map(([id, f]) => h('tr', { dataset: { tenant: id } },
            h('td', {}, id),
            h('td', {}, f ? h('code', {}, short(f.value)) : ''),
            h('td', {}, f ? f.source : ''),
            h('td', {}, f && f.source === 'tenant'
              ? h('button', { type: 'button', class: 'danger', onclick: () =>
                  act(`Override of ${id} cleared.`, '#per-tenant', () =>
                    api('DELETE', `/v1/tenants/${encodeURIComponent(id)}/flags/${encodeURIComponent(key)}`)) }, `Clear override of ${id}`)
              : ''),
          ))),
        ),
      ),
      form(
        'Override for a tenant',
        [
          field('tenant', 'Tenant', { required: true, list: 'tenant-ids' }),
          h('datalist', { id: 'tenant-ids' }, tenants.map((t) => h('option', { value: t.id }))),
          field('value', 'Value (JSON)', { required: true, value: 'true' }),
          field('reason', 'Reason (audit log)', {}),
        ],
        'Set override',
        async (data) => {
          const tenant = data.get('tenant').toString();
          await api('PUT', `/v1/tenants/${encodeURIComponent(tenant)}/flags/${encodeURIComponent(key)}`, parseJson(data.get('value'), 'value'), reasonOf(data));
          return `Override of ${tenant} set.`;
        },
      ),
    );
  }
  return out;
}

// ---- Tenants ---------------------------------------------------------------

let lastResolved = null;

async function tenants() {
  const list = await api('GET', '/v1/tenants?pageSize=1000');
  const rows = (list.tenants || []).map((t) =>
    h('tr', {},
      h('td', {}, t.id),
      h('td', {}, t.displayName || ''),
      h('td', {}, (t.patterns || []).join(', ')),
      h('td', {}, t.disabled ? 'disabled' : ''),
      h('td', {}, t.revision),
      h('td', {}, h('button', { type: 'button', class: 'danger', onclick: () => {
        if (!confirm(`Delete tenant ${t.id} and its overrides?`)) return;
        act(`Tenant ${t.id} deleted.`, 'main', () => api('DELETE', `/v1/tenants/${encodeURIComponent(t.id)}`));
      } }, `Delete ${t.id}`)),
    ),
  );
  // The last answer is kept as data: each drawing makes its own nodes.
  const said = () =>
    !lastResolved
      ? ''
      : lastResolved.error
        ? h('p', { class: 'error' }, lastResolved.error)
        : h('p', {}, `${lastResolved.key} → `, h('strong', {}, lastResolved.tenant), ` by pattern ${lastResolved.pattern}`);
  const found = h('div', { id: 'resolved', 'aria-live': 'polite' }, said());
  return [
    h('h1', {}, 'Tenants'),
    h('div', { class: 'scroll', tabindex: 0, role: 'region', 'aria-label': 'Tenants', 'data-live': true },
      h('table', {},
        h('thead', {}, h('tr', {}, ...['Tenant', 'Name', 'Patterns', '', 'Revision', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows))),
    h('h2', {}, 'Which tenant does this host resolve to?'),
    form('Resolve a host', [field('key', 'Host', { required: true, placeholder: 'api.acme.example' })], 'Resolve', async (data) => {
      try {
        const r = await api('GET', `/v1/tenants:resolve${q({ key: data.get('key') })}`);
        lastResolved = { key: r.normalizedKey, tenant: r.tenant.id, pattern: r.matchedPattern };
        found.replaceChildren(said());
        return `Resolves to ${r.tenant.id}.`;
      } catch (e) {
        lastResolved = { error: e.message };
        found.replaceChildren(said());
        throw e;
      }
    }),
    found,
    h('h2', {}, 'New tenant'),
    form(
      'New tenant',
      [
        field('id', 'Id', { required: true }),
        field('displayName', 'Name', {}),
        field('patterns', 'Patterns (comma-separated)', { placeholder: '*.acme.example, acme.*' }),
        field('reason', 'Reason (audit log)', {}),
      ],
      'Create',
      async (data) => {
        const id = data.get('id').toString();
        const patterns = data.get('patterns').toString().split(',').map((s) => s.trim()).filter(Boolean);
        await api('POST', '/v1/tenants', { id, displayName: data.get('displayName'), patterns }, reasonOf(data));
        return `Tenant ${id} created.`;
      },
    ),
  ];
}

// ---- Rollouts ---------------------------------------------------------------

const STATE = (s) => (s || '').replace('ROLLOUT_STATE_', '').toLowerCase();

async function rollouts() {
  const list = await api('GET', '/v1/rollouts?pageSize=100');
  const rows = (list.rollouts || []).map((r) =>
    h('tr', {},
      h('td', {}, h('a', { href: `#/rollout/${encodeURIComponent(r.id)}` }, r.id)),
      h('td', {}, r.flagKey),
      h('td', {}, r.treatment),
      h('td', {}, h('span', { class: `badge ${STATE(r.state)}` }, STATE(r.state))),
      h('td', {}, `${r.stage} of ${(r.stages || []).length}`),
      h('td', {}, `${r.percent} %`),
      h('td', {}, r.createdBy),
    ),
  );
  const out = [
    h('h1', {}, 'Rollouts'),
    h('div', { class: 'scroll', tabindex: 0, role: 'region', 'aria-label': 'Rollouts', 'data-live': true },
      h('table', {},
        h('thead', {}, h('tr', {}, ...['Rollout', 'Flag', 'Treatment', 'State', 'Stage', 'Percent', 'Started by'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows))),
  ];
  if (isAdmin()) {
    out.push(
      h('h2', {}, 'Start a rollout'),
      form(
        'Start a rollout',
        [
          field('flag', 'Flag', { required: true }),
          field('treatment', 'Treatment variant', { required: true }),
          field('stages', 'Stages (%)', { value: '5, 25, 50, 100', required: true }),
          field('hold', 'Hold per stage (s)', { type: 'number', min: 1, value: 600 }),
          field('minSamples', 'Minimum samples', { type: 'number', min: 1, value: 200 }),
          field('reason', 'Reason (audit log)', {}),
        ],
        'Start',
        async (data) => {
          const stages = data.get('stages').toString().split(',').map((s) => Number(s.trim())).filter((n) => !Number.isNaN(n));
          const r = await api('POST', '/v1/rollouts', {
            flagKey: data.get('flag'),
            treatment: data.get('treatment'),
            stages: stages.map((percent) => ({ percent, hold: `${Number(data.get('hold'))}s`, minSamples: Number(data.get('minSamples')) })),
          }, reasonOf(data));
          location.hash = `#/rollout/${r.rollout.id}`;
          return `Rollout ${r.rollout.id} started.`;
        },
      ),
    );
  }
  return out;
}

/** A line chart of each series' points ([time ms, value]). */
function chart(title, series, unit) {
  const all = series.flatMap((s) => s.points).filter(([, v]) => Number.isFinite(v));
  const W = 600, H = 180, P = 30;
  const svg = document.createElementNS('http://www.w3.org/2000/svg', 'svg');
  svg.setAttribute('class', 'chart');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', `${title}: ${series.map((s) => `${s.name} ${s.points.map(([, v]) => `${Number(v).toFixed(2)}${unit}`).join(', ') || 'none'}`).join('; ')}`);
  if (!all.length) {
    const none = document.createElementNS('http://www.w3.org/2000/svg', 'text');
    none.setAttribute('x', W / 2);
    none.setAttribute('y', H / 2);
    none.setAttribute('text-anchor', 'middle');
    none.textContent = 'no verdict yet';
    svg.append(none);
  } else {
    const xs = all.map(([t]) => t), ys = all.map(([, v]) => v);
    const [x0, x1] = [Math.min(...xs), Math.max(...xs) || 1];
    const y1 = Math.max(...ys, 0) * 1.1 || 1;
    const X = (t) => P + ((t - x0) / (x1 - x0 || 1)) * (W - 2 * P);
    const Y = (v) => H - P - (v / y1) * (H - 2 * P);
    const ns = 'http://www.w3.org/2000/svg';
    for (const s of series) {
      const pts = s.points.filter(([, v]) => Number.isFinite(v));
      const line = document.createElementNS(ns, 'polyline');
      line.setAttribute('points', pts.map(([t, v]) => `${X(t)},${Y(v)}`).join(' '));
      line.setAttribute('fill', 'none');
      line.setAttribute('stroke', s.color);
      line.setAttribute('stroke-width', '2');
      svg.append(line);
      for (const [t, v] of pts) {
        const c = document.createElementNS(ns, 'circle');
        c.setAttribute('cx', X(t));
        c.setAttribute('cy', Y(v));
        c.setAttribute('r', '3');
        c.setAttribute('fill', s.color);
        svg.append(c);
      }
    }
    const label = document.createElementNS(ns, 'text');
    label.setAttribute('x', 4);
    label.setAttribute('y', 12);
    label.textContent = `max ${y1.toFixed(1)}${unit}`;
    svg.append(label);
  }
  return h('figure', {}, h('figcaption', {}, title), svg,
    h('div', { class: 'legend' }, series.map((s) => h('span', {}, h('span', { class: `swatch ${s.name}` }), s.name))));
}

async function rollout(id) {
  const { rollout: r } = await api('GET', `/v1/rollouts/${encodeURIComponent(id)}`);
  // Its steps: its own (by rollout:<id>) and people's (their reasons name it).
  const changes = isAdmin()
    ? await api('GET', `/v1/changes${q({ flagKey: r.flagKey, pageSize: 1000 })}`).catch(() => ({ changes: [] }))
    : { changes: [] };
  changes.changes = (changes.changes || []).filter((c) => c.actor === `rollout:${id}` || (c.reason || '').includes(id));
  const verdicts = changes.changes.filter((c) => c.verdict && c.verdict.cohorts).reverse();
  const point = (c, cohort, k, scale) => [Date.parse(c.time), Number(c.verdict.cohorts[cohort]?.[k]) * scale];
  const state = STATE(r.state);
  const v = r.lastVerdict;
  const actionButton = (verb, label, cls) =>
    h('button', { type: 'button', class: cls, onclick: () => {
      if ((verb === 'abort' || verb === 'kill') && !confirm(`${label}: put ${r.flagKey} back as it was before the rollout?`)) return;
      act(`${label}: done.`, '#rollout-state', () => api('POST', `/v1/rollouts/${encodeURIComponent(id)}:${verb}`, {}));
    } }, label);
  const running = state === 'running', paused = state === 'paused', ended = !running && !paused;
  return [
    h('p', {}, h('a', { href: '#/rollouts' }, '← Rollouts')),
    h('h1', {}, `Rollout ${r.id}`),
    h('div', { 'data-live': true },
      h('p', { id: 'rollout-state', tabindex: -1 },
        h('span', { class: `badge ${state}` }, state), ` stage ${r.stage} of ${(r.stages || []).length} at ${r.percent} % — `,
        caller.scope === 'gating' ? r.flagKey : h('a', { href: `#/flag/${encodeURIComponent(r.flagKey)}` }, r.flagKey), `: ${r.treatment} (from ${r.control})`),
      r.reason ? h('p', {}, r.reason) : '',
      h('div', { class: 'actions' },
        isAdmin() && running ? actionButton('pause', 'Pause') : '',
        isAdmin() && paused ? actionButton('resume', 'Resume') : '',
        isAdmin() && !ended ? actionButton('skip', 'Skip stage') : '',
        isAdmin() && !ended ? actionButton('abort', 'Abort', 'danger') : '',
        !ended ? actionButton('kill', 'Kill switch', 'danger') : ''),
      v ? h('div', {},
        h('h2', {}, 'Last verdict'),
        h('p', {}, h('span', { class: `badge ${v.verdict}` }, v.verdict), ` stage ${v.stage}: `, (v.reasons || []).join('; ') || 'every check passed'),
        v.cohorts ? h('table', {}, h('thead', {}, h('tr', {}, ...['Cohort', 'Requests', 'Error rate', 'p95'].map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, ['treatment', 'control'].map((c) => h('tr', {}, h('td', {}, c),
            h('td', {}, Math.round(v.cohorts[c]?.requests ?? 0)),
            h('td', {}, `${((v.cohorts[c]?.error_rate ?? 0) * 100).toFixed(2)} %`),
            h('td', {}, v.cohorts[c]?.p95_ms == null ? '—' : `${Number(v.cohorts[c].p95_ms).toFixed(1)} ms`))))) : '') : '',
      h('div', { class: 'grid2' },
        chart('p95 at each verdict', [
          { name: 'treatment', color: '#a40e26', points: verdicts.map((c) => point(c, 'treatment', 'p95_ms', 1)) },
          { name: 'control', color: '#0a58ca', points: verdicts.map((c) => point(c, 'control', 'p95_ms', 1)) },
        ], ' ms'),
        chart('Error rate at each verdict', [
          { name: 'treatment', color: '#a40e26', points: verdicts.map((c) => point(c, 'treatment', 'error_rate', 100)) },
          { name: 'control', color: '#0a58ca', points: verdicts.map((c) => point(c, 'control', 'error_rate', 100)) },
        ], ' %')),
      h('h2', {}, 'Steps'),
      h('ol', {}, (changes.changes || []).map((c) => h('li', {}, `${when(c.time)} ${c.action}`, c.verdict ? ` ${c.verdict.verdict}` : '', ` — ${c.reason}`)))),
  ];
}

// ---- Gate runs ---------------------------------------------------------------

async function gates() {
  const [smoke, canary] = await Promise.all([
    api('GET', '/v1/gating/runs?kind=smoke&pageSize=50'),
    api('GET', '/v1/gating/runs?kind=canary&pageSize=50'),
  ]);
  const runs = [...(smoke.runs || []), ...(canary.runs || [])].sort((a, b) => (b.createTime || '').localeCompare(a.createTime || ''));
  return [
    h('h1', {}, 'Gate runs'),
    h('div', { 'data-live': true },
      runs.length ? '' : h('p', {}, 'No smoke or canary run yet.'),
      runs.map((r) => {
        const doc = r.smoke || r.canary || {};
        const verdict = doc.verdict?.status || r.verdict || '';
        const threshold = doc.budget ? `threshold ${doc.budget.applied_p95_ms} ms (${doc.budget.tier}, ${doc.budget.source})` : '';
        return h('details', {},
          h('summary', {}, `${when(r.createTime)} ${r.kind} ${r.runId || r.id} `, h('span', { class: `badge ${verdict}` }, verdict), ` ${threshold}`),
          (r.reasons || []).length ? h('p', {}, r.reasons.join('; ')) : '',
          h('pre', {}, json(doc)));
      })),
  ];
}

// ---- Audit log ---------------------------------------------------------------

let auditFilter = {};

async function audit() {
  const tenant = ownTenant();
  const filter = {
    flagKey: auditFilter.flagKey,
    tenantId: tenant || auditFilter.tenantId,
    actor: auditFilter.actor,
    startTime: auditFilter.startTime,
    endTime: auditFilter.endTime,
  };
  const page = await api('GET', `/v1/changes${q({ ...filter, pageSize: 100 })}`);
  const entries = page.changes || [];
  const list = h('div', { class: 'scroll', tabindex: 0, role: 'region', 'aria-label': 'Audit entries', 'data-live': true },
    h('table', { id: 'audit' },
      h('thead', {}, h('tr', {}, ...['When', 'Who', 'What', 'Flag', 'Tenant', 'Revision', 'Reason', 'Before → after'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, entries.map((e) => h('tr', {},
        h('td', {}, when(e.time)),
        h('td', {}, e.actor),
        h('td', {}, e.action, e.verdict ? h('span', { class: `badge ${e.verdict.verdict}` }, ` ${e.verdict.verdict}`) : ''),
        h('td', {}, e.flagKey),
        h('td', {}, e.tenantId),
        h('td', {}, e.revision === '0' ? '' : e.revision),
        h('td', {}, e.reason),
        h('td', {}, h('details', {}, h('summary', {}, 'show'), h('pre', {}, `before: ${e.before === undefined ? '—' : json(e.before)}\nafter: ${e.after === undefined ? '—' : json(e.after)}`))),
      )))),
    page.nextPageToken ? h('p', { class: 'hint' }, 'Older entries: narrow the filter, or export them (GET /v1/changes:export).') : '');
  const filters = form(
    'Filter the audit log',
    [
      field('flagKey', 'Flag', { value: auditFilter.flagKey || '' }),
      tenant ? '' : field('tenantId', 'Tenant', { value: auditFilter.tenantId || '' }),
      field('actor', 'Who', { value: auditFilter.actor || '' }),
      field('startTime', 'From', { type: 'datetime-local', value: auditFilter.startLocal || '' }),
      field('endTime', 'Until', { type: 'datetime-local', value: auditFilter.endLocal || '' }),
    ],
    'Filter',
    async (data) => {
      const local = (k) => data.get(k)?.toString() || '';
      auditFilter = {
        flagKey: local('flagKey'),
        tenantId: local('tenantId'),
        actor: local('actor'),
        startTime: local('startTime') ? new Date(local('startTime')).toISOString() : '',
        endTime: local('endTime') ? new Date(local('endTime')).toISOString() : '',
        startLocal: local('startTime'),
        endLocal: local('endTime'),
      };
      return 'Filtered.';
    },
  );
  return [h('h1', {}, 'Audit log'), filters, list];
}

start();
