#!/usr/bin/env python3
"""flagd-testbed's launchpad (testbed launchpad/, Go), redone for Switchyard.

In the testbed container, launchpad runs flagd and the flagd provider's e2e
steps drive it over HTTP; this does the same with a Switchyard binary:

  POST /start?config=NAME  kill the server; start it on a fresh SQLite file and
                           load launchpad/configs/NAME.json's flag sources
                           (NAME empty: the last one). Answers once it serves.
  POST /restart?seconds=N  kill the server now (SIGKILL, as launchpad does);
                           start it again N s later on the same file.
  POST /change             toggle changing-flag's defaultVariant foo <-> bar and
                           load the flags again, as launchpad rewrites
                           rawflags/changing-flag.json and flagd reloads it.
  POST /stop               kill the server.

The steps post /start and /change with a 1 s timeout: both must answer in time.

Flags go in through POST /v1/flags:import (admin token, prune: the import is
the whole flag set, as flagd's reload of its file is). The provider sends no
credentials, so flagd calls act as tenant `testbed`
(SWITCHYARD_FLAGD_ANONYMOUS_TENANT), created at each start.

Also stood in here, because the testbed's compose file has them next to flagd:
  - envoy's "forbidden" listener (9212: every call HTTP 403, which gRPC reads
    as PERMISSION_DENIED): a gRPC server refusing every call so;
  - flagd's TLS (config `ssl`: flagd serves its ports with a certificate of the
    testbed's CA): Switchyard has no TLS, so a TLS terminator (ALPN h2) on the
    public port forwards to it on an internal one.
A config's `context-value` (flagd's static context) is Switchyard's
`context_values` (SWITCHYARD_CONTEXT_VALUES). Not stood in (Switchyard has no
equivalent; the scenarios show it): `disable-sync-metadata`, and selectors
that name flagd sources (`rawflags/selector-flags.json`).

Settings come from the environment (set by flagd_container.py): CONF_SWITCHYARD,
CONF_TESTBED, CONF_WORKDIR, CONF_PORT, CONF_INTERNAL_PORT, CONF_LAUNCHPAD_PORT,
CONF_FORBIDDEN_PORT, CONF_TLS_CERT, CONF_TLS_KEY, and CONF_TENANT_TOKEN (tenant
`testbed`'s bearer token, for OFREP providers).
"""
import asyncio
import json
import os
import secrets
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import grpc

TENANT = "testbed"
ENV = os.environ
BINARY = ENV["CONF_SWITCHYARD"]
TESTBED = Path(ENV["CONF_TESTBED"])
WORK = Path(ENV["CONF_WORKDIR"])
PORT = int(ENV.get("CONF_PORT", "18013"))
INTERNAL_PORT = int(ENV.get("CONF_INTERNAL_PORT", "18113"))
LAUNCHPAD_PORT = int(ENV.get("CONF_LAUNCHPAD_PORT", "18080"))
FORBIDDEN_PORT = int(ENV.get("CONF_FORBIDDEN_PORT", "19212"))
ADMIN = "conf-admin-" + secrets.token_hex(16)
TENANT_TOKEN = ENV.get("CONF_TENANT_TOKEN") or "conf-testbed-" + secrets.token_hex(16)


def log(msg):
    print(f"{time.strftime('%H:%M:%S')} launchpad: {msg}", file=sys.stderr, flush=True)


