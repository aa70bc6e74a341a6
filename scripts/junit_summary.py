#!/usr/bin/env python3
"""One line summing pytest's JUnit XML reports: `tests: N passed, N failed, N skipped`.

    python scripts/junit_summary.py var/junit/*.xml
    python scripts/junit_summary.py --slowest 20 var/junit/*.xml   # the slowest tests, by time

Every <testcase> counts once: with a <failure> or an <error> (a broken fixture or teardown)
it failed, with a <skipped> (xfail included) it was skipped, otherwise it passed. A report
that is missing or unreadable (pytest killed before writing it) counts as one failed test,
so the line never looks better than the run was. Standard library only.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def count(path: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) in one report."""
    passed = failed = skipped = 0
    root = ET.parse(path).getroot()  # noqa: S314 (reports this machine's pytest wrote)
    for case in root.iter("testcase"):
        tags = {child.tag for child in case}
        if tags & {"failure", "error"}:
            failed += 1
        elif "skipped" in tags:
            skipped += 1
        else:
            passed += 1
    return passed, failed, skipped


def summary(paths: list[Path]) -> str:
    passed = failed = skipped = 0
    for path in paths:
        try:
            p, f, s = count(path)
        except (OSError, ET.ParseError) as error:
            print(f"junit_summary: no readable report {path}: {error}", file=sys.stderr)
            failed += 1
            continue
        passed, failed, skipped = passed + p, failed + f, skipped + s
    return f"tests: {passed} passed, {failed} failed, {skipped} skipped"


def slowest(paths: list[Path], count: int) -> list[str]:
    """The `count` slowest test cases over every readable report, as `seconds  pass  test`."""
    cases: list[tuple[float, str, str]] = []
    for path in paths:
        try:
            root = ET.parse(path).getroot()  # noqa: S314 (reports this machine's pytest wrote)
        except (OSError, ET.ParseError):
            continue
        for case in root.iter("testcase"):
            name = f"{case.get('classname', '')}::{case.get('name', '')}"
            cases.append((float(case.get("time") or 0), path.stem, name))
    cases.sort(reverse=True)
    return [f"{seconds:8.1f} s  {run:<9} {name}" for seconds, run, name in cases[:count]]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--slowest"]:
        print("\n".join(slowest([Path(arg) for arg in argv[2:]], int(argv[1]))))
        return 0
    print(summary([Path(arg) for arg in argv]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
