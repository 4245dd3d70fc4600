#!/usr/bin/env python3
"""Generates a Python client from a running Switchyard's /openapi.json with
openapi-python-client and calls the REST API through it, with its typed
functions and models.

    pip install -r tests/openapi/requirements.txt
    python3 tests/openapi/python_client.py [ADDR [ADMIN_TOKEN]]

ADDR (host:port) and the admin token default to $SWITCHYARD_ADDR and
$SWITCHYARD_ADMIN. Steps: generate, create a tenant, create a flag, list flags
(/v1/flags and /admin/feature-flags), evaluate the flag for the tenant, read
the first line of the NDJSON watch, get a missing flag (404), clean up. One
line per step; exit status 1 on the first failure, 2 on bad usage.

`--fail-on-warning` makes any warning of openapi-python-client a failure;
`--keep DIR` generates into DIR (kept) instead of a temporary directory;
`--doc FILE` generates from FILE instead of the server's /openapi.json (to
try a changed document against today's server).

The generated names (modules, classes) are all in NAMES and MODELS below: when
the document's operationIds or schema names change, change them there.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
import tempfile
import typing
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE = "switchyard_client"

# Step -> the generated endpoint module under `<PACKAGE>.api`: the tag (the
# service) and the operationId (the RPC; an additional binding adds its first
# path segment: ListFlagsAdmin for GET /admin/feature-flags).
NAMES = {
    "create_tenant": "tenant_service.create_tenant",
    "delete_tenant": "tenant_service.delete_tenant",
    "create_flag": "flag_service.create_flag",
    "delete_flag": "flag_service.delete_flag",
    "get_flag": "flag_service.get_flag",
    "list_flags": "flag_service.list_flags",
    "list_flags_admin": "flag_service.list_flags_admin",
    "evaluate_flag": "flag_service.evaluate_flag",
    "watch_flags": "flag_service.watch_flags",
}

# Role -> the generated model class in `<PACKAGE>.models`: the component
# names are the messages' and enums' short names.
MODELS = {
    "Tenant": "Tenant",
    "CreateTenantResponse": "CreateTenantResponse",
    "Flag": "Flag",
    "FlagType": "FlagType",
    "CreateFlagResponse": "CreateFlagResponse",
    "GetFlagResponse": "GetFlagResponse",
    "ListFlagsResponse": "ListFlagsResponse",
    "EffectiveFlag": "EffectiveFlag",
    # The FlagView query parameter: one shared enum.
    "FlagView": "FlagView",
    "FlagViewAdmin": "FlagView",
    "EvaluateFlagResponse": "EvaluateFlagResponse",
    "WatchFlagsResponse": "WatchFlagsResponse",
    # One NDJSON line of the watch (`{"result": ...}` or `{"error": ...}`).
    "WatchLine": "WatchFlagsStreamLine",
    "FlagEventType": "FlagEventType",
    "Status": "Status",
}

# The config file passed to openapi-python-client.
CONFIG = {
    "project_name_override": "switchyard-client",
    "package_name_override": PACKAGE,
}


class StepFailed(Exception):
    pass


def step(name: str, detail: str) -> None:
    print(f"ok   {name}: {detail}", flush=True)


def check(cond: bool, what: str) -> None:
    if not cond:
        raise StepFailed(what)


def generate(source: str, out: Path, fail_on_warning: bool) -> list[str]:
    """Runs openapi-python-client into `out/<PACKAGE>`; returns its warnings."""
    config = out / "openapi-python-client.json"
    config.write_text(json.dumps(CONFIG))
    # The generator's post hooks run `ruff` from PATH: the one pip installed
    # beside this interpreter.
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    cmd = [
        sys.executable, "-m", "openapi_python_client", "generate",
        *(["--url", source] if source.startswith("http://") else ["--path", source]),
        "--meta", "none",
        "--config", str(config),
        "--output-path", str(out / PACKAGE),
        "--overwrite",
    ]
    if fail_on_warning:
        cmd.append("--fail-on-warning")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    (out / "generate.log").write_text(output)
    if proc.returncode != 0:
        sys.stderr.write(output)
        raise StepFailed(f"openapi-python-client exited {proc.returncode}")
    check((out / PACKAGE / "__init__.py").is_file(), f"no package at {out / PACKAGE}")
    # One entry per warning: its headline and detail (the generator prints
    # each as a `WARNING ...` line, a blank line and the detail).
    warnings = []
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("WARNING"):
            detail = next((l for l in lines[i + 1:] if l.strip()), "")
            warnings.append(f"{line.strip()} {detail.strip()}")
    for line in lines:
        if "is not in PATH" in line:
            warnings.append(line.strip())
    return warnings


def api(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.api.{NAMES[name]}")


def model(role: str) -> Any:
    name = MODELS[role]
    if not name:
        raise StepFailed(f"no generated class for {role}")
    return getattr(importlib.import_module(f"{PACKAGE}.models"), name)


def returns(name: str) -> str:
    """The declared return type of the endpoint's `sync`, as written."""
    hints = typing.get_type_hints(api(name).sync)
    return re.sub(r"[\w.]+\.(\w+)", r"\1", str(hints.get("return")))


