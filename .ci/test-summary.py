#!/usr/bin/env python3
"""Summarizes a `dotnet test` run: how many tests were skipped and why, then one closing count line.

Usage: test-summary.py RESULTS_DIR CONSOLE_LOG

The counts come from the per-assembly lines dotnet test prints ("Passed!  - Failed: 0, Passed: 12, Skipped: 1, ...");
the skip reasons from the TRX files its trx logger wrote into RESULTS_DIR (outcome NotExecuted, reason in ErrorInfo).
Two test projects finishing in the same second can write TRX files of the same name; skips whose reason was lost that
way are still counted, as "reason not recorded". Exits 1 when the log holds no per-assembly line (no test ran).
"""
import collections
import glob
import os
import re
import sys
import xml.etree.ElementTree as ET

NS = "{http://microsoft.com/schemas/VisualStudio/TeamTest/2010}"
SUMMARY = re.compile(r"^\s*(?:Passed|Failed|Skipped)!\s+-\s+Failed:\s+(\d+),\s+Passed:\s+(\d+),\s+Skipped:\s+(\d+),\s+Total:\s+(\d+).*?-\s+(\S+)")


def console_counts(log_path):
    """{assembly: (failed, passed, skipped)} from the console log; a later line for the same assembly wins."""
    counts = {}
    with open(log_path, encoding="utf-8", errors="replace") as log:
        for line in log:
            m = SUMMARY.match(line)
            if m:
                counts[m.group(5)] = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
    return counts


def skip_reasons(results_dir):
    """Counter of skip reasons over every TRX file under results_dir."""
    reasons = collections.Counter()
    for path in glob.glob(os.path.join(results_dir, "**", "*.trx"), recursive=True):
        for result in ET.parse(path).getroot().iter(NS + "UnitTestResult"):
            if result.get("outcome") != "NotExecuted":
                continue
            message = result.find(f"{NS}Output/{NS}ErrorInfo/{NS}Message")
            text = (message.text or "").strip() if message is not None else ""
            reasons[" ".join(text.split()) or "no reason given"] += 1
    return reasons


def main():
    if len(sys.argv) != 3:
        print("usage: test-summary.py RESULTS_DIR CONSOLE_LOG", file=sys.stderr)
        return 2
    counts = console_counts(sys.argv[2])
    if not counts:
        print("test summary: dotnet test printed no per-assembly result line (no test ran)", file=sys.stderr)
        return 1
    failed = sum(c[0] for c in counts.values())
    passed = sum(c[1] for c in counts.values())
    skipped = sum(c[2] for c in counts.values())
    reasons = skip_reasons(sys.argv[1])
    unrecorded = skipped - sum(reasons.values())
    if unrecorded > 0:
        reasons["reason not recorded (a TRX file was overwritten)"] += unrecorded
    print()
    print(f"skipped: {skipped} test(s)" + (", by reason:" if skipped else ""))
    if skipped:
        for reason, n in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
            print(f"  {n:5d}  {reason}")
    print(f"tests: {passed} passed, {failed} failed, {skipped} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
