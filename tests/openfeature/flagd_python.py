"""Switchyard through OpenFeature's Python SDK and its flagd provider, with no
Switchyard code: openfeature-sdk + openfeature-provider-flagd (pinned in
requirements.txt), in RPC mode (flagd.evaluation.v2 and its event stream) or in
in-process mode (flagd.sync.v1: the provider evaluates the flags itself).

Usage: flagd_python.py rpc|in-process HOST PORT BASE_URL ADMIN_TOKEN TENANT_TOKEN OTHER_TENANT_TOKEN

Tokens travel as gRPC call credentials: the provider's one way to send a
header is `channel_credentials`, and gRPC sends call credentials only over a
secure channel or a local one (loopback, as here).

The server holds (set up by tests/flagd.rs): flags `of-bool` (bool, default
false; tenant `a` overrides it to true), `of-string` ("blue"), `of-int` (3),
`of-float` (2.5) and `of-object` ({"a": 1}). Prints one line per check; exits 1
on the first failure. Halfway it prints RESTART and waits for a line on stdin:
meanwhile the test restarts the server on the same port and changes
`of-string` (stored: "purple") and tenant a's `of-int` (42).
"""
import json
import sys
import threading
import urllib.request

import grpc
from openfeature import api
from openfeature.contrib.provider.flagd import FlagdProvider
from openfeature.contrib.provider.flagd.config import ResolverType
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason

WAIT_S = 30


def credentials(token):
    return grpc.composite_channel_credentials(
        grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP),
        grpc.access_token_call_credentials(token),
    )


class Changes:
    """The configuration-changed events a client sees, by flag."""

    def __init__(self, client):
        self.cond = threading.Condition()
        self.seen = []
        client.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, self.on_change)

    def on_change(self, details):
        with self.cond:
            self.seen.append(list(details.flags_changed or []))
            self.cond.notify_all()

    def mark(self):
        with self.cond:
            return len(self.seen)

    def wait_for(self, flag, after):
        """Waits for an event after the `after`-th one that names `flag`."""
        with self.cond:
            ok = self.cond.wait_for(
                lambda: any(flag in names for names in self.seen[after:]), timeout=WAIT_S
            )
        return ok


def client(mode, host, port, token, name, selector=None):
    provider = FlagdProvider(
        host=host,
        port=int(port),
        resolver_type=ResolverType.RPC if mode == "rpc" else ResolverType.IN_PROCESS,
        channel_credentials=credentials(token),
        selector=selector,
        deadline_ms=5000,
    )
    c = api.get_client(domain=name)
    changes = Changes(c)
    api.set_provider_and_wait(provider, domain=name)
    # The first configuration (in-process) or the first event stream's
    # change of every flag (RPC) raises one event naming all flags: wait for
    # it, so that later waits see only later events.
    if not changes.wait_for("of-bool", 0):
        print(f"FAIL {name}: no first configuration-changed event", flush=True)
        sys.exit(1)
    return c, changes


def check(what, got, want):
    if got != want:
        print(f"FAIL {what}: got {got!r}, want {want!r}", flush=True)
        sys.exit(1)
    print(f"ok   {what}: {got!r}", flush=True)


def write(base, admin, method, path, body):
    req = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
        method=method,
    )
    urllib.request.urlopen(req, timeout=10).read()


def main():
    mode, host, port, base, admin, tenant, other = sys.argv[1:8]
    rpc = mode == "rpc"
    # Both modes give flagd's reasons: STATIC for a flag without targeting,
    # TARGETING_MATCH for the tenant's override (in-process, the view renders
    # it as a rule that picks the variant `tenant`).
    static = Reason.STATIC
    mine, changes = client(mode, host, port, tenant, "tenant")
    theirs, _ = client(mode, host, port, other, "other")

    d = mine.get_boolean_details("of-bool", False)
    check("bool, the tenant's override", (d.value, d.reason, d.variant),
          (True, Reason.TARGETING_MATCH, "tenant"))
    check("metadata: source", d.flag_metadata.get("source"), None if rpc else "tenant")
    d = theirs.get_boolean_details("of-bool", True)
    check("bool, another tenant: the declared default", (d.value, d.variant), (False, "default"))
    d = mine.get_string_details("of-string", "code-default")
    check("string", (d.value, d.reason), ("blue", static))
    d = mine.get_integer_details("of-int", 0)
    check("integer", (d.value, d.error_code), (3, None))
    d = mine.get_float_details("of-float", 0.0)
    check("float", (d.value, d.error_code), (2.5, None))
    # Another client: the provider caches a STATIC answer by key, and the
    # integer just read would fail a float's type check.
    d = theirs.get_float_details("of-int", 0.0)
    check("an integral number as a float", (d.value, d.error_code), (3.0, None))
    d = mine.get_object_details("of-object", {})
    check("object", (d.value, d.error_code), ({"a": 1}, None))
    d = mine.get_boolean_details("of-missing", True)
    check("unknown flag: the code default", (d.value, d.reason, d.error_code),
          (True, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND))
    d = mine.get_string_details("of-bool", "code-default")
    check("wrong type: the code default", (d.value, d.error_code),
          ("code-default", ErrorCode.TYPE_MISMATCH))
    d = mine.get_integer_details("of-float", 7)
    check("a fractional number as an integer: the code default", (d.value, d.error_code),
          (7, ErrorCode.TYPE_MISMATCH))

    if rpc:
        # An admin names the tenant per evaluation: answers that the context
        # chooses are never STATIC (the provider would cache them by key).
        admin_client, _ = client(mode, host, port, admin, "admin")
        ctx = EvaluationContext(targeting_key="user-1", attributes={"tenantId": "a"})
        d = admin_client.get_boolean_details("of-bool", False, ctx)
        check("admin, context tenantId=a", (d.value, d.reason), (True, Reason.TARGETING_MATCH))
        d = admin_client.get_boolean_details("of-bool", True)
        # Tenant a overrides of-bool: another context could name it.
        check("admin, no tenant", (d.value, d.reason), (False, Reason.TARGETING_MATCH))
    else:
        # An admin's provider selects the tenant's flag set.
        selected, _ = client(mode, host, port, admin, "selected", selector="flagSetId=a")
        d = selected.get_boolean_details("of-bool", False)
        check("admin, selector flagSetId=a", (d.value, d.variant), (True, "tenant"))

    # A write raises the configuration-changed event; the next evaluation
    # sees it.
    mark = changes.mark()
    write(base, admin, "PATCH", "/v1/flags/of-string?updateMask=storedValue",
          {"key": "of-string", "storedValue": "green"})
    check("configuration changed: of-string", changes.wait_for("of-string", mark), True)
    d = mine.get_string_details("of-string", "code-default")
    check("after a write", (d.value, d.reason, d.variant), ("green", static, "store"))
    # Cached in RPC mode (STATIC): read again, then changed again.
    mine.get_string_details("of-string", "code-default")

    # The server restarts; changes made while it was away are seen.
    mark = changes.mark()
    print("RESTART", flush=True)
    if sys.stdin.readline().strip() != "GO":
        print("FAIL the test did not say GO", flush=True)
        sys.exit(1)
    check("configuration changed after the restart", changes.wait_for("of-string", mark), True)
    d = mine.get_string_details("of-string", "code-default")
    check("a stored value changed while away", (d.value, d.variant), ("purple", "store"))
    d = mine.get_integer_details("of-int", 0)
    check("an override changed while away", (d.value, d.variant), (42, "tenant"))

    api.shutdown()
    print(f"flagd python {mode}: all checks passed", flush=True)


main()
