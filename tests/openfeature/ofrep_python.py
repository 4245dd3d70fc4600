"""Switchyard through OpenFeature's Python SDK and its OFREP provider, with no
Switchyard code: openfeature-sdk + openfeature-provider-ofrep (pinned in
requirements.txt).

Usage: ofrep_python.py BASE_URL ADMIN_TOKEN TENANT_TOKEN OTHER_TENANT_TOKEN

The server holds (set up by tests/openfeature.rs): flags `of-bool` (bool,
default false; the tenant overrides it to true), `of-string` ("blue"),
`of-int` (3), `of-float` (2.5) and `of-object` ({"a": 1}). Prints one line per
check; exits 1 on the first failure.
"""
import json
import sys
import urllib.request

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason


def client(base, token, name):
    api.set_provider(
        OFREPProvider(base, headers_factory=lambda: {"Authorization": f"Bearer {token}"}),
        domain=name,
    )
    return api.get_client(domain=name)


def check(what, got, want):
    if got != want:
        print(f"FAIL {what}: got {got!r}, want {want!r}", flush=True)
        sys.exit(1)
    print(f"ok   {what}: {got!r}", flush=True)


def main():
    base, admin, tenant, other = sys.argv[1:5]
    mine = client(base, tenant, "tenant")
    theirs = client(base, other, "other")

    d = mine.get_boolean_details("of-bool", False)
    check("bool, the tenant's override", (d.value, d.reason, d.variant), (True, Reason.TARGETING_MATCH, "tenant"))
    check("metadata: source", d.flag_metadata.get("source"), "tenant")
    d = theirs.get_boolean_details("of-bool", False)
    # A flag without targeting is STATIC, as flagd answers.
    check("bool, another tenant: the default", (d.value, d.reason), (False, Reason.STATIC))
    d = mine.get_string_details("of-string", "code-default")
    check("string", (d.value, d.reason), ("blue", Reason.STATIC))
    d = mine.get_integer_details("of-int", 0)
    check("integer", (d.value, d.error_code), (3, None))
    d = mine.get_float_details("of-float", 0.0)
    check("float", (d.value, d.error_code), (2.5, None))
    d = mine.get_object_details("of-object", {})
    check("object", (d.value, d.error_code), ({"a": 1}, None))
    d = mine.get_boolean_details("of-missing", True)
    check("unknown flag: the code default", (d.value, d.reason, d.error_code), (True, Reason.ERROR, ErrorCode.FLAG_NOT_FOUND))
    d = mine.get_string_details("of-bool", "code-default")
    check("wrong type: the code default", (d.value, d.error_code), ("code-default", ErrorCode.TYPE_MISMATCH))

    # A write on the server is seen by the next evaluation.
    req = urllib.request.Request(
        f"{base}/v1/flags/of-string?updateMask=storedValue",
        data=json.dumps({"key": "of-string", "storedValue": "green"}).encode(),
        headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"},
        method="PATCH",
    )
    urllib.request.urlopen(req, timeout=10).read()
    d = mine.get_string_details("of-string", "code-default")
    check("after a write", (d.value, d.reason, d.variant), ("green", Reason.STATIC, "store"))

    bad = client(base, "wrong-token-0123456789", "bad")
    d = bad.get_boolean_details("of-bool", False)
    check("a wrong token: the code default", (d.value, d.error_code), (False, ErrorCode.GENERAL))
    print("ofrep python: all checks passed", flush=True)


main()
