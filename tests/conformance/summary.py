#!/usr/bin/env python3
"""Prints the per-feature table of conformance_report.py's records.

Usage: summary.py MODE=REPORT.json [MODE=REPORT.json ...] [--list-failures]
Exit status: 1 when any scenario failed or errored, else 0.
"""
import json
import sys
from collections import Counter, defaultdict

COLUMNS = ["collected", "deselected", "selected", "passed", "failed", "error", "skipped", "notrun"]


def main(args):
    show = "--list-failures" in args
    rows, failures = [], []
    for arg in (a for a in args if "=" in a):
        mode, path = arg.split("=", 1)
        try:
            records = json.load(open(path))
        except (OSError, ValueError):
            print(f"{mode}: no report ({path})")
            failures.append((mode, "-", "-", "no report"))
            continue
        by_feature = defaultdict(Counter)
        for r in records:
            c = by_feature[r["feature"]]
            c["collected"] += 1
            c[r["outcome"]] += 1
            c["selected"] += r["outcome"] != "deselected"
            if r["outcome"] in ("failed", "error"):
                failures.append((mode, r["feature"], r["test"], r.get("message", "")))
        for feature in sorted(by_feature):
            rows.append((mode, feature, by_feature[feature]))
        rows.append((mode, "TOTAL", sum(by_feature.values(), Counter())))

    print(f"{'mode':<11} {'feature':<26}" + "".join(f"{c:>11}" for c in COLUMNS))
    for mode, feature, c in rows:
        print(f"{mode:<11} {feature:<26}" + "".join(f"{c[k]:>11}" for k in COLUMNS))
    if failures and show:
        print("\nfailed:")
        for mode, feature, test, msg in failures:
            print(f"  {mode:<11} {feature:<26} {test}: {msg}")
    passed = sum(c["passed"] for m, f, c in rows if f == "TOTAL")
    skipped = sum(c["skipped"] for m, f, c in rows if f == "TOTAL")
    # The plain closing line CI reads.
    print(f"\nconformance: {passed} passed, {len(failures)} failed, {skipped} skipped")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
