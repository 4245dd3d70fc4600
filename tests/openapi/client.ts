// Calls a running Switchyard's REST API through openapi-fetch, typed by the
// `paths` that openapi-typescript generated from its /openapi.json into
// gen/schema.d.ts (see ts_client.sh). Same steps as python_client.py: create
// a tenant, create a flag, list flags (/v1/flags and /admin/feature-flags),
// evaluate the flag for the tenant, read the first line of the NDJSON watch,
// get a missing flag (404), clean up. One line per step; exit status 1 on the
// first failure, 2 on bad usage.
//
//   SWITCHYARD_ADDR=host:port SWITCHYARD_ADMIN=token node dist/client.js
//   node dist/client.js host:port token
//
// The generated names (paths, schema names, operationIds) are all in PATHS
// and the type aliases below: when the document changes them, change them
// there.

import createClient from "openapi-fetch";
import type { components, operations, paths } from "./gen/schema.js";

// Step -> the path openapi-fetch is called with.
const PATHS = {
  tenants: "/v1/tenants",
  tenant: "/v1/tenants/{tenant_id}",
  flags: "/v1/flags",
  flag: "/v1/flags/{flag_key}",
  flagsAdmin: "/admin/feature-flags",
  evaluate: "/v1/flags/{flag_key}:evaluate",
  watch: "/v1/flags:watch",
} as const satisfies Record<string, keyof paths>;

// Role -> the generated type: schema names are the messages' short names,
// operationIds the RPCs' (an additional binding adds its first path
// segment: ListFlagsAdmin).
type Schemas = components["schemas"];
type Tenant = Schemas["Tenant"];
type Flag = Schemas["Flag"];
type EffectiveFlag = Schemas["EffectiveFlag"];
type Status = Schemas["Status"];
type WatchEvent = Schemas["WatchFlagsResponse"];
type ListFlagsAdminOk =
  operations["ListFlagsAdmin"]["responses"][200]["content"]["application/json"];
// One line of the NDJSON watch: `{"result": ...}` or `{"error": ...}`.
type WatchLine = Schemas["WatchFlagsStreamLine"];

class StepFailed extends Error {}

function check(cond: unknown, what: string): asserts cond {
  if (!cond) throw new StepFailed(what);
}

function step(name: string, detail: string): void {
  console.log(`ok   ${name}: ${detail}`);
}

function usage(): never {
  console.error(
    "usage: node dist/client.js [ADDR [ADMIN_TOKEN]] (or SWITCHYARD_ADDR / SWITCHYARD_ADMIN)",
  );
  process.exit(2);
}

