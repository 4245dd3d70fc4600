// Lists Switchyard's effective flags and follows the watch, cross-origin.
// Query string: server (base URL), token (bearer), flag (the key to watch, shown
// in the heading), tenant (optional).
'use strict';

const params = new URLSearchParams(location.search);
const server = (params.get('server') || '').replace(/\/+$/, '');
const tenant = params.get('tenant');
const auth = { authorization: `Bearer ${params.get('token') || ''}` };

const flagsEl = document.getElementById('flags');
const revisionEl = document.getElementById('revision');
const errorEl = document.getElementById('error');
document.getElementById('watched').textContent = params.get('flag') || '';

// An EffectiveFlag is {"flag": key, "value": <any JSON>, "source": ...}:
// google.protobuf.Value maps to the bare JSON value.
function setFlag({ flag, value }) {
  let li = [...flagsEl.children].find((el) => el.dataset.key === flag);
  if (!li) {
    li = document.createElement('li');
    li.dataset.key = flag;
    flagsEl.append(li);
  }
  li.textContent = `${flag}=${typeof value === 'string' ? value : JSON.stringify(value)}`;
}

function replaceFlags(flags) {
  flagsEl.replaceChildren();
  flags.forEach(setFlag);
}

function removeFlag(key) {
  [...flagsEl.children].find((el) => el.dataset.key === key)?.remove();
}

function fail(phase, text) {
  errorEl.dataset.state = 'failed';
  errorEl.dataset.phase = phase;
  errorEl.textContent = text;
  document.body.dataset.state = 'failed';
}

// Error bodies are google.rpc.Status JSON: {"code": 16, "message": "...", ...}.
function statusText(body) {
  try {
    const s = JSON.parse(body);
    return `${s.message} (code ${s.code ?? 0})`;
  } catch {
    return body;
  }
}

async function list() {
  const query = tenant ? `?tenant=${encodeURIComponent(tenant)}` : '';
  const resp = await fetch(`${server}/admin/feature-flags${query}`, { headers: auth });
  if (!resp.ok) throw new Error(`HTTP ${resp.status}: ${statusText(await resp.text())}`);
  replaceFlags(await resp.json());
  document.body.dataset.state = 'listed';
}

// A small text/event-stream parser: events end at a blank line; lines are
// `field: value` (id, event, data; data lines join with "\n"); ':' starts a
// comment. Yields {type, id, data}.
async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let ev = { type: 'message', id: '', data: [] };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    const lines = buf.split('\n');
    buf = lines.pop(); // an incomplete line waits for the next chunk
    for (const raw of lines) {
      const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
      if (line === '') {
        if (ev.data.length) yield { ...ev, data: ev.data.join('\n') };
        ev = { type: 'message', id: ev.id, data: [] };
        continue;
      }
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? '' : line.slice(colon + 1);
      if (val.startsWith(' ')) val = val.slice(1);
      if (field === 'data') ev.data.push(val);
      else if (field === 'event') ev.type = val;
      else if (field === 'id') ev.id = val;
    }
  }
}

// Applies one WatchFlagsResponse (proto3 JSON: 64-bit revisions are strings,
// default-valued fields are left out) and returns its revision.
let snapshotParts = [];
function apply(msg) {
  const ev = msg.result ?? msg; // the NDJSON framing wraps events in {"result": ...}
  switch (ev.type) {
    case 'FLAG_EVENT_TYPE_SNAPSHOT':
      snapshotParts.push(...(ev.flags ?? []));
      if (!ev.snapshotContinues) {
        replaceFlags(snapshotParts);
        snapshotParts = [];
      }
      break;
    case 'FLAG_EVENT_TYPE_UPSERT':
      setFlag(ev.flag);
      break;
    case 'FLAG_EVENT_TYPE_DELETE':
      removeFlag(ev.flag.flag);
      break;
  }
  revisionEl.textContent = ev.revision ?? '0';
  return ev.revision ?? '0';
}

// Follows the watch; after a dropped connection resumes from the last revision
// (a few tries). An HTTP error or an `event: status` ends it.
async function watch() {
  let since = '';
  for (let tries = 0; tries < 5; tries++) {
    const query = new URLSearchParams();
    if (tenant) query.set('tenant_id', tenant);
    if (since && since !== '0') query.set('since_revision', since);
    try {
      const resp = await fetch(`${server}/v1/flags:watch${String(query) ? `?${query}` : ''}`, {
        headers: { ...auth, accept: 'text/event-stream' },
      });
      if (!resp.ok) return fail('watch', `HTTP ${resp.status}: ${statusText(await resp.text())}`);
      document.body.dataset.state = 'watching';
      for await (const ev of sseEvents(resp.body)) {
        if (ev.type === 'status') return fail('watch', statusText(ev.data));
        since = apply(JSON.parse(ev.data));
        tries = 0;
      }
    } catch (e) {
      console.warn(`watch: ${e}`);
      if (tries === 4) return fail('watch', String(e));
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  fail('watch', 'the watch kept ending');
}

async function main() {
  if (!server) return fail('params', 'missing ?server=');
  try {
    await list();
  } catch (e) {
    return fail('list', String(e)); // a CORS refusal is "TypeError: Failed to fetch"
  }
  await watch();
}

main();
