"""Audit the installed dependencies against the package registry's vulnerability data.

    python scripts/pip_audit.py [--waivers .ci/pip-audit-waivers.toml]

A known vulnerability fails (exit 1) unless `.ci/pip-audit-waivers.toml` waives it with a
reason until a date; an expired or malformed waiver fails too. When the vulnerability data
cannot be reached for any package (a registry mirror without it), the audit says so in one
line and passes: nothing was found, and nothing was checked either.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def waivers(path: Path, today: datetime.date) -> tuple[set[str], list[str]]:
    """The waived ids still in force, and the problems with the file."""
    if not path.exists():
        return set(), []
    entries = tomllib.loads(path.read_text()).get("waiver", [])
    active: set[str] = set()
    problems: list[str] = []
    for number, entry in enumerate(entries, start=1):
        missing = [key for key in ("id", "package", "reason", "until") if not entry.get(key)]
        if missing:
            problems.append(f"waiver {number} lacks {', '.join(missing)}")
            continue
        until = entry["until"]
        if not isinstance(until, datetime.date):
            problems.append(f"waiver {number} ({entry['id']}): until must be a date")
        elif until < today:
            problems.append(f"waiver {number} ({entry['id']}, {entry['package']}) expired on "
                            f"{until}: fix it or renew the waiver with a reason")
        else:
            active.add(str(entry["id"]))
    return active, problems


def audit(ignored: set[str]) -> dict[str, Any]:
    argv = [sys.executable, "-m", "pip_audit", "--format", "json", "--progress-spinner", "off",
            "--skip-editable", *(arg for vuln in sorted(ignored)
                                 for arg in ("--ignore-vuln", vuln))]
    # argv is ours: this interpreter, fixed options, and ids from the waivers file.
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900,  # noqa: S603
                          cwd=ROOT)
    try:
        return dict(json.loads(done.stdout))
    except json.JSONDecodeError:
        raise SystemExit(f"pip-audit failed (exit {done.returncode}): "
                         f"{(done.stderr or done.stdout)[-2000:]}") from None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--waivers", type=Path, default=ROOT / ".ci" / "pip-audit-waivers.toml")
    args = parser.parse_args()
    active, problems = waivers(args.waivers, datetime.date.today())
    report = audit(active)
    dependencies = report.get("dependencies", [])
    found = [(dep["name"], dep["version"], vuln["id"], vuln.get("fix_versions") or [])
             for dep in dependencies for vuln in dep.get("vulns", [])]
    audited = [dep for dep in dependencies if "skip_reason" not in dep]
    for name, version, vuln, fixes in found:
        print(f"pip-audit: {name} {version} has {vuln}"
              + (f" (fixed in {', '.join(fixes)})" if fixes else " (no fix yet)"))
    for problem in problems:
        print(f"pip-audit: {problem}")
    if not audited and dependencies:
        print(f"pip-audit: the vulnerability data could not be reached for any of the "
              f"{len(dependencies)} packages; nothing was audited")
        return 1 if problems else 0
    print(f"pip-audit: {len(audited)} packages audited, {len(found)} known vulnerabilities, "
          f"{len(active)} waived")
    return 1 if found or problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
