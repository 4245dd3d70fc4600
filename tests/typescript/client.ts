// A Switchyard client written against code generated from proto/ by
// protoc-gen-es, run with connect-node over gRPC (HTTP/2, cleartext) or
// gRPC-Web (HTTP/1.1). The only difference between the transports is the factory in
// makeTransport(): every step below is the same code for both.
//
// Environment:
//   SWITCHYARD_ADDR          host:port of the server (required)
//   SWITCHYARD_ADMIN         an admin token (required)
//   SWITCHYARD_TENANT        the id of the tenant to create (step a); the test
//                            owns it: an existing tenant of that id is deleted
//                            and created again. Unset: ts-<pid>-<transport>.
//   SWITCHYARD_TENANT_TOKEN  a `tenant:<SWITCHYARD_TENANT>` token; the watch
//                            (step c) runs with it. Unset: the watch runs as
//                            admin with tenant_id.
//   TRANSPORT                "grpc" (default) or "grpc-web"
//   GZIP                     "1": compress every request with gzip and accept
//                            only gzip responses
//
// Prints one JSON line per step on stdout ({"step": ..., "ok": true, ...}) and
// a last line {"step": "done", ...}; on the first failure prints
// {"step": ..., "ok": false, "error": ...}, the reason on stderr, and exits 1.
// Everything is bounded: 10 s per call or watch event, 30 s in all.

