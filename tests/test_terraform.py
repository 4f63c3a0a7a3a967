"""The synthesized JSON is valid Terraform for the AWS provider 5.100.0 (from the local mirror)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.terraform


@pytest.fixture(scope="module")
def initialized(stack_dir: Path, terraform: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("validate")
    shutil.copy(stack_dir / "cdk.tf.json", workdir / "cdk.tf.json")
    terraform(workdir, "init", "-backend=false", "-input=false", "-no-color")
    return workdir


def test_terraform_validate_accepts_the_full_synthesis(initialized: Path, terraform: Any) -> None:
    proc = terraform(initialized, "validate", "-json", "-no-color")
    result = json.loads(proc.stdout)
    assert result["valid"] is True, result["diagnostics"]
    assert result["error_count"] == 0


def test_provider_comes_from_the_mirror_at_the_pinned_version(initialized: Path, terraform: Any) -> None:
    proc = terraform(initialized, "version", "-json")
    versions = json.loads(proc.stdout)["provider_selections"]
    assert versions == {"registry.terraform.io/hashicorp/aws": "5.100.0"}