def run(addr: str, token: str, workdir: Path, fail_on_warning: bool, doc: str | None) -> None:
    source = str(Path(doc).resolve()) if doc else f"http://{addr}/openapi.json"
    warnings = generate(source, workdir, fail_on_warning)
    step(
        "generate",
        f"{PACKAGE} from {source} into {workdir} "
        f"({len(warnings)} warning(s))",
    )
    for w in warnings:
        print(f"     warning: {w}", flush=True)
    sys.path.insert(0, str(workdir))
    client_mod = importlib.import_module(PACKAGE)
    client = client_mod.AuthenticatedClient(base_url=f"http://{addr}", token=token)

    Tenant = model("Tenant")
    Flag = model("Flag")
    FlagType = model("FlagType")
    Status = model("Status")
    suffix = uuid.uuid4().hex[:8]
    tenant_id = f"oapy-{suffix}"
    flag_key = f"oapy.flag-{suffix}"
    created_tenant = created_flag = False
    try:
        # Create a tenant.
        r = api("create_tenant").sync_detailed(
            client=client,
            body=Tenant(id=tenant_id, display_name="OpenAPI Python", patterns=[f"{tenant_id}.example"]),
        )
        check(r.status_code == 200, f"create tenant: HTTP {r.status_code} {r.content!r}")
        check(isinstance(r.parsed, model("CreateTenantResponse")), f"create tenant: parsed {type(r.parsed)}")
        t = r.parsed.tenant
        check(isinstance(t, Tenant) and t.id == tenant_id, f"create tenant: tenant {t!r}")
        check(t.patterns == [f"{tenant_id}.example"], f"create tenant: patterns {t.patterns!r}")
        created_tenant = True
        step("create tenant", f"{t.id} revision {t.revision} ({NAMES['create_tenant']})")

        # Create a string flag with a stored value.
        r = api("create_flag").sync_detailed(
            client=client,
            body=Flag(
                key=flag_key,
                type_=FlagType.FLAG_TYPE_STRING,
                description="made by tests/openapi/python_client.py",
                default_value="blue",
                stored_value="green",
            ),
        )
        check(r.status_code == 200, f"create flag: HTTP {r.status_code} {r.content!r}")
        check(isinstance(r.parsed, model("CreateFlagResponse")), f"create flag: parsed {type(r.parsed)}")
        f = r.parsed.flag
        check(isinstance(f, Flag) and f.key == flag_key, f"create flag: flag {f!r}")
        check(f.type_ == FlagType.FLAG_TYPE_STRING, f"create flag: type {f.type_!r}")
        check((f.default_value, f.stored_value) == ("blue", "green"), f"create flag: values {f!r}")
        created_flag = True
        step("create flag", f"{f.key} type {f.type_} revision {f.revision} ({NAMES['create_flag']})")

        # List flags (GET /v1/flags), page by page, for the tenant.
        found = None
        page_token: Any = model_unset(client_mod)
        pages = 0
        while True:
            r = api("list_flags").sync_detailed(
                client=client, tenant=tenant_id, page_size=1000, page_token=page_token,
                view=model("FlagView").FLAG_VIEW_FULL,
            )
            check(r.status_code == 200, f"list flags: HTTP {r.status_code} {r.content!r}")
            page = r.parsed
            check(isinstance(page, model("ListFlagsResponse")), f"list flags: parsed {type(page)}")
            pages += 1
            for i, e in enumerate(page.flags or []):
                check(isinstance(e, model("EffectiveFlag")), f"list flags: element {e!r}")
                if e.flag == flag_key:
                    found = (e, page.definitions[i] if page.definitions else None)
            if found or not page.next_page_token:
                break
            page_token = page.next_page_token
        check(found is not None, f"list flags: {flag_key} not listed")
        e, d = found
        check((e.value, e.source) == ("green", "store"), f"list flags: {e!r}")
        check(isinstance(d, Flag) and d.key == flag_key, f"list flags: FULL view definition {d!r}")
        check(r.headers.get("etag") == page.etag, f"list flags: ETag {r.headers.get('etag')!r} vs {page.etag!r}")
        step("list flags", f"/v1/flags: {flag_key}={e.value!r} source {e.source}, {pages} page(s), "
             f"revision {page.revision} ({NAMES['list_flags']})")

        # The admin listing: the bare array.
        r = api("list_flags_admin").sync_detailed(client=client, tenant=tenant_id)
        check(r.status_code == 200, f"admin list: HTTP {r.status_code} {r.content!r}")
        check(isinstance(r.parsed, list), f"admin list: parsed {type(r.parsed)}")
        check("x-next-page-token" not in r.headers, "admin list: more than one page without page_size")
        mine = [x for x in r.parsed if isinstance(x, model("EffectiveFlag")) and x.flag == flag_key]
        check(len(mine) == 1 and (mine[0].value, mine[0].source) == ("green", "store"),
              f"admin list: {mine!r}")
        step("list flags (admin)", f"/admin/feature-flags: {len(r.parsed)} flag(s), {flag_key}="
             f"{mine[0].value!r} ({NAMES['list_flags_admin']})")

        # Evaluate the flag for the tenant.
        r = api("evaluate_flag").sync_detailed(flag_key, client=client, tenant_id=tenant_id)
        check(r.status_code == 200, f"evaluate: HTTP {r.status_code} {r.content!r}")
        ev = r.parsed
        check(isinstance(ev, model("EvaluateFlagResponse")), f"evaluate: parsed {type(ev)}")
        check((ev.flag, ev.value, ev.source, ev.tenant_id) == (flag_key, "green", "store", tenant_id),
              f"evaluate: {ev!r}")
        step("evaluate flag", f"{ev.flag} for {ev.tenant_id} = {ev.value!r} source {ev.source} "
             f"revision {ev.revision} ({NAMES['evaluate_flag']})")

        # The watch: the generated function cannot read a stream (it reads the
        # whole body, which never ends), so read one line with the client's
        # httpx client and parse it with the generated model.
        declared = returns("watch_flags")
        WatchFlagsResponse = model("WatchFlagsResponse")
        with client.get_httpx_client().stream(
            "GET", "/v1/flags:watch", params={"tenantId": tenant_id}, timeout=10
        ) as resp:
            check(resp.status_code == 200, f"watch: HTTP {resp.status_code}")
            ctype = resp.headers.get("content-type", "")
            line = next(resp.iter_lines())
        check(ctype.startswith("application/x-ndjson"), f"watch: content-type {ctype!r}")
        body = json.loads(line)
        check("result" in body, f"watch: first line {line[:200]!r}")
        if MODELS["WatchLine"]:
            event = model("WatchLine").from_dict(body).result
            check(isinstance(event, WatchFlagsResponse), f"watch: result {event!r}")
        else:
            event = WatchFlagsResponse.from_dict(body["result"])
        check(event.type_ == model("FlagEventType").FLAG_EVENT_TYPE_SNAPSHOT, f"watch: first event {event.type_!r}")
        check(any(x.flag == flag_key and x.value == "green" for x in event.flags or []),
              f"watch: snapshot lacks {flag_key}")
        step("watch flags", f"first NDJSON line is a {event.type_} at revision {event.revision} "
             f"with {len(event.flags or [])} flag(s), read by hand; the generated "
             f"{NAMES['watch_flags']}.sync is declared to return {declared}")

        # A missing flag: 404 with a google.rpc.Status.
        missing = f"oapy.missing-{suffix}"
        r = api("get_flag").sync_detailed(missing, client=client)
        check(r.status_code == 404, f"get missing flag: HTTP {r.status_code} {r.content!r}")
        check(isinstance(r.parsed, Status), f"get missing flag: parsed {type(r.parsed)}")
        check(r.parsed.code == 5 and missing in r.parsed.message, f"get missing flag: {r.parsed!r}")
        step("get missing flag", f"HTTP 404, Status code {r.parsed.code} NOT_FOUND: {r.parsed.message} "
             f"({NAMES['get_flag']})")
    finally:
        cleanup(client, created_flag and flag_key, created_tenant and tenant_id)


