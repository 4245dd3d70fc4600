// The flagd testbed's gherkin (tests/conformance/testbed) run through
// OpenFeature's JavaScript server SDK and its unmodified providers from npm:
// @openfeature/flagd-provider in RPC and in-process mode, and
// @openfeature/ofrep-provider (OFREP over HTTP), against Switchyard started by
// tests/conformance/launchpad.py in flagd's place.
//
// These step definitions are ours (the provider's own e2e steps are not in its
// npm package); they give each gherkin step the meaning the testbed's README
// and the other providers' steps give it. Run by tests/conformance/run.sh;
// environment: CONF_JS_MODE (rpc, in-process or ofrep), CONF_PYTHON and
// CONF_LAUNCHPAD (how to start launchpad.py), CONF_HARNESS (the testbed tree
// with ssl/), CONF_WORKDIR, CONF_PORT, CONF_LAUNCHPAD_PORT,
// CONF_FORBIDDEN_PORT, CONF_TENANT_TOKEN (OFREP's bearer token), CONF_REPORT
// (where the per-scenario records go, read by tests/conformance/summary.py)
// and CONF_LEFT_OUT (tests/conformance/left-out-js.txt).

import { spawn } from 'node:child_process';
import { openSync, closeSync, readFileSync, renameSync, writeFileSync, rmSync } from 'node:fs';
import { deepStrictEqual, ok, strictEqual } from 'node:assert/strict';
import { basename, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  AfterAll,
  After,
  Before,
  BeforeAll,
  Given,
  Then,
  When,
  setDefaultTimeout,
} from '@cucumber/cucumber';
import { OpenFeature, ProviderEvents, ProviderStatus } from '@openfeature/server-sdk';
import { FlagdProvider } from '@openfeature/flagd-provider';
import { OFREPProvider } from '@openfeature/ofrep-provider';

const env = process.env;
const MODE = env.CONF_JS_MODE;
const PORT = Number(env.CONF_PORT ?? 18013);
const LAUNCHPAD = `http://127.0.0.1:${env.CONF_LAUNCHPAD_PORT ?? 18080}`;
const FORBIDDEN_PORT = Number(env.CONF_FORBIDDEN_PORT ?? 19212);
// Nothing listens here: the "unavailable" provider.
const UNAVAILABLE_PORT = 9999;
// How long an event step waits, as the other providers' steps do.
const EVENT_WAIT_MS = 10000;

if (!['rpc', 'in-process', 'ofrep'].includes(MODE)) {
  throw new Error(`CONF_JS_MODE must be rpc, in-process or ofrep, not ${MODE}`);
}

setDefaultTimeout(50000);

// -- launchpad.py, for the whole run ------------------------------------------

let launchpad;

async function post(path) {
  // launchpad answers once the server serves (a start) or at once (the rest).
  const r = await fetch(`${LAUNCHPAD}${path}`, { method: 'POST' });
  const body = await r.text();
  if (!r.ok) throw new Error(`launchpad ${path}: HTTP ${r.status} ${body}`);
  return body;
}

BeforeAll(async function () {
  const log = openSync(join(env.CONF_WORKDIR, 'launchpad.log'), 'a');
  launchpad = spawn(env.CONF_PYTHON, [env.CONF_LAUNCHPAD], { stdio: ['ignore', log, log] });
  closeSync(log);
  writeFileSync(join(env.CONF_WORKDIR, 'launchpad.pid'), String(launchpad.pid));
  const deadline = Date.now() + 60000;
  for (;;) {
    if (launchpad.exitCode !== null) throw new Error('launchpad.py exited: see launchpad.log');
    try {
      await fetch(`${LAUNCHPAD}/`); // any answer (404 for "/") means it serves
      return;
    } catch {
      if (Date.now() > deadline) throw new Error('launchpad.py not answering after 60 s');
      await sleep(100);
    }
  }
});

AfterAll(async function () {
  dump();
  if (!launchpad) return;
  launchpad.kill('SIGTERM');
  await new Promise((resolve) => {
    const timer = setTimeout(() => {
      launchpad.kill('SIGKILL');
      resolve();
    }, 15000);
    launchpad.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
  });
  rmSync(join(env.CONF_WORKDIR, 'launchpad.pid'), { force: true });
});

// -- the report: one record per scenario example, as conformance_report.py's ----

const records = [];

function dump() {
  if (!env.CONF_REPORT) return;
  writeFileSync(`${env.CONF_REPORT}.tmp`, JSON.stringify(records, null, 1));
  renameSync(`${env.CONF_REPORT}.tmp`, env.CONF_REPORT);
}

