"""Summarise `mutmut run` (make mutation): the kill rate over tested mutants, and the survivors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def main() -> int:
    """Print the kill rate and every mutant no test caught."""
    stats = json.loads(Path("mutants/mutmut-cicd-stats.json").read_text())
    caught = stats["killed"] + stats["timeout"]
    tested = stats["total"] - stats["no_tests"] - stats["skipped"]
    rate = 100 * caught / max(tested, 1)
    print(f"mutants: {stats['total']}; caught {caught} of {tested} tested ({rate:.1f} %);")
    print(f"  survived {stats['survived']}, not reached by the fast tests {stats['no_tests']}")
    results = subprocess.run(
        [sys.executable, "-m", "mutmut", "results"], capture_output=True, text=True
    ).stdout
    for line in results.splitlines():
        if "survived" in line:
            print(" ", line.strip())
    return 0


if __name__ == "__main__":
    sys.exit(main())
