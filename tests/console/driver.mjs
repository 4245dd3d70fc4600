// The console in a real headless Chromium, as an operator uses it.
//
//   SERVER       Switchyard's base URL (the console is SERVER/ui/)
//   TOKEN        an admin token
//   TENANT_TOKEN a token scoped to tenant `acme` (made by the test beforehand)
//   SHOTS        a directory for the screenshots
//   CHROMIUM     the browser binary (default /usr/bin/chromium)
//
// Steps (each printed as {"step": ...} on stdout): sign in; create a tenant and
// resolve a host; create two flags; type a rule (checked as it is typed) and
// save a fractional rule; override a flag for the tenant; print
// {"need": "grpc-change"} and wait for a line on stdin, then see the flag the
// test created through gRPC appear without a reload; start a rollout and see
// its stage, pause it; find each step in the audit log, filter it by flag;
// sign in with the tenant's token and see only its pages; axe-core on every
// page at desktop and phone width (no serious or critical violation); no
// horizontal scrolling at phone width; the keyboard reaches the pages.
// {"failed": "..."} and exit 1 on the first failure.

import { mkdir, readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import { chromium } from 'playwright-core';

const env = process.env;
const SERVER = (env.SERVER || '').replace(/\/+$/, '');
const { TOKEN, TENANT_TOKEN } = env;
const SHOTS = env.SHOTS || 'screenshots';
const CHROMIUM = env.CHROMIUM || '/usr/bin/chromium';
const WAIT = 10_000;

const say = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);
const require = createRequire(import.meta.url);
const AXE = await readFile(require.resolve('axe-core/axe.min.js'), 'utf8');
const stdin = createInterface({ input: process.stdin });
const lines = stdin[Symbol.asyncIterator]();

let browser;
async function fail(message) {
  say({ failed: message });
  await browser?.close().catch(() => {});
  process.exit(1);
}
setTimeout(() => fail('overall timeout after 150 s'), 150_000).unref();

function check(cond, message) {
  if (!cond) throw new Error(message);
}

