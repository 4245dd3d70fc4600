"""pytest plugin (-p conformance_report): writes $CONF_REPORT, one record per
scenario example with its feature file, tags and outcome, so summary.py can
count by feature. pytest-bdd's test names do not say the feature: its
scenario object does.
"""
import json
import os

import pytest

_records = {}


def _record(item):
    scenario = getattr(getattr(item, "obj", None), "__scenario__", None)
    return _records.setdefault(item.nodeid, {
        "feature": os.path.basename(scenario.feature.filename) if scenario else item.path.name,
        "scenario": scenario.name if scenario else item.name,
        "test": item.name,
        "tags": sorted({m.name for m in item.iter_markers()}),
        "outcome": "notrun",
    })


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    # Before the provider's conftests and -m deselect anything.
    for item in items:
        _record(item)


def pytest_deselected(items):
    for item in items:
        _record(item)["outcome"] = "deselected"


def pytest_runtest_logreport(report):
    r = _records.get(report.nodeid)
    if r is None:
        return
    if report.failed:
        r["outcome"] = "failed" if report.when == "call" else "error"
        crash = getattr(report.longrepr, "reprcrash", None)
        text = crash.message if crash else str(report.longrepr)
        r["message"] = (text.strip().splitlines() or [""])[0][:300]
    elif report.skipped and r["outcome"] == "notrun":
        r["outcome"] = "skipped"
    elif report.when == "call" and report.passed:
        r["outcome"] = "passed"
    if report.when == "teardown":
        _dump()  # as it goes: a run cut short by run.sh's timeout still counts


def pytest_collection_finish(session):
    _dump()


def pytest_sessionfinish(session):
    _dump()


def _dump():
    path = os.environ.get("CONF_REPORT")
    if path:
        with open(path + ".tmp", "w") as f:
            json.dump(list(_records.values()), f, indent=1)
        os.replace(path + ".tmp", path)