def model_unset(client_mod: ModuleType) -> Any:
    return importlib.import_module(f"{client_mod.__name__}.types").UNSET


def cleanup(client: Any, flag_key: str | bool, tenant_id: str | bool) -> None:
    done = []
    if flag_key:
        r = api("delete_flag").sync_detailed(str(flag_key), client=client)
        check(r.status_code == 200, f"delete flag: HTTP {r.status_code} {r.content!r}")
        done.append(f"flag {flag_key}")
    if tenant_id:
        r = api("delete_tenant").sync_detailed(str(tenant_id), client=client)
        check(r.status_code == 200, f"delete tenant: HTTP {r.status_code} {r.content!r}")
        done.append(f"tenant {tenant_id}")
    if done:
        step("clean up", "deleted " + " and ".join(done))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("addr", nargs="?", default=os.environ.get("SWITCHYARD_ADDR"),
                   help="host:port of the server (default $SWITCHYARD_ADDR)")
    p.add_argument("token", nargs="?", default=os.environ.get("SWITCHYARD_ADMIN"),
                   help="an admin token (default $SWITCHYARD_ADMIN)")
    p.add_argument("--fail-on-warning", action="store_true",
                   help="fail when openapi-python-client warns")
    p.add_argument("--keep", metavar="DIR", help="generate into DIR and keep it")
    p.add_argument("--doc", metavar="FILE", help="generate from FILE, not the server's document")
    args = p.parse_args()
    if not args.addr or not args.token:
        p.print_usage(sys.stderr)
        print("need the server address and an admin token (argv or SWITCHYARD_ADDR / SWITCHYARD_ADMIN)",
              file=sys.stderr)
        return 2
    addr = re.sub(r"^https?://", "", args.addr).rstrip("/")
    try:
        if args.keep:
            workdir = Path(args.keep).resolve()
            workdir.mkdir(parents=True, exist_ok=True)
            run(addr, args.token, workdir, args.fail_on_warning, args.doc)
        else:
            with tempfile.TemporaryDirectory(prefix="switchyard-openapi-py-") as d:
                run(addr, args.token, Path(d), args.fail_on_warning, args.doc)
    except StepFailed as e:
        print(f"FAIL {e}", flush=True)
        return 1
    except Exception as e:  # an exception of the generated code or httpx
        print(f"FAIL {type(e).__name__}: {e}", flush=True)
        return 1
    print("python client: all steps passed", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
