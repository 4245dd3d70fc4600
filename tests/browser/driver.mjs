// Browser check of Switchyard's CORS, REST listing and SSE watch.
//
// Serves page.html from 127.0.0.1:PAGE_PORT (an origin other than the server's),
// opens it in headless Chromium, and watches what the page shows.
//
//   SERVER     Switchyard's base URL, e.g. http://127.0.0.1:8080
//   TOKEN      a bearer token that may list flags and, when allowed, update FLAG
//   FLAG       a flag key that exists with type bool and default false
//   PAGE_PORT  the page's port: its origin is http://127.0.0.1:PAGE_PORT
//   EXPECT     "allowed": the page shows FLAG=false; the driver sets the flag's
//              default to true over REST; the page shows FLAG=true via the watch.
//              "refused": the page's fetch fails and no flag value appears.
//   CHANGE_URL optional: the URL to PATCH instead of
//              SERVER/v1/flags/FLAG?updateMask=defaultValue
//   TENANT     optional: passed to the page as ?tenant=
//   CHROMIUM   optional: the browser binary (default /usr/bin/chromium)
//
// stdout: one JSON line per observation ({"shown": "FLAG=false"},
// {"shown": "FLAG=true", "revision": "13"}, {"refused": "TypeError: Failed to fetch"})
// and {"failed": "..."} on failure. Exit 0 only when EXPECT happened.
// Diagnostics (the page's console, the PATCH) go to stderr.

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { chromium } from 'playwright-core';

const WAIT_MS = 20_000; // for each thing the page should show
const OVERALL_MS = 45_000;

const env = process.env;
const SERVER = (env.SERVER || '').replace(/\/+$/, '');
const { TOKEN, FLAG, PAGE_PORT, EXPECT } = env;
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';

const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const note = (obj) => process.stderr.write(`driver: ${JSON.stringify(obj)}\n`);

for (const [name, value] of Object.entries({ SERVER, TOKEN, FLAG, PAGE_PORT, EXPECT })) {
  if (!value) {
    say({ failed: `${name} is not set` });
    process.exit(2);
  }
}
if (EXPECT !== 'allowed' && EXPECT !== 'refused') {
  say({ failed: `EXPECT must be "allowed" or "refused", not ${JSON.stringify(EXPECT)}` });
  process.exit(2);
}

let pageServer;
let browser;
let closing;
function cleanup() {
  closing ??= Promise.allSettled([
    browser?.close(),
    pageServer &&
      new Promise((resolve) => {
        pageServer.close(resolve);
        pageServer.closeAllConnections();
      }),
  ]);
  return closing;
}

async function finish(code) {
  // Never let a hung close keep the process alive.
  await Promise.race([cleanup(), new Promise((r) => setTimeout(r, 5000).unref())]);
  process.exit(code);
}

setTimeout(() => {
  say({ failed: `overall timeout after ${OVERALL_MS} ms` });
  finish(1);
}, OVERALL_MS).unref();
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    say({ failed: `got ${signal}` });
    finish(1);
  });
}

// The page's origin: only the two files, nothing else.
const files = {
  '/page.html': ['text/html; charset=utf-8', new URL('./page.html', import.meta.url)],
  '/page.js': ['text/javascript; charset=utf-8', new URL('./page.js', import.meta.url)],
};
async function servePage() {
  pageServer = createServer(async (req, res) => {
    const file = files[new URL(req.url, 'http://x').pathname];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': file[0], 'cache-control': 'no-store' });
    res.end(await readFile(file[1]));
  });
  await new Promise((resolve, reject) => {
    pageServer.once('error', reject);
    pageServer.listen(Number(PAGE_PORT), '127.0.0.1', resolve);
  });
}

// What the page shows now, for failure messages.
const pageState = (page) =>
  page
    .evaluate(() => ({
      state: document.body.dataset.state,
      flags: [...document.querySelectorAll('#flags li')].map((li) => li.textContent),
      revision: document.getElementById('revision').textContent,
      error: document.getElementById('error').textContent,
    }))
    .catch((e) => String(e));

