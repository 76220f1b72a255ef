"""Check a quickstart log: it finished, and every example it announces printed at least one hit.

Usage: ``python scripts/check_quickstart.py LOG [--expect N]``. Exit status 0 when the log shows the closing
line and every expected example (kNN, keyword, hybrid, by photo, composed) with a first hit; 1 otherwise,
naming what is missing. ``.ci/run`` runs it on the quickstart's output, so a quickstart that stops early or
skips an example cannot land.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

#: The examples the quickstart announces, by the start of their title.
EXPECTED = ("kNN", "keyword", "hybrid", "by photo", "composed")
HEADER = re.compile(r"^== example: (.*)$")
FIRST_HIT = re.compile(r"^ 1\. ")
FINISHED = "quickstart finished"


def check(log: str) -> list[str]:
    """Problems found in the quickstart output ``log`` (empty when it is complete)."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in log.splitlines():
        header = HEADER.match(line)
        if header:
            current = header.group(1)
            sections[current] = []
        elif line.startswith("== "):
            current = None
        elif current is not None:
            sections[current].append(line)
    problems = []
    for name in EXPECTED:
        titles = [t for t in sections if t.startswith(name)]
        if not titles:
            problems.append(f"example '{name}' never ran")
        elif not any(FIRST_HIT.match(line) for t in titles for line in sections[t]):
            problems.append(f"example '{name}' printed no result")
    if not any(line.startswith(FINISHED) for line in log.splitlines()):
        problems.append(f"no '{FINISHED}' line: the script stopped early")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    args = parser.parse_args(argv)
    problems = check(args.log.read_text(encoding="utf-8", errors="replace"))
    for p in problems:
        print(f"quickstart check: {p}", file=sys.stderr)
    if not problems:
        print(f"quickstart check: finished, {len(EXPECTED)} of {len(EXPECTED)} examples returned results")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
