"""A new engineer's first command: a fresh clone sets itself up and passes the fast tier, with nothing
but the clone and the machine (pipenv, the locked Python and npm dependencies and checkov are
installed by the clone's own Makefile)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orthweb_dev.fresh import clone, make

pytestmark = pytest.mark.fresh


def test_a_fresh_clone_sets_itself_up_and_passes_the_fast_tier(tmp_path: Path) -> None:
    checkout = clone(tmp_path / "orthweb")
    assert not (checkout / ".venv").exists()
    run = make(checkout, "test-fast", timeout=1800)
    assert run.returncode == 0, run.output[-4000:]
    # Everything was installed inside the clone, from its own lock files.
    assert (checkout / ".venv" / ".synced").exists()
    assert (checkout / "node_modules" / ".installed").exists()
    assert (checkout / ".tools" / "checkov" / ".installed").exists()
    summary = re.search(r"(\d+) passed", run.output)
    assert summary, run.output[-2000:]
    assert int(summary[1]) > 100
    assert " failed" not in run.output.splitlines()[-1]
    print(f"fresh clone: make test-fast took {run.seconds:.0f} s")