/** The scenario's name and, to tell an outline's examples apart, the quoted
 * values of its Given and When steps. */
function testName(pickle) {
  const values = pickle.steps
    .filter((s) => s.type !== 'Outcome')
    .flatMap((s) => [...s.text.matchAll(/"([^"]*)"/g)].map((m) => m[1]));
  return values.length ? `${pickle.name} [${values.join(', ')}]` : pickle.name;
}

/** left-out-js.txt's lines for this mode: [feature, scenario, example text]. */
const leftOut = (env.CONF_LEFT_OUT ? readFileSync(env.CONF_LEFT_OUT, 'utf8') : '')
  .split('\n')
  .map((line) => line.replace(/#.*/, '').trim())
  .filter(Boolean)
  .map((line) => line.split('|').map((f) => f.trim()))
  .filter(([m]) => m === MODE || m === 'all' || (m === 'flagd' && MODE !== 'ofrep'))
  .map(([, feature, scenario, example]) => ({ feature, scenario, example }));

// -- each scenario -------------------------------------------------------------

Before(async function ({ pickle }) {
  this.record = {
    feature: basename(pickle.uri),
    scenario: pickle.name,
    test: testName(pickle),
    tags: pickle.tags.map((t) => t.name),
    outcome: 'notrun',
  };
  records.push(this.record);
  const out = leftOut.some(
    (l) => l.feature === this.record.feature && l.scenario === pickle.name && (!l.example || this.record.test.includes(l.example)),
  );
  if (out) {
    this.record.outcome = 'deselected';
    return 'skipped';
  }
  await OpenFeature.clearProviders();
  this.options = {};
  this.events = [];
  this.context = undefined;
  this.flag = undefined;
  this.details = undefined;
});

After(async function ({ result }) {
  if (this.record.outcome === 'deselected') return;
  this.record.outcome = { PASSED: 'passed', FAILED: 'failed', SKIPPED: 'skipped' }[result.status] ?? 'error';
  if (result.message) this.record.message = result.message.split('\n')[0].slice(0, 300);
  dump();
  await OpenFeature.close();
  await post('/stop');
});

/** A gherkin value as the type the step names. */
function typed(value, type) {
  switch (type) {
    case 'String':
      return value === 'null' ? undefined : value;
    case 'Integer':
    case 'Long':
      return Number.parseInt(value, 10);
    case 'Float':
      return Number.parseFloat(value);
    case 'Boolean':
      return value.toLowerCase() === 'true';
    case 'StringList':
      return value.split(',').map((s) => s.trim());
    case 'Object':
      return value === 'null' ? undefined : JSON.parse(value);
    case 'ResolverType':
      return value.toLowerCase();
    default:
      return value;
  }
}

// -- the provider ----------------------------------------------------------------

Given('an option {string} of type {string} with value {string}', function (name, type, value) {
  this.options[name] = typed(value, type);
});

// The launchpad config each provider kind starts flagd (here: Switchyard) with.
const CONFIGS = { stable: 'default', unavailable: null, forbidden: null, ssl: 'ssl', syncpayload: 'sync-payload', metadata: 'metadata' };

Given(/^a (\w+) flagd provider$/, async function (kind) {
  if (!(kind in CONFIGS)) throw new Error(`unknown provider kind ${kind}`);
  const config = CONFIGS[kind];
  if (config !== null) await post(`/start?config=${config}`);
  let provider;
  if (MODE === 'ofrep') {
    if (kind !== 'stable' && kind !== 'metadata') throw new Error(`no OFREP provider of kind ${kind}`);
    provider = new OFREPProvider({
      baseUrl: `http://127.0.0.1:${PORT}`,
      headers: { authorization: `Bearer ${env.CONF_TENANT_TOKEN}` },
    });
  } else {
    const options = {
      resolverType: MODE,
      host: 'localhost',
      port: PORT,
      // As the other providers' steps: short backoff, a 2 s grace period (the
      // scenarios' timings assume it) and a generous deadline.
      retryGracePeriod: 2,
      deadlineMs: 15000,
      keepAliveTime: 200,
      retryBackoffMs: 100,
      retryBackoffMaxMs: 1000,
      ...this.options,
    };
    if (kind === 'unavailable') options.port = UNAVAILABLE_PORT;
    if (kind === 'forbidden') options.port = FORBIDDEN_PORT;
    if (kind === 'ssl') {
      options.tls = true;
      options.certPath = join(env.CONF_HARNESS, 'ssl', 'custom-root-cert.crt');
    }
    provider = new FlagdProvider(options);
  }
  if (kind === 'unavailable' || kind === 'forbidden') {
    OpenFeature.setProvider(kind, provider);
  } else {
    await OpenFeature.setProviderAndWait(kind, provider);
  }
  this.client = OpenFeature.getClient(kind);
});

Then(/^the client should be in (\w+) state$/, function (state) {
  const want = ProviderStatus[state.toUpperCase().replace('-', '_')];
  ok(want, `unknown provider state ${state}`);
  strictEqual(this.client.providerStatus, want);
});

When(/^the connection is lost for (\d+)s$/, async function (seconds) {
  await post(`/restart?seconds=${seconds}`);
});

When('the flag was modified', async function () {
  await post('/change');
});

// -- the context -------------------------------------------------------------------

Given('a context containing a key {string}, with type {string} and with value {string}', function (key, type, value) {
  this.context = { ...this.context, [key]: typed(value, type) };
});

Given(
  'a context containing a nested property with outer key {string} and inner key {string}, with value {string}',
  function (outer, inner, value) {
    this.context = { ...this.context, [outer]: { ...(this.context?.[outer] ?? {}), [inner]: value } };
  },
);

Given('a context containing a targeting key with value {string}', function (key) {
  this.context = { ...this.context, targetingKey: key };
});

// -- the flag ----------------------------------------------------------------------

Given(/^a (\w+)-flag with key "(.*)" and a default value "(.*)"$/, function (type, key, value) {
  this.flag = { key, type, defaultValue: typed(value, type) };
});

When('the flag was evaluated with details', async function () {
  const { key, type, defaultValue } = this.flag;
  const get = {
    Boolean: 'getBooleanDetails',
    String: 'getStringDetails',
    Integer: 'getNumberDetails',
    Float: 'getNumberDetails',
    Object: 'getObjectDetails',
  }[type];
  if (!get) throw new Error(`unknown flag type ${type}`);
  this.details = await this.client[get](key, defaultValue, this.context);
});

Then('the resolved details value should be {string}', function (value) {
  deepStrictEqual(this.details.value, typed(value, this.flag.type), JSON.stringify(this.details));
});

Then('the reason should be {string}', function (reason) {
  strictEqual(this.details.reason, reason, JSON.stringify(this.details));
});

Then('the error-code should be {string}', function (code) {
  // An empty code in an example's table: no error.
  strictEqual(this.details.errorCode, code === '' ? undefined : code, JSON.stringify(this.details));
});

Then('the variant should be {string}', function (variant) {
  strictEqual(this.details.variant, variant, JSON.stringify(this.details));
});

Then('the resolved metadata should contain', function (table) {
  for (const row of table.hashes()) {
    strictEqual(this.details.flagMetadata[row.key], typed(row.value, row.metadata_type), `metadata ${row.key}: ${JSON.stringify(this.details.flagMetadata)}`);
  }
});

Then('the resolved metadata is empty', function () {
  deepStrictEqual(this.details.flagMetadata, {});
});

// -- events ------------------------------------------------------------------------

const EVENTS = {
  ready: ProviderEvents.Ready,
  error: ProviderEvents.Error,
  stale: ProviderEvents.Stale,
  change: ProviderEvents.ConfigurationChanged,
};

Given(/^a (\w+) event handler$/, function (type) {
  ok(EVENTS[type], `unknown event ${type}`);
  this.client.addHandler(EVENTS[type], (details) => this.events.push({ type, details }));
});

/** Waits for an event of `type` not yet taken, and takes it. */
async function took(world, type, ms) {
  const deadline = Date.now() + ms;
  for (;;) {
    const i = world.events.findIndex((e) => e.type === type);
    if (i >= 0) return world.events.splice(i, 1)[0];
    if (Date.now() > deadline) throw new Error(`no ${type} event within ${ms} ms (seen: ${world.events.map((e) => e.type)})`);
    await sleep(20);
  }
}

When(/^a (\w+) event was fired$/, async function (type) {
  this.last = await took(this, type, EVENT_WAIT_MS);
});

Then(/^the (\w+) event handler should have been executed$/, async function (type) {
  this.last = await took(this, type, EVENT_WAIT_MS);
});

Then(/^the (\w+) event handler should have been executed within (\d+)ms$/, async function (type, ms) {
  this.last = await took(this, type, Number(ms));
});

Then('the flag should be part of the event payload', function () {
  ok(this.last?.type === 'change', 'no change event taken');
  ok(this.last.details?.flagsChanged?.includes(this.flag.key), `flagsChanged: ${JSON.stringify(this.last.details)}`);
});