const addr = (process.argv[2] ?? process.env.SWITCHYARD_ADDR ?? "")
  .replace(/^https?:\/\//, "")
  .replace(/\/+$/, "");
const token = process.argv[3] ?? process.env.SWITCHYARD_ADMIN ?? "";
if (!addr || !token) usage();

const client = createClient<paths>({
  baseUrl: `http://${addr}`,
  headers: { Authorization: `Bearer ${token}` },
});

const suffix = Math.random().toString(16).slice(2, 10).padEnd(8, "0");
const tenantId = `oats-${suffix}`;
const flagKey = `oats.flag-${suffix}`;
let createdTenant = false;
let createdFlag = false;

async function run(): Promise<void> {
  // Create a tenant.
  {
    const body: Tenant = {
      id: tenantId,
      displayName: "OpenAPI TypeScript",
      patterns: [`${tenantId}.example`],
    };
    const { data, error, response } = await client.POST(PATHS.tenants, { body });
    check(data, `create tenant: HTTP ${response.status} ${JSON.stringify(error)}`);
    const t: Tenant | null | undefined = data.tenant;
    check(t && t.id === tenantId, `create tenant: ${JSON.stringify(data)}`);
    check(
      JSON.stringify(t.patterns) === JSON.stringify([`${tenantId}.example`]),
      `create tenant: patterns ${JSON.stringify(t.patterns)}`,
    );
    createdTenant = true;
    step("create tenant", `${t.id} revision ${t.revision} (POST ${PATHS.tenants})`);
  }

  // Create a string flag with a stored value.
  {
    const body: Flag = {
      key: flagKey,
      type: "FLAG_TYPE_STRING",
      description: "made by tests/openapi/client.ts",
      defaultValue: "blue",
      storedValue: "green",
    };
    const { data, error, response } = await client.POST(PATHS.flags, { body });
    check(data, `create flag: HTTP ${response.status} ${JSON.stringify(error)}`);
    const f = data.flag;
    check(f && f.key === flagKey, `create flag: ${JSON.stringify(data)}`);
    check(f.type === "FLAG_TYPE_STRING", `create flag: type ${String(f.type)}`);
    check(
      f.defaultValue === "blue" && f.storedValue === "green",
      `create flag: values ${JSON.stringify(f)}`,
    );
    createdFlag = true;
    step("create flag", `${f.key} type ${String(f.type)} revision ${f.revision} (POST ${PATHS.flags})`);
  }

  // List flags (GET /v1/flags), page by page, for the tenant.
  {
    let pageToken: string | undefined;
    let found: { e: EffectiveFlag; d: Flag | undefined } | undefined;
    let pages = 0;
    let revision: string | null | undefined;
    for (;;) {
      const { data, error, response } = await client.GET(PATHS.flags, {
        params: { query: { tenant: tenantId, pageSize: 1000, pageToken, view: "FLAG_VIEW_FULL" } },
      });
      check(data, `list flags: HTTP ${response.status} ${JSON.stringify(error)}`);
      pages++;
      revision = data.revision;
      const flags = data.flags ?? [];
      const i = flags.findIndex((e) => e.flag === flagKey);
      const e = flags[i];
      if (e) found = { e, d: data.definitions?.[i] };
      check(response.headers.get("etag") === data.etag, `list flags: ETag vs ${data.etag}`);
      if (found || !data.nextPageToken) break;
      pageToken = data.nextPageToken;
    }
    check(found, `list flags: ${flagKey} not listed`);
    check(
      found.e.value === "green" && found.e.source === "store",
      `list flags: ${JSON.stringify(found.e)}`,
    );
    check(found.d?.key === flagKey, `list flags: FULL view definition ${JSON.stringify(found.d)}`);
    step(
      "list flags",
      `${PATHS.flags}: ${flagKey}=${JSON.stringify(found.e.value)} source ${found.e.source}, ` +
        `${pages} page(s), revision ${revision}`,
    );
  }

  // The admin listing: the bare array.
  {
    const { data, error, response } = await client.GET(PATHS.flagsAdmin, {
      params: { query: { tenant: tenantId } },
    });
    check(data, `admin list: HTTP ${response.status} ${JSON.stringify(error)}`);
    const all: ListFlagsAdminOk = data;
    check(Array.isArray(all), `admin list: ${JSON.stringify(all)}`);
    check(!response.headers.has("x-next-page-token"), "admin list: more than one page without pageSize");
    const mine = all.filter((e) => e.flag === flagKey);
    check(
      mine.length === 1 && mine[0]?.value === "green" && mine[0]?.source === "store",
      `admin list: ${JSON.stringify(mine)}`,
    );
    step("list flags (admin)", `${PATHS.flagsAdmin}: ${all.length} flag(s), ${flagKey}="green"`);
  }

  // Evaluate the flag for the tenant.
  {
    const { data, error, response } = await client.GET(PATHS.evaluate, {
      params: { path: { flag_key: flagKey }, query: { tenantId } },
    });
    check(data, `evaluate: HTTP ${response.status} ${JSON.stringify(error)}`);
    check(
      data.flag === flagKey && data.value === "green" && data.source === "store" &&
        data.tenantId === tenantId,
      `evaluate: ${JSON.stringify(data)}`,
    );
    step(
      "evaluate flag",
      `${data.flag} for ${data.tenantId} = ${JSON.stringify(data.value)} source ${data.source} ` +
        `revision ${data.revision}`,
    );
  }

  // The watch: read its first NDJSON line from the body stream.
  {
    const abort = new AbortController();
    const { data: body, error, response } = await client.GET(PATHS.watch, {
      params: { query: { tenantId } },
      parseAs: "stream",
      signal: abort.signal,
    });
    check(body, `watch: HTTP ${response.status} ${JSON.stringify(error)}`);
    const ctype = response.headers.get("content-type") ?? "";
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffered = "";
    try {
      while (!buffered.includes("\n")) {
        const { value, done } = await reader.read();
        check(!done, "watch: the stream ended before its first line");
        buffered += decoder.decode(value, { stream: true });
      }
    } finally {
      abort.abort();
    }
    check(ctype.startsWith("application/x-ndjson"), `watch: content-type ${ctype}`);
    const line = JSON.parse(buffered.slice(0, buffered.indexOf("\n"))) as WatchLine;
    const event: WatchEvent | undefined = line.result;
    check(event, `watch: first line ${buffered.slice(0, 200)}`);
    check(event.type === "FLAG_EVENT_TYPE_SNAPSHOT", `watch: first event ${String(event.type)}`);
    check(
      (event.flags ?? []).some((e) => e.flag === flagKey && e.value === "green"),
      `watch: snapshot lacks ${flagKey}`,
    );
    step(
      "watch flags",
      `first NDJSON line is a ${String(event.type)} at revision ${event.revision} with ` +
        `${event.flags?.length ?? 0} flag(s)`,
    );
  }

  // A missing flag: 404 with a google.rpc.Status.
  {
    const missing = `oats.missing-${suffix}`;
    const { data, error, response } = await client.GET(PATHS.flag, {
      params: { path: { flag_key: missing } },
    });
    check(!data && response.status === 404, `get missing flag: HTTP ${response.status}`);
    const status: Status = error;
    check(
      status.code === 5 && status.message.includes(missing),
      `get missing flag: ${JSON.stringify(status)}`,
    );
    step("get missing flag", `HTTP 404, Status code ${status.code} NOT_FOUND: ${status.message}`);
  }
}

async function cleanup(): Promise<void> {
  const done: string[] = [];
  if (createdFlag) {
    const { response } = await client.DELETE(PATHS.flag, { params: { path: { flag_key: flagKey } } });
    check(response.status === 200, `delete flag: HTTP ${response.status}`);
    done.push(`flag ${flagKey}`);
  }
  if (createdTenant) {
    const { response } = await client.DELETE(PATHS.tenant, {
      params: { path: { tenant_id: tenantId } },
    });
    check(response.status === 200, `delete tenant: HTTP ${response.status}`);
    done.push(`tenant ${tenantId}`);
  }
  if (done.length) step("clean up", `deleted ${done.join(" and ")}`);
}

try {
  try {
    await run();
  } finally {
    await cleanup();
  }
  console.log("typescript client: all steps passed");
} catch (e) {
  console.log(`FAIL ${e instanceof StepFailed ? e.message : String(e)}`);
  process.exitCode = 1;
}