def call(port, method, path, body=None, timeout=2.0):
    """An admin REST call; returns (status, body text); raises OSError when
    nothing answers."""
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=None if body is None else json.dumps(body).encode(),
        headers={"authorization": f"Bearer {ADMIN}", "content-type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def deep_merge(dst, src):
    """launchpad's deepMerge (pkg/json.go): objects merge, anything else replaces."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            deep_merge(dst[k], v)
        else:
            dst[k] = v
    return dst


class Launchpad:
    def __init__(self):
        self.lock = threading.RLock()
        self.config = "default"
        self.changing_variant = "foo"  # launchpad keeps it in rawflags/ for its lifetime
        self.proc = None
        self.db = None
        self.starts = 0
        self.restart_timer = None
        self.refused = set()
        self.tls = TlsTerminator() if ENV.get("CONF_TLS_CERT") else None

    # -- the flag sources, as launchpad builds them -------------------------

    def raw(self, name):
        data = json.loads((TESTBED / "flags" / name).read_text())
        if name == "changing-flag.json":
            data["flags"]["changing-flag"]["defaultVariant"] = self.changing_variant
        return data

    def all_flags(self):
        """flags/allFlags.json: every rawflags/*.json but selector-*, merged
        in file-name order (CombineJSONFiles)."""
        merged = {}
        for f in sorted((TESTBED / "flags").glob("*.json")):
            if not f.name.startswith("selector-"):
                deep_merge(merged, self.raw(f.name))
        return merged

    def spec(self, name):
        return json.loads((TESTBED / "launchpad" / "configs" / f"{name}.json").read_text())

    def configuration(self, name):
        """One flagd flag-definition file for the config's sources. flagd gives a
        flag key found in two sources to the later one; flag-set `metadata`
        belongs to its own source, so it is kept only for a lone source."""
        sources = []
        for s in self.spec(name)["sources"]:
            uri = s["uri"]
            sources.append(self.all_flags() if uri == "flags/allFlags.json"
                           else self.raw(uri.removeprefix("rawflags/")))
        out = {"flags": {}}
        for src in sources:
            out["flags"].update(src.get("flags", {}))
            if "$evaluators" in src:
                out.setdefault("$evaluators", {}).update(src["$evaluators"])
        if len(sources) == 1 and "metadata" in sources[0]:
            out["metadata"] = sources[0]["metadata"]
        return out

    def tls_on(self):
        return self.tls is not None and "server-cert-path" in self.spec(self.config)

    # -- the server process --------------------------------------------------

    def server_port(self):
        return INTERNAL_PORT if self.tls_on() else PORT

    def kill(self):
        if self.tls:
            self.tls.stop()
        if self.proc is not None:
            self.proc.kill()  # SIGKILL, as launchpad's Process.Kill: a lost connection
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                log("server did not die in 5 s")
            self.proc = None
            (WORK / "server.pid").unlink(missing_ok=True)

    def spawn(self):
        env = {k: v for k, v in ENV.items() if not k.startswith("SWITCHYARD_")}
        env.update(
            SWITCHYARD_LISTEN=f"127.0.0.1:{self.server_port()}",
            SWITCHYARD_DATABASE_URL=f"sqlite://{self.db}",
            SWITCHYARD_ADMIN_TOKEN=ADMIN,
            # For OFREP providers, which send a header: tenant testbed's token.
            SWITCHYARD_TOKENS=f"tenant:{TENANT}={TENANT_TOKEN}",
            SWITCHYARD_FLAGD_ANONYMOUS_TENANT=TENANT,
            SWITCHYARD_LOG=ENV.get("CONF_SERVER_LOG", "warn"),
            SWITCHYARD_CONTEXT_VALUES=json.dumps(self.spec(self.config).get("context-value", {})),
            OTEL_SDK_DISABLED="true",
        )
        out = open(WORK / "switchyard.log", "ab")
        self.proc = subprocess.Popen([BINARY, "serve"], env=env, cwd=WORK,
                                     stdout=out, stderr=out, stdin=subprocess.DEVNULL)
        out.close()
        # For run.sh to end it should this process be killed first.
        (WORK / "server.pid").write_text(str(self.proc.pid))
        # Ready once REST answers (launchpad polls flagd's /readyz, 10 s at most).
        deadline = time.monotonic() + 10
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"switchyard exited {self.proc.returncode}: see switchyard.log")
            try:
                call(self.server_port(), "GET", f"/v1/tenants/{TENANT}", timeout=0.5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("switchyard not answering after 10 s")
                time.sleep(0.02)
        if self.tls_on():
            self.tls.start(PORT, self.server_port())

    def load(self):
        """Imports the current config's flags (all of them: prune).

        flagd loads a file holding a flag it cannot evaluate and answers that
        flag with an error; the import refuses the whole file instead. So that
        one such flag does not fail every scenario, a flag the import names
        (INVALID_ARGUMENT "configuration/flags/<key>/...") is logged as DROPPED
        and the rest imported again; its own scenarios then fail.
        CONF_STRICT_IMPORT=1 turns this off."""
        configuration = self.configuration(self.config)
        dropped = [k for k in self.refused if configuration["flags"].pop(k, None) is not None]
        while True:
            # As text: a file's 0.0 stays a float variant (a Struct would not).
            # allowSchemaViolations: the testbed holds rules that break flagd's
            # own targeting schema (sem_ver "2.0.0.0", ends_with on a number),
            # which flagd loads with a warning and evaluates.
            status, body = call(self.server_port(), "POST", "/v1/flags:import",
                                {"configurationText": json.dumps(configuration), "prune": True,
                                 "allowSchemaViolations": True},
                                timeout=5)
            if status == 200:
                return f" (DROPPED {', '.join(dropped)})" if dropped else ""
            try:
                message = json.loads(body)["message"]
                key = message.split("/")[2] if message.startswith("configuration/flags/") else None
            except (ValueError, KeyError, IndexError):
                key = None
            if ENV.get("CONF_STRICT_IMPORT") == "1" or key not in configuration["flags"]:
                raise RuntimeError(f"import: HTTP {status}: {body[:500]}")
            log(f"DROPPED flag {key}: the import refused it: {message}")
            del configuration["flags"][key]
            dropped.append(key)
            self.refused.add(key)  # left out of later imports up front (each import costs)

    def cancel_restart(self):
        if self.restart_timer is not None:
            self.restart_timer.cancel()
            self.restart_timer = None

    # -- the endpoints -------------------------------------------------------

    def start(self, config):
        with self.lock:
            t0 = time.monotonic()
            self.config = config or self.config
            self.cancel_restart()
            self.kill()
            self.starts += 1
            for old in WORK.glob("switchyard-*.db*"):
                old.unlink()
            self.db = WORK / f"switchyard-{self.starts}.db"
            self.spawn()
            status, body = call(self.server_port(), "POST", "/v1/tenants", {"id": TENANT})
            if status != 200:
                raise RuntimeError(f"create tenant: HTTP {status}: {body[:500]}")
            dropped = self.load()
            return f"started config {self.config} in {time.monotonic() - t0:.2f} s{dropped}"

    def restart(self, seconds):
        with self.lock:
            self.cancel_restart()
            self.kill()

            def later():
                with self.lock:
                    if self.restart_timer is not timer:
                        return  # cancelled meanwhile
                    self.restart_timer = None
                    try:
                        self.spawn()
                        log("restarted")
                    except Exception as e:  # noqa: BLE001 - logged, like launchpad
                        log(f"restart failed: {e}")

            timer = self.restart_timer = threading.Timer(seconds, later)
            timer.daemon = True
            timer.start()
            return f"restart in {seconds} s"

    def change(self):
        with self.lock:
            self.changing_variant = "bar" if self.changing_variant == "foo" else "foo"
            uses_all = any(s["uri"] == "flags/allFlags.json"
                           for s in self.spec(self.config)["sources"])
            dropped = self.load() if self.proc is not None and uses_all else ""
            return f"changing-flag defaultVariant is now {self.changing_variant}{dropped}"

    def stop(self):
        with self.lock:
            self.cancel_restart()
            self.kill()
            return "stopped"


class TlsTerminator:
    """TLS (ALPN h2) on the public port, plain TCP to the server: flagd's TLS
    mode for the `ssl` config, with the run's certificate (signed by the CA the
    provider is given as cert_path)."""

    def __init__(self):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(ENV["CONF_TLS_CERT"], ENV["CONF_TLS_KEY"])
        self.ctx.set_alpn_protocols(["h2"])
        self.loop = asyncio.new_event_loop()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.server = None
        self.conns = set()

    def run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def start(self, port, backend):
        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (OSError, ssl.SSLError):
                pass
            finally:
                writer.close()

        async def handle(client_r, client_w):
            self.conns.add(client_w)
            try:
                server_r, server_w = await asyncio.open_connection("127.0.0.1", backend)
            except OSError:
                client_w.close()
                return
            self.conns.add(server_w)
            await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

        async def up():
            self.server = await asyncio.start_server(handle, "127.0.0.1", port, ssl=self.ctx)

        self.run(up())

    def stop(self):
        async def down():
            if self.server is not None:
                self.server.close()
                for w in list(self.conns):
                    w.transport.abort()
                self.conns.clear()
                await self.server.wait_closed()
                self.server = None

        self.run(down())


def forbidden_server():
    """envoy's permission-denied listener: every call refused PERMISSION_DENIED."""

    def deny(_request, context):
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "PERMISSION_DENIED")

    class Deny(grpc.GenericRpcHandler):
        def service(self, _details):
            return grpc.unary_unary_rpc_method_handler(deny)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[Deny()])
    server.add_insecure_port(f"127.0.0.1:{FORBIDDEN_PORT}")
    server.start()
    return server


def main():
    pad = Launchpad()
    forbidden = forbidden_server()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            url = urlparse(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            try:
                if url.path == "/start":
                    msg = pad.start(q.get("config", ""))
                elif url.path == "/restart":
                    msg = pad.restart(int(q.get("seconds", "5")))
                elif url.path == "/change":
                    msg = pad.change()
                elif url.path == "/stop":
                    msg = pad.stop()
                else:
                    return self.answer(404, "error", f"no {url.path}")
                self.answer(200, "success", msg)
            except Exception as e:  # noqa: BLE001 - the caller gets it, as launchpad's 500
                self.answer(500, "error", str(e))

        do_GET = do_POST

        def answer(self, code, status, message):
            log(f"{self.path} -> {code} {message}")
            body = json.dumps({"status": status, "message": message}).encode()
            self.send_response(code)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args):
            pass

    http = ThreadingHTTPServer(("127.0.0.1", LAUNCHPAD_PORT), Handler)

    def shutdown(*_args):
        pad.stop()
        forbidden.stop(0)
        threading.Thread(target=http.shutdown).start()

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    # launchpad starts flagd with the default config before it serves.
    try:
        log(pad.start("default"))
    except Exception as e:  # noqa: BLE001 - scenarios that need no server still run
        log(f"initial start failed: {e}")
    log(f"serving on 127.0.0.1:{LAUNCHPAD_PORT}")
    http.serve_forever()


if __name__ == "__main__":
    main()
