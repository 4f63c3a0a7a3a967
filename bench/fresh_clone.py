"""Wall time of make targets in a fresh clone of this checkout's HEAD, run one after another
(so the first pays for the set-up: pipenv, Python and npm dependencies, checkov, Debian packages).

Usage: ``.venv/bin/python bench/fresh_clone.py test-fast test demo demo-down``
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from orthweb_dev.fresh import clone, make


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("targets", nargs="+", help="make targets, in order")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="orthweb-fresh-"))
    failed = False
    try:
        checkout = clone(root / "orthweb")
        print(f"fresh clone in {checkout}")
        print("| make target | exit | wall time |\n| --- | ---: | ---: |")
        for target in args.targets:
            run = make(checkout, target)
            print(f"| `make {target}` | {run.returncode} | {run.seconds:.0f} s |", flush=True)
            if run.returncode != 0:
                print(run.output[-3000:], file=sys.stderr)
                failed = True
                break
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
