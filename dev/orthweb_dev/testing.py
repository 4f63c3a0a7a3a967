"""pytest helpers shared by the test modules (the fixtures themselves live in tests/conftest.py)."""

from __future__ import annotations

import os
import shutil

import pytest

INSTALL_HINT = "make debian installs requirements/debian.txt"


def in_ci() -> bool:
    """True under CI (``CI=true``), where a missing prerequisite is an error, never a skip."""
    return os.environ.get("CI", "").lower() == "true"


def not_run(reason: str) -> None:
    """Report a test as not run because a prerequisite is missing: a skip on a laptop, a failure in CI."""
    if in_ci():
        pytest.fail(f"{reason} (CI must run every tier)")
    pytest.skip(f"not run: {reason}")


def require(tool: str, package: str) -> str:
    """The path of ``tool``; when it is missing, the test is reported as not run (failed in CI),
    naming the Debian package that provides it. Never reported as passed."""
    found = shutil.which(tool)
    if not found:
        not_run(f"{tool} is missing: install the Debian package {package} ({INSTALL_HINT})")
    assert found is not None
    return found
