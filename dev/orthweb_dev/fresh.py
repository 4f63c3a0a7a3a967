"""A fresh clone, set up from nothing but itself: what a new engineer gets on day one.

:func:`clone` copies the committed HEAD of this checkout into a new directory (uncommitted
changes are not part of a clone); :func:`make` runs a make target there in an environment
stripped of this checkout's virtualenv, so every dependency is installed by the clone's own
Makefile. Used by the ``fresh`` test tier and by ``bench/fresh_clone.py``.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from orthweb_dev import PROJECT_DIR

# What a login shell on the machine would have; nothing that points into this checkout.
_KEEP = ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TERM", "TMPDIR", "CI", "TF_PROVIDER_MIRROR")


@dataclass(frozen=True)
class MakeRun:
    target: str
    returncode: int
    seconds: float
    output: str


def clone(dest: Path) -> Path:
    """``git clone`` this checkout's HEAD into ``dest``."""
    subprocess.run(["git", "clone", "--quiet", "--no-hardlinks", str(PROJECT_DIR), str(dest)], check=True)
    return dest


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k in _KEEP}
    venv_bin = str(PROJECT_DIR / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "/usr/bin:/bin").split(os.pathsep) if p != venv_bin)
    return env


def make(checkout: Path, target: str, timeout: float = 3600) -> MakeRun:
    """Run ``make TARGET`` in ``checkout``; its exit code, wall time and combined output."""
    started = time.monotonic()
    proc = subprocess.run(
        ["make", target],
        cwd=checkout,
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
    return MakeRun(target, proc.returncode, time.monotonic() - started, proc.stdout)
