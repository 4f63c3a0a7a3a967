"""Orthweb's development package: the AWS emulator, the local application harness, the demo and
the helpers tests, scripts and benchmarks share. Nothing here ships to a deployment; it is typed
and linted like the product package ``orthweb`` and installed editable beside it (Pipfile)."""

from __future__ import annotations

from pathlib import Path

#: The project checkout this package belongs to (where cdktf.json lives).
PROJECT_DIR = Path(__file__).resolve().parents[2]