async function shot(page, name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

/** axe-core on the page as it is; serious or critical violations fail. */
async function accessible(page, name) {
  await page.evaluate(AXE);
  const result = await page.evaluate(() =>
    // eslint-disable-next-line no-undef
    axe.run(document, { resultTypes: ['violations'] }),
  );
  const bad = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  check(
    bad.length === 0,
    `${name}: ${bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(' ')).slice(0, 3).join(', ')}`).join('; ')}`,
  );
}

async function phone(page, name) {
  await page.setViewportSize({ width: 375, height: 740 });
  await page.waitForTimeout(100);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, `${name}: ${overflow} px of horizontal scrolling at 375 px`);
  await accessible(page, `${name} (phone)`);
  await shot(page, `${name}-phone`);
  await page.setViewportSize({ width: 1280, height: 800 });
}

async function visit(page, hash, name, ready) {
  await page.evaluate((h) => (location.hash = h), hash);
  await page.getByRole('heading', { level: 1, name: ready }).waitFor({ timeout: WAIT });
  await accessible(page, name);
  await shot(page, name);
  await phone(page, name);
  say({ step: `page ${name}` });
}

async function submit(page, formName, fields, button) {
  const form = page.getByRole('form', { name: formName });
  for (const [label, value] of Object.entries(fields)) {
    await form.getByLabel(label, { exact: true }).fill(value);
  }
  await form.getByRole('button', { name: button }).click();
  const said = await page.waitForFunction((n) => {
    const f = [...document.querySelectorAll('form')].find((x) => x.getAttribute('aria-label') === n);
    const s = f?.querySelector('[role=status]');
    if (!f) return { gone: true };
    return s && s.textContent !== 'Working…' && s.textContent !== '' && { text: s.textContent, ok: s.className === 'okay' };
  }, formName, { timeout: WAIT });
  const { gone, text, ok } = await said.jsonValue();
  check(gone || ok, `${formName}: ${text}`);
}

async function signIn(page, token, who) {
  await page.goto(`${SERVER}/ui/`);
  await page.getByLabel('Token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText(who).waitFor({ timeout: WAIT });
}

try {
  await mkdir(SHOTS, { recursive: true });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox'] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(`${m.text()} (${m.location().url})`));
  page.on('response', (r) => r.status() >= 400 && errors.push(`${r.request().method()} ${r.url()}: ${r.status()}`));

  // The console's page carries a strict CSP, and signing in needs a token.
  const first = await page.goto(`${SERVER}/ui/`);
  const csp = first.headers()['content-security-policy'] || '';
  check(csp.includes("script-src 'self'") && !csp.includes('unsafe'), `CSP: ${csp}`);
  await page.getByRole('heading', { name: 'Sign in' }).waitFor({ timeout: WAIT });
  await accessible(page, 'sign-in');
  await shot(page, 'sign-in');
  await phone(page, 'sign-in');
  await page.getByLabel('Token').fill('not-a-token-of-this-server');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('alert').filter({ hasText: 'not accepted' }).waitFor({ timeout: WAIT });
  await page.getByLabel('Token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('admin_token (admin)').waitFor({ timeout: WAIT });
  // The refused token's 401 is the browser's own log line; from here on the
  // page must log no error.
  errors.length = 0;
  say({ step: 'signed in' });

  // The keyboard: the skip link is the first stop and leads to the content;
  // Tab from it walks the sections, Enter opens one.
  const firstStop = await page.evaluate(
    () => [...document.querySelectorAll('a[href], button, input, select, textarea')].find((e) => !e.closest('[hidden]'))?.textContent,
  );
  check(firstStop === 'Skip to content', `the first Tab stop is ${firstStop}`);
  await page.focus('a.skip');
  await page.keyboard.press('Enter');
  check(await page.evaluate(() => document.activeElement?.id) === 'main', 'the skip link moves focus to the content');
  await page.focus('a.skip');
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  check(await page.evaluate(() => document.activeElement?.textContent) === 'Tenants', 'Tab walks the sections');
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { level: 1, name: 'Tenants' }).waitFor({ timeout: WAIT });
  say({ step: 'keyboard' });

  // Tenants: create one, resolve a host into it.
  await visit(page, '#/tenants', 'tenants', 'Tenants');
  await submit(page, 'New tenant', { Id: 'acme', Name: 'Acme', 'Patterns (comma-separated)': '*.acme.example', 'Reason (audit log)': 'onboarding' }, 'Create');
  await page.getByRole('cell', { name: '*.acme.example' }).waitFor({ timeout: WAIT });
  await submit(page, 'Resolve a host', { Host: 'API.acme.example' }, 'Resolve');
  await page.locator('#resolved').getByText('acme', { exact: true }).waitFor({ timeout: WAIT });
  say({ step: 'tenant created and resolved' });

  // Flags: two, one to get a rule and an override, one to roll out.
  await visit(page, '#/flags', 'flags', 'Flags');
  await submit(page, 'New flag', { Key: 'new-checkout', 'Reason (audit log)': 'CHG-1' }, 'Create');
  await page.getByRole('link', { name: 'new-checkout' }).waitFor({ timeout: WAIT });
  await submit(page, 'New flag', { Key: 'dark-mode' }, 'Create');
  await page.getByRole('link', { name: 'dark-mode' }).waitFor({ timeout: WAIT });
  say({ step: 'flags created' });

  await page.getByRole('link', { name: 'new-checkout' }).click();
  await page.getByRole('heading', { level: 1, name: 'Flag new-checkout' }).waitFor({ timeout: WAIT });
  const rule = page.getByLabel('Targeting (flagd JsonLogic)');
  await rule.fill('{"fractional": [["on", 50], ["of');
  await page.locator('#rule-check').filter({ hasText: 'Not JSON' }).waitFor({ timeout: WAIT });
  await rule.fill('{"fractional": [["on", 50], ["blue", 50]]}');
  await page.locator('#rule-check').filter({ hasText: 'Names no variant of this flag: blue' }).waitFor({ timeout: WAIT });
  await rule.fill('{"fractional": [["on", 50], ["off", 50]]}');
  await page.locator('#rule-check').filter({ hasText: 'Looks right' }).waitFor({ timeout: WAIT });
  await page.getByRole('form', { name: 'Edit the rule' }).getByRole('button', { name: 'Save rule' }).click();
  await page.locator('#rule').filter({ hasText: '"fractional"' }).waitFor({ timeout: WAIT });
  say({ step: 'rule validated as typed and saved' });
  await submit(page, 'Evaluate', { 'Context (JSON)': '{"targetingKey": "user-7"}' }, 'Evaluate');
  await page.locator('#evaluation').getByText('fractional').waitFor({ timeout: WAIT });
  await submit(page, 'Override for a tenant', { Tenant: 'acme', 'Value (JSON)': 'false' }, 'Set override');
  await page.locator('#per-tenant tr[data-tenant="acme"]').getByText('tenant', { exact: true }).waitFor({ timeout: WAIT });
  await accessible(page, 'flag');
  await shot(page, 'flag');
  await phone(page, 'flag');
  say({ step: 'evaluated and overridden' });

  // A change made elsewhere (gRPC, by the test) shows without a reload.
  await visit(page, '#/flags', 'flags-live', 'Flags');
  await page.evaluate(() => (window.__notReloaded = true));
  say({ need: 'grpc-change' });
  await lines.next();
  await page.getByRole('link', { name: 'from-grpc' }).waitFor({ timeout: 5000 });
  check(await page.evaluate(() => window.__notReloaded === true), 'the page was reloaded');
  say({ step: 'a gRPC change appeared without a reload' });

  // A rollout: started here, its stage shown, paused.
  await visit(page, '#/rollouts', 'rollouts', 'Rollouts');
  await submit(page, 'Start a rollout', { Flag: 'dark-mode', 'Treatment variant': 'on', 'Stages (%)': '10, 50', 'Hold per stage (s)': '3600' }, 'Start');
  await page.locator('#rollout-state').filter({ hasText: 'stage 1 of 2 at 10 %' }).waitFor({ timeout: WAIT });
  await accessible(page, 'rollout');
  await shot(page, 'rollout');
  await page.getByRole('button', { name: 'Pause' }).click();
  await page.locator('#rollout-state').filter({ hasText: 'paused' }).waitFor({ timeout: WAIT });
  await phone(page, 'rollout');
  say({ step: 'rollout started, shown and paused' });

  // Gate runs (none yet) and the audit log.
  await visit(page, '#/gates', 'gates', 'Gate runs');
  await visit(page, '#/audit', 'audit', 'Audit log');
  const audit = page.locator('#audit');
  for (const text of ['tenant.create', 'flag.create', 'flag.update', 'override.set', 'rollout.pause', 'onboarding', 'CHG-1']) {
    await audit.getByText(text, { exact: false }).first().waitFor({ timeout: WAIT });
  }
  await submit(page, 'Filter the audit log', { Flag: 'dark-mode' }, 'Filter');
  await page.waitForFunction(() => {
    const rows = [...document.querySelectorAll('#audit tbody tr')];
    return rows.length >= 3 && rows.every((r) => r.children[3].textContent === 'dark-mode');
  }, null, { timeout: WAIT });
  await shot(page, 'audit-filtered');
  say({ step: 'every step in the audit log' });

  check(errors.length === 0, `the page logged errors: ${[...new Set(errors)].join('; ')}`);

  // A tenant's token: its own flags and audit entries, nothing else.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await signIn(page, TENANT_TOKEN, '(tenant:acme)');
  await page.getByRole('heading', { level: 1, name: 'Flags of acme' }).waitFor({ timeout: WAIT });
  const shown = await page.locator('nav a:not([hidden])').allTextContents();
  check(JSON.stringify(shown) === JSON.stringify(['Flags', 'Audit log']), `a tenant token's sections: ${shown}`);
  check(await page.getByRole('form', { name: 'New flag' }).count() === 0, 'a tenant token is offered no flag creation');
  await shot(page, 'tenant-flags');
  await page.getByRole('link', { name: 'new-checkout' }).click();
  await page.getByRole('heading', { level: 1, name: 'Flag new-checkout' }).waitFor({ timeout: WAIT });
  await submit(page, 'Evaluate', { 'Context (JSON)': '{"targetingKey": "user-7"}' }, 'Evaluate');
  await page.locator('#evaluation').getByText('source tenant').waitFor({ timeout: WAIT });
  await accessible(page, 'tenant-flag');
  await visit(page, '#/audit', 'tenant-audit', 'Audit log');
  const tenants = await page.locator('#audit tbody tr td:nth-child(5)').allTextContents();
  check(tenants.length > 0 && tenants.every((t) => t === 'acme'), `a tenant sees its own entries only: ${tenants}`);
  say({ step: 'a tenant token sees its own' });

  await browser.close();
  say({ done: true });
  process.exit(0);
} catch (e) {
  await fail(e.message);
}
