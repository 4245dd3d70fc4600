// Switchyard through OpenFeature's JavaScript server SDK, with no Switchyard
// client code: @openfeature/server-sdk with @openfeature/ofrep-provider (the
// tenant's token in a header) and with @openfeature/flagd-provider in RPC mode
// (flagd.evaluation.v2; the provider has no way to send a header, so the
// server lets flagd calls without a token act for tenant `a`:
// SWITCHYARD_FLAGD_ANONYMOUS_TENANT). Also checks a flagd flag configuration
// the server sent (SyncFlags) against flagd's schema, with the validator
// @openfeature/flagd-core ships.
//
// Environment: SWITCHYARD_URL (http://host:port), SWITCHYARD_ADMIN (admin
// token, for the writes), SWITCHYARD_TENANT_TOKEN (tenant a's token),
// FLAGD_CONFIG (a file holding the configuration to validate).
//
// The server holds (tests/flagd.rs): `of-bool` (false; tenant a: true),
// `of-string` ("blue"), `of-int` (3), `of-float` (2.5), `of-object`
// ({"a": 1}). Prints one line per check; exits 1 on the first failure.

import { readFileSync } from 'node:fs';
import { OpenFeature, ProviderEvents, ErrorCode, StandardResolutionReasons } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';
import { FlagdProvider } from '@openfeature/flagd-provider';
import { MemoryStorage } from '@openfeature/flagd-core';

const base = process.env.SWITCHYARD_URL;
const admin = process.env.SWITCHYARD_ADMIN;
const tenantToken = process.env.SWITCHYARD_TENANT_TOKEN;
const url = new URL(base);

function check(what, got, want) {
  const g = JSON.stringify(got);
  const w = JSON.stringify(want);
  if (g !== w) {
    console.log(`FAIL ${what}: got ${g}, want ${w}`);
    process.exit(1);
  }
  console.log(`ok   ${what}: ${g}`);
}

async function write(method, path, body) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${await r.text()}`);
}

// The configuration-changed events a client sees.
function changes(client) {
  const seen = [];
  let wake = () => {};
  client.addHandler(ProviderEvents.ConfigurationChanged, (details) => {
    seen.push(details?.flagsChanged ?? []);
    wake();
  });
  return {
    mark: () => seen.length,
    // An event after the `after`-th that names `flag`, within 20 s.
    waitFor: (flag, after) =>
      new Promise((resolve) => {
        const timer = setTimeout(() => resolve(false), 20000);
        const test = () => {
          if (seen.slice(after).some((names) => names.includes(flag))) {
            clearTimeout(timer);
            resolve(true);
          }
        };
        wake = test;
        test();
      }),
  };
}

// The checks both providers pass; `rpc` for the flagd one.
async function typed(client, name) {
  let d = await client.getBooleanDetails('of-bool', false);
  check(`${name}: bool, the tenant's override`, [d.value, d.reason, d.variant], [true, 'TARGETING_MATCH', 'tenant']);
  check(`${name}: metadata source`, d.flagMetadata.source, 'tenant');
  d = await client.getStringDetails('of-string', 'code-default');
  check(`${name}: string`, [d.value, d.reason], ['blue', StandardResolutionReasons.STATIC]);
  d = await client.getNumberDetails('of-int', 0);
  check(`${name}: integer`, [d.value, d.errorCode], [3, undefined]);
  d = await client.getNumberDetails('of-float', 0);
  check(`${name}: float`, [d.value, d.errorCode], [2.5, undefined]);
  d = await client.getObjectDetails('of-object', {});
  check(`${name}: object`, [d.value, d.errorCode], [{ a: 1 }, undefined]);
  d = await client.getBooleanDetails('of-missing', true);
  check(`${name}: unknown flag, the code default`, [d.value, d.reason, d.errorCode], [true, 'ERROR', ErrorCode.FLAG_NOT_FOUND]);
  d = await client.getStringDetails('of-bool', 'code-default');
  check(`${name}: wrong type, the code default`, [d.value, d.errorCode], ['code-default', ErrorCode.TYPE_MISMATCH]);
}

async function main() {
  // OFREP, the token in a header.
  OpenFeature.setProvider(
    'ofrep',
    new OFREPProvider({ baseUrl: base, headers: [['Authorization', `Bearer ${tenantToken}`]] }),
  );
  const ofrep = OpenFeature.getClient('ofrep');
  await typed(ofrep, 'ofrep');

  // flagd in RPC mode, no header.
  const flagd = OpenFeature.getClient('flagd');
  const seen = changes(flagd);
  await OpenFeature.setProviderAndWait(
    'flagd',
    new FlagdProvider({ host: url.hostname, port: Number(url.port), resolverType: 'rpc', deadlineMs: 5000 }),
  );
  // The stream's first change names every flag: wait for it, so that the
  // next wait sees only the write's.
  check('flagd: the first change event', await seen.waitFor('of-bool', 0), true);
  await typed(flagd, 'flagd');

  // A write: OFREP's next evaluation sees it; flagd's provider is told.
  let mark = seen.mark();
  await write('PATCH', '/v1/flags/of-string?updateMask=storedValue', { key: 'of-string', storedValue: 'green' });
  let d = await ofrep.getStringDetails('of-string', 'code-default');
  check('ofrep: after a write', [d.value, d.reason, d.variant], ['green', 'STATIC', 'store']);
  check('flagd: configuration changed, of-string', await seen.waitFor('of-string', mark), true);
  d = await flagd.getStringDetails('of-string', 'code-default');
  check('flagd: after the write', [d.value, d.reason, d.variant], ['green', 'STATIC', 'store']);
  // STATIC answers are cached by the provider: the next change's event
  // evicts it, and the evaluation after it sees the new value.
  d = await flagd.getStringDetails('of-string', 'code-default');
  check('flagd: a STATIC answer, cached', [d.value, d.reason], ['green', 'CACHED']);
  mark = seen.mark();
  await write('PATCH', '/v1/flags/of-string?updateMask=storedValue', { key: 'of-string', storedValue: 'purple' });
  check('flagd: configuration changed again', await seen.waitFor('of-string', mark), true);
  d = await flagd.getStringDetails('of-string', 'code-default');
  check('flagd: the cached answer was dropped', [d.value, d.reason], ['purple', 'STATIC']);

  // A configuration the server sent, against flagd's schema.
  const config = readFileSync(process.env.FLAGD_CONFIG, 'utf8');
  const storage = new MemoryStorage(console);
  storage.setConfigurations(config, true);
  check('sync: valid against flagd\'s schema, every flag', [...storage.getFlags().keys()].sort(), [
    'of-bool', 'of-float', 'of-int', 'of-list', 'of-object', 'of-string',
  ]);
  check('sync: a list flag, as an object', storage.getFlag('of-list').variants.get('default'), { items: ['x', 2] });

  await OpenFeature.close();
  console.log('openfeature js: all checks passed');
}

main().catch((e) => {
  console.log(`FAIL ${e?.stack ?? e}`);
  process.exit(1);
});
