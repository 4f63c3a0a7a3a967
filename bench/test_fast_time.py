"""Wall time of the fast test tier (``pytest -m fast``) in this checkout, beside its target.

Usage: ``make bench-test-fast`` (= ``.venv/bin/python bench/test_fast_time.py [--runs 3]``).
Prints each run and the median; the target is under 90 s on the project's 2-core machines.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

from orthweb_dev import PROJECT_DIR

TARGET_S = 90.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    env = {**os.environ, "CHECKOV": str(PROJECT_DIR / ".tools" / "checkov" / "bin" / "checkov")}
    times = []
    for i in range(args.runs):
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-m", "fast", "-q", "-p", "no:cacheprovider"],
            cwd=PROJECT_DIR,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        seconds = time.monotonic() - started
        last = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:]
        if proc.returncode != 0:
            print(f"run {i + 1}: failed ({last})", file=sys.stderr)
            return 1
        tests = re.search(r"(\d+) passed", last)
        print(f"run {i + 1}: {seconds:.1f} s ({tests[1] if tests else '?'} tests)", flush=True)
        times.append(seconds)
    median = statistics.median(times)
    print(f"fast tier: median {median:.1f} s over {len(times)} runs (target < {TARGET_S:.0f} s)")
    print(f"machine: {os.cpu_count()} CPUs")
    return 0 if median < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
