#!/usr/bin/env python3
"""Print one line totalling the test counts of a scripts/test run:

    total: N passed, N failed, N skipped

from cargo test's output ("test result: ... N passed; N failed; N ignored")
and pytest's JUnit XML. A missing input counts as nothing (its stage failed
earlier and was reported as such)."""

import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

CARGO_RESULT = re.compile(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored")


def cargo_counts(log: Path) -> tuple[int, int, int]:
    passed = failed = skipped = 0
    if log.exists():
        for m in CARGO_RESULT.finditer(log.read_text(errors="replace")):
            passed += int(m[1])
            failed += int(m[2])
            skipped += int(m[3])
    return passed, failed, skipped


def junit_counts(xml: Path) -> tuple[int, int, int]:
    if not xml.exists():
        return 0, 0, 0
    passed = failed = skipped = 0
    for suite in ET.parse(xml).getroot().iter("testsuite"):
        tests, skips = int(suite.get("tests", 0)), int(suite.get("skipped", 0))
        fails = int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        passed += tests - skips - fails
        failed += fails
        skipped += skips
    return passed, failed, skipped


def main() -> None:
    cargo_log, junit_xml = map(Path, sys.argv[1:3])
    totals = [a + b for a, b in zip(cargo_counts(cargo_log), junit_counts(junit_xml))]
    print(f"total: {totals[0]} passed, {totals[1]} failed, {totals[2]} skipped")


if __name__ == "__main__":
    main()