import { create, toJson } from "@bufbuild/protobuf";
import { ValueSchema, type Value } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { compressionGzip, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { FlagEventType, FlagService, FlagType, type WatchFlagsResponse } from "./gen/switchyard/v1/flag_pb.js";
import { TenantService } from "./gen/switchyard/v1/tenant_pb.js";

const OVERALL_TIMEOUT_MS = 30_000;
const CALL_TIMEOUT_MS = 10_000;
const WRONG_TOKEN = "wrong-token-0123456789";

// ---------------------------------------------------------------- reporting

let currentStep = "config";

class StepFailure extends Error {}

function jsonLine(obj: Record<string, unknown>): string {
  return JSON.stringify(obj, (_k, v: unknown) => (typeof v === "bigint" ? v.toString() : v));
}

function pass(step: string, details: Record<string, unknown> = {}): void {
  process.stdout.write(jsonLine({ step, ok: true, ...details }) + "\n");
}

function fail(message: string): never {
  throw new StepFailure(message);
}

function describe(e: unknown): string {
  if (e instanceof ConnectError) {
    return `ConnectError ${Code[e.code]} (${e.code}): ${e.rawMessage}`;
  }
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

function die(step: string, message: string): never {
  process.stdout.write(jsonLine({ step, ok: false, error: message }) + "\n");
  process.stderr.write(`client.ts: step ${step} failed: ${message}\n`);
  process.exit(1);
}

function check(cond: boolean, message: string): asserts cond {
  if (!cond) fail(message);
}

// Rejects with a clear message when `p` takes longer than `ms`.
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StepFailure(`${what}: no answer within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

// Runs `call`, which must fail with a ConnectError of code `want`.
async function expectCode(want: Code, what: string, call: () => Promise<unknown>): Promise<ConnectError> {
  try {
    await call();
  } catch (e) {
    const err = ConnectError.from(e);
    check(err.code === want, `${what}: want ${Code[want]}, got ${describe(err)}`);
    return err;
  }
  fail(`${what}: want ${Code[want]}, got a success`);
}

// ---------------------------------------------------------------- config

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === "" ? undefined : v;
}

function required(name: string): string {
  const v = env(name);
  if (v === undefined) die("config", `${name} is not set`);
  return v;
}

const addr = required("SWITCHYARD_ADDR");
const adminToken = required("SWITCHYARD_ADMIN");
const transportName = env("TRANSPORT") ?? "grpc";
if (transportName !== "grpc" && transportName !== "grpc-web") {
  die("config", `TRANSPORT must be "grpc" or "grpc-web", not ${JSON.stringify(transportName)}`);
}
const gzip = env("GZIP") === "1";
const tenantToken = env("SWITCHYARD_TENANT_TOKEN");
const tenantId = env("SWITCHYARD_TENANT") ?? `ts-${process.pid}-${transportName}`;
if (tenantToken !== undefined && env("SWITCHYARD_TENANT") === undefined) {
  die("config", "SWITCHYARD_TENANT_TOKEN is set: SWITCHYARD_TENANT must name its tenant");
}
const baseUrl = "http://" + addr;
// Unique per run, so that runs against one server do not collide.
const unique = `${process.pid}-${transportName}${gzip ? "-gzip" : ""}`;

// ---------------------------------------------------------------- transport

// The response encodings seen (the grpc-encoding header), to tell whether
// gzip was used on the way back.
const responseEncodings = new Set<string>();

function bearer(token: string): Interceptor {
  return (next) => async (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    const res = await next(req);
    responseEncodings.add(res.header.get("grpc-encoding") ?? "identity");
    return res;
  };
}

function makeTransport(token: string): Transport {
  const common = {
    baseUrl,
    interceptors: [bearer(token)],
    // GZIP=1: every request compressed (even the small ones) and only gzip
    // accepted back. Otherwise nothing compressed either way.
    ...(gzip
      ? { sendCompression: compressionGzip, acceptCompression: [compressionGzip], compressMinBytes: 0 }
      : { acceptCompression: [] }),
  };
  // connect-node v2's gRPC transport is HTTP/2 only (no httpVersion option;
  // h2c with prior knowledge on http://); gRPC-Web goes over HTTP/1.1.
  return transportName === "grpc"
    ? createGrpcTransport(common)
    : createGrpcWebTransport({ ...common, httpVersion: "1.1" });
}

// ---------------------------------------------------------------- helpers

function boolValue(b: boolean): Value {
  return create(ValueSchema, { kind: { case: "boolValue", value: b } });
}

function json(v: Value | undefined): unknown {
  return v === undefined ? undefined : toJson(ValueSchema, v);
}

function isBool(v: Value | undefined, b: boolean): boolean {
  return v?.kind.case === "boolValue" && v.kind.value === b;
}

const opts = { timeoutMs: CALL_TIMEOUT_MS };

// ---------------------------------------------------------------- steps

async function main(): Promise<void> {
  const adminTransport = makeTransport(adminToken);
  const tenants = createClient(TenantService, adminTransport);
  const flags = createClient(FlagService, adminTransport);
  const watcher: Client<typeof FlagService> = createClient(FlagService, makeTransport(tenantToken ?? adminToken));

  // a. Create the tenant with a suffix pattern; resolve a host under it.
  currentStep = "a";
  const domain = `r${unique}.ts.switchyard.test`;
  const pattern = `*.${domain}`;
  const wanted = { id: tenantId, displayName: `TypeScript client ${unique}`, patterns: [pattern] };
  let recreated = false;
  let created;
  try {
    created = await tenants.createTenant({ tenant: wanted }, opts);
  } catch (e) {
    if (ConnectError.from(e).code !== Code.AlreadyExists) throw e;
    // Left over from an earlier run against this server: start again clean
    // (deleting a tenant deletes its overrides).
    await tenants.deleteTenant({ tenantId }, opts);
    created = await tenants.createTenant({ tenant: wanted }, opts);
    recreated = true;
  }
  check(created.tenant?.id === tenantId, `CreateTenant returned tenant ${JSON.stringify(created.tenant?.id)}`);
  const host = `API.${domain}:8443`;
  const resolved = await tenants.resolveTenant({ key: host }, opts);
  check(resolved.tenant?.id === tenantId, `ResolveTenant(${host}) -> ${JSON.stringify(resolved.tenant?.id)}, want ${tenantId}`);
  check(resolved.matchedPattern === pattern, `ResolveTenant matched ${JSON.stringify(resolved.matchedPattern)}, want ${pattern}`);
  pass("a", {
    tenant: tenantId,
    recreated,
    pattern,
    resolved_key: host,
    normalized_key: resolved.normalizedKey,
    resolved_tenant: resolved.tenant.id,
    matched_pattern: resolved.matchedPattern,
  });

  // b. A bool flag, default false; the tenant sees false.
  currentStep = "b";
  const flagKey = `ts.client.${unique}.${Date.now()}`;
  const flag = await flags.createFlag(
    {
      flag: {
        key: flagKey,
        type: FlagType.BOOL,
        description: "created by tests/typescript/client.ts",
        defaultValue: boolValue(false),
      },
    },
    opts,
  );
  check(flag.flag?.key === flagKey, `CreateFlag returned ${JSON.stringify(flag.flag?.key)}`);
  const before = await flags.evaluateFlag({ flagKey, target: { case: "tenantId", value: tenantId } }, opts);
  check(isBool(before.value, false), `EvaluateFlag -> ${jsonLine({ v: json(before.value) })}, want false`);
  check(before.tenantId === tenantId, `EvaluateFlag evaluated for ${JSON.stringify(before.tenantId)}`);
  pass("b", { flag: flagKey, revision: flag.flag.revision, value: json(before.value), source: before.source });

  // c. Watch: a SNAPSHOT holding the flag, then the override as an UPSERT.
  currentStep = "c";
  const ac = new AbortController();
  const stream = watcher.watchFlags({ tenantId }, { signal: ac.signal })[Symbol.asyncIterator]();
  let events = 0;
  const nextEvent = async (what: string): Promise<WatchFlagsResponse> => {
    const r = await within(stream.next(), CALL_TIMEOUT_MS, `WatchFlags, waiting for ${what}`);
    if (r.done) fail(`WatchFlags ended while waiting for ${what}`);
    events++;
    return r.value;
  };
  let snapshotParts = 0;
  let snapshotFlags = 0;
  let snapshotRevision = 0n;
  let inSnapshot: Value | undefined;
  for (;;) {
    const ev = await nextEvent(snapshotParts === 0 ? "the SNAPSHOT" : "the rest of the SNAPSHOT");
    check(
      ev.type === FlagEventType.SNAPSHOT,
      `WatchFlags event ${events}: want SNAPSHOT, got ${FlagEventType[ev.type]} (${ev.type})`,
    );
    snapshotParts++;
    snapshotFlags += ev.flags.length;
    snapshotRevision = ev.revision;
    inSnapshot = ev.flags.find((f) => f.flag === flagKey)?.value ?? inSnapshot;
    if (!ev.snapshotContinues) break;
  }
  check(inSnapshot !== undefined, `the SNAPSHOT (${snapshotFlags} flags) does not hold ${flagKey}`);
  check(isBool(inSnapshot, false), `the SNAPSHOT has ${flagKey} = ${jsonLine({ v: json(inSnapshot) })}, want false`);
  check(snapshotRevision >= flag.flag.revision, `SNAPSHOT revision ${snapshotRevision} < the flag's ${flag.flag.revision}`);

  const set = await flags.setTenantOverride({ tenantId, flagKey, value: boolValue(true) }, opts);
  let upsert: WatchFlagsResponse | undefined;
  let skipped = 0;
  while (upsert === undefined) {
    const ev = await nextEvent(`the UPSERT of ${flagKey} (revision ${set.revision})`);
    if (ev.type === FlagEventType.UPSERT && ev.flag?.flag === flagKey) {
      upsert = ev;
    } else if (ev.type === FlagEventType.HEARTBEAT || ev.type === FlagEventType.UPSERT) {
      skipped++; // idle, or another flag's change (another run on this server)
    } else {
      fail(`WatchFlags: unexpected ${FlagEventType[ev.type]} (${ev.type}) before the UPSERT`);
    }
  }
  check(isBool(upsert.flag?.value, true), `UPSERT has ${jsonLine({ v: json(upsert.flag?.value) })}, want true`);
  check(upsert.flag?.source === "tenant", `UPSERT source ${JSON.stringify(upsert.flag?.source)}, want "tenant"`);
  check(upsert.revision === set.revision, `UPSERT revision ${upsert.revision}, SetTenantOverride said ${set.revision}`);

  // Abort the stream: the pending read ends with CANCELED (or the stream ends).
  ac.abort();
  let closed: string;
  try {
    const r = await within(stream.next(), CALL_TIMEOUT_MS, "WatchFlags after abort");
    closed = r.done ? "ended" : "event after abort";
    if (!r.done) await stream.return?.();
  } catch (e) {
    const err = ConnectError.from(e);
    check(err.code === Code.Canceled, `WatchFlags after abort: want CANCELED, got ${describe(err)}`);
    closed = "canceled";
  }
  pass("c", {
    watch_as: tenantToken !== undefined ? "tenant token" : "admin, tenant_id",
    snapshot_parts: snapshotParts,
    snapshot_flags: snapshotFlags,
    snapshot_revision: snapshotRevision,
    snapshot_value: json(inSnapshot),
    override_revision: set.revision,
    upsert_revision: upsert.revision,
    upsert_value: json(upsert.flag?.value),
    upsert_source: upsert.flag?.source,
    events_skipped: skipped,
    closed,
  });

  // d. An unknown flag: NOT_FOUND.
  currentStep = "d";
  const missing = `ts.missing.${unique}.${Date.now()}`;
  const notFound = await expectCode(Code.NotFound, `EvaluateFlag(${missing})`, () =>
    flags.evaluateFlag({ flagKey: missing, target: { case: "tenantId", value: tenantId } }, opts),
  );
  pass("d", { flag: missing, code: Code[notFound.code], message: notFound.rawMessage });

  // e. An unknown token: UNAUTHENTICATED.
  currentStep = "e";
  const stranger = createClient(TenantService, makeTransport(WRONG_TOKEN));
  const unauth = await expectCode(Code.Unauthenticated, "ResolveTenant with a wrong token", () =>
    stranger.resolveTenant({ key: host }, opts),
  );
  pass("e", { code: Code[unauth.code], message: unauth.rawMessage });

  // Leave the server as it was; a failure here fails the run too.
  currentStep = "cleanup";
  await flags.deleteFlag({ flagKey }, opts);
  await tenants.deleteTenant({ tenantId }, opts);

  pass("done", {
    transport: transportName,
    http_version: transportName === "grpc" ? "2" : "1.1",
    gzip,
    response_encodings: [...responseEncodings].sort(),
    steps: 5,
  });
}

const overall = setTimeout(() => die(currentStep, `timed out: the whole run took over ${OVERALL_TIMEOUT_MS} ms`), OVERALL_TIMEOUT_MS);

main().then(
  () => {
    clearTimeout(overall);
    process.exit(0);
  },
  (e: unknown) => die(currentStep, e instanceof StepFailure ? e.message : describe(e)),
);
