"""Summarise `mutmut run` (make mutation): the kill rate over tested mutants, the survivors,
and which functions the fast tests do not reach (their mutants count as not tested)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

# Mutants listed in tests/MUTATION.md as equivalent: reported, and not counted as missed.
EQUIVALENT_FILE = Path("tests/MUTATION.md")


def equivalent_ids() -> set[str]:
    """Mutant ids in the first column of MUTATION.md's table."""
    if not EQUIVALENT_FILE.exists():
        return set()
    return set(
        re.findall(r"^\|\s*`?([\w.ǁ]+__mutmut_\d+)`?\s*\|", EQUIVALENT_FILE.read_text(), re.M)
    )


def main() -> int:
    """Print the kill rate, every mutant no test caught, and the functions not reached."""
    stats = json.loads(Path("mutants/mutmut-cicd-stats.json").read_text())
    caught = stats["killed"] + stats["timeout"]
    tested = stats["total"] - stats["no_tests"] - stats["skipped"]
    rate = 100 * caught / max(tested, 1)
    print(f"mutants: {stats['total']}; caught {caught} of {tested} tested ({rate:.1f} %);")
    print(f"  survived {stats['survived']}, not reached by the fast tests {stats['no_tests']}")
    results = subprocess.run(
        [sys.executable, "-m", "mutmut", "results"], capture_output=True, text=True
    ).stdout
    known = equivalent_ids()
    survivors = [line.strip() for line in results.splitlines() if "survived" in line]
    missed = [s for s in survivors if s.split(":")[0] not in known]
    if survivors:
        print(
            f"  of the survivors, {len(survivors) - len(missed)} are equivalent ({EQUIVALENT_FILE})"
        )
        print(
            f"  caught or equivalent: {100 * (caught + len(survivors) - len(missed)) / max(tested, 1):.1f} %"
        )
    for line in missed:
        print(" ", line)
    unreached = Counter(
        re.sub(r"__mutmut_\d+$", "", line.split(":")[0].strip())
        for line in results.splitlines()
        if "no tests" in line
    )
    if unreached:
        print("  not reached (mutants per function):")
        for function, count in sorted(unreached.items()):
            print(f"    {function}: {count}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
