"""checkov finds nothing to fail in the synthesized stack; every skip is justified in .checkov.yaml."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.policy

PROJECT_DIR = Path(__file__).resolve().parents[1]
CONFIG = PROJECT_DIR / ".checkov.yaml"


def checkov_command() -> str:
    """checkov lives in its own locked tool environment (its pins clash with the app's)."""
    candidates = [
        os.environ.get("CHECKOV", ""),
        str(PROJECT_DIR / ".tools/checkov/bin/checkov"),
        shutil.which("checkov"),
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return candidate
    pytest.fail("checkov not found: run `make tools` (installs it from requirements/checkov.txt) or set CHECKOV")


def _skips() -> list[str]:
    lines = CONFIG.read_text().splitlines()
    start = lines.index("skip-check:")
    return [line.strip()[2:] for line in lines[start + 1 :] if line.strip().startswith("- ")]


def test_every_skipped_check_has_a_reason_line_above_it() -> None:
    lines = CONFIG.read_text().splitlines()
    for check in _skips():
        index = lines.index(f"  - {check}")
        reason = lines[index - 1].strip()
        assert reason.startswith("#"), f"{check} has no reason"
        assert len(reason) > 40, f"{check} has no real reason"


def _checkov(*stack_dirs: Path) -> dict[str, Any]:
    files = [arg for d in stack_dirs for arg in ("-f", str(d / "cdk.tf.json"))]
    proc = subprocess.run(
        [checkov_command(), "--config-file", str(CONFIG), *files, "-o", "json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    report: dict[str, Any] = json.loads(proc.stdout)
    return report


@pytest.mark.parametrize("stack", ["default", "scaled", "cognito"])
def test_checkov_passes_the_synthesized_stack(stack: str, request: pytest.FixtureRequest) -> None:
    """Every topology: one host (the defaults), three hosts behind the balancer with images in S3,
    and one host behind the front door's Cognito login."""
    fixture = {"default": "stack_dir", "scaled": "scaled_stack_dir", "cognito": "cognito_stack_dir"}[stack]
    stack_dir: Path = request.getfixturevalue(fixture)
    report = _checkov(stack_dir)
    summary = report["summary"]
    failed = [f"{c['check_id']} {c['resource']}" for c in report["results"]["failed_checks"]]
    assert summary["failed"] == 0, failed
    assert summary["passed"] >= 100
    assert summary["parsing_errors"] == 0


def test_checkov_flags_only_what_the_variant_chose(variant_dir: Path) -> None:
    """The variant turns on what defaults leave off (alarms and their topic, a restore from a
    snapshot, every endpoint, SSH, plain DICOM) and sets deletion_protection = false (a throwaway
    proof of concept): that, and only that, is what checkov flags."""
    report = _checkov(variant_dir)
    failed = {(c["check_id"], c["resource"]) for c in report["results"]["failed_checks"]}
    assert failed == {("CKV_AWS_293", "resource.Database_Instance_02E622FB")}, failed
    assert report["summary"]["passed"] >= 150
    assert report["summary"]["parsing_errors"] == 0