// Waits until #flags shows `FLAG=want` and the watch has delivered its first
// event (#revision is set), so that a later change can only arrive through the
// watch; an error on the page ends the wait.
async function waitForValue(page, want) {
  const handle = await page
    .waitForFunction(
      ({ key, text }) => {
        const error = document.querySelector('#error[data-state="failed"]');
        if (error) return { error: error.textContent };
        const li = document.querySelector(`#flags li[data-key="${CSS.escape(key)}"]`);
        const watching = document.getElementById('revision').textContent !== '';
        if (li?.textContent === text && watching) {
          return { shown: text, revision: document.getElementById('revision').textContent };
        }
        return false;
      },
      { key: FLAG, text: `${FLAG}=${want}` },
      { timeout: WAIT_MS, polling: 100 },
    )
    .catch(async (e) => {
      throw new Error(`waiting for ${FLAG}=${want}: ${e.message.split('\n')[0]}; page: ${JSON.stringify(await pageState(page))}`);
    });
  const seen = await handle.jsonValue();
  if (seen.error) throw new Error(`waiting for ${FLAG}=${want}, the page failed: ${seen.error}`);
  return seen;
}

// The change, from Node (no CORS): UpdateFlag is PATCH /v1/flags/{flag.key}
// with the Flag as the body; a google.protobuf.Value is the bare JSON value.
async function setDefaultTrue() {
  const url =
    env.CHANGE_URL || `${SERVER}/v1/flags/${encodeURIComponent(FLAG)}?updateMask=defaultValue`;
  const resp = await fetch(url, {
    method: 'PATCH',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({ key: FLAG, defaultValue: true }),
    signal: AbortSignal.timeout(10_000),
  });
  const body = await resp.text();
  note({ patch: url, status: resp.status, body });
  if (!resp.ok) throw new Error(`PATCH ${url}: HTTP ${resp.status}: ${body}`);
  return JSON.parse(body).flag?.revision ?? '0';
}

async function allowed(page) {
  say({ shown: (await waitForValue(page, false)).shown });
  const patched = await setDefaultTrue();
  const seen = await waitForValue(page, true);
  say(seen);
  if (BigInt(seen.revision || '0') < BigInt(patched)) {
    throw new Error(`the page shows revision ${seen.revision}, the change was ${patched}`);
  }
}

async function refused(page) {
  const handle = await page
    .waitForFunction(
      () => {
        if (document.querySelector('#flags li')) return { flagsShown: true };
        const error = document.querySelector('#error[data-state="failed"][data-phase="list"]');
        return error ? { error: error.textContent } : false;
      },
      null,
      { timeout: WAIT_MS, polling: 100 },
    )
    .catch(async (e) => {
      throw new Error(`waiting for the listing to fail: ${e.message.split('\n')[0]}; page: ${JSON.stringify(await pageState(page))}`);
    });
  const { error } = await handle.jsonValue();
  // Give a late answer a moment to show up anyway.
  await page.waitForTimeout(500);
  const state = await pageState(page);
  if (state.flags.length) {
    throw new Error(`${error ? 'the fetch failed, yet ' : ''}flags appeared: ${JSON.stringify(state)}`);
  }
  say({ refused: error });
}

try {
  await servePage();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    // --no-sandbox: Chromium's sandbox refuses to run as root (and in most
    // containers); --disable-dev-shm-usage: a small /dev/shm.
    args: ['--no-sandbox', '--disable-dev-shm-usage'],
    timeout: 20_000,
  });
  note({ chromium: browser.version() });
  const page = await browser.newPage();
  page.on('console', (m) => note({ console: m.type(), text: m.text() }));
  page.on('pageerror', (e) => note({ pageerror: String(e) }));
  const query = new URLSearchParams({ server: SERVER, token: TOKEN, flag: FLAG });
  if (env.TENANT) query.set('tenant', env.TENANT);
  await page.goto(`http://127.0.0.1:${PAGE_PORT}/page.html?${query}`, { timeout: WAIT_MS });
  await (EXPECT === 'allowed' ? allowed(page) : refused(page));
  await finish(0);
} catch (e) {
  if (!closing) say({ failed: e.message }); // else a timeout or signal said why
  await finish(1);
}
