"""Session fixtures: the stack is synthesized once per test session (importing the AWS
bindings alone costs ~10 s), and once more for a variant with most settings changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

# jsii's banner about Node 20 would clutter every test's output.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

PROJECT_DIR = Path(__file__).resolve().parents[1]
MIRROR_ENV = "TF_PROVIDER_MIRROR"
# Wall time of each terraform step of tests/test_lifecycle.py, printed in the session summary.
LIFECYCLE_TIMINGS: dict[str, float] = {}


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if LIFECYCLE_TIMINGS:
        terminalreporter.section("lifecycle step timings (emulator)")
        for step, seconds in LIFECYCLE_TIMINGS.items():
            terminalreporter.write_line(f"terraform {step}: {seconds:.1f} s")


# One variant that turns (nearly) every switch away from its default.
VARIANT_SETTINGS: dict[str, Any] = {
    "name_prefix": "pacs-test",
    "region": "eu-west-1",
    "vpc_cidr": "10.20.0.0/20",
    "az_count": 3,
    "web_cidrs": ["198.51.100.0/24"],
    "dicom_cidrs": ["203.0.113.0/24", "192.0.2.0/28"],
    "instance_type": "m7i.large",
    "db_instance_class": "db.m7g.large",
    "db_storage_gb": 100,
    "db_engine_version": "16.4",
    "db_multi_az": True,
    "db_backup_days": 14,
    "deletion_protection": False,
    "log_retention_days": 731,
    "interface_endpoints": ["ssm", "ssmmessages", "ec2messages"],
    "endpoints_in_all_azs": True,
    "ssh_key_name": "ops-key",
    "ssh_cidr": "192.0.2.0/24",
    "https": False,
    "plain_dicom_in_vpc": True,
    "state_backend": "s3",
    "state_bucket": "pacs-test-state",
    "tags": {"Owner": "radiology", "CostCenter": "4711"},
}


def synthesize(settings_values: Mapping[str, Any], outdir: Path) -> tuple[dict[str, Any], Path]:
    """Synthesize the stack with ``settings_values`` into ``outdir``; return (parsed JSON, stack dir)."""
    from cdktf import App

    from orthweb.settings import Settings
    from orthweb.stack import STACK_NAME, OrthwebStack

    app = App(outdir=str(outdir))
    OrthwebStack(app, STACK_NAME, settings=Settings(**settings_values), project_dir=outdir)
    app.synth()
    stack_dir = outdir / "stacks" / STACK_NAME
    return json.loads((stack_dir / "cdk.tf.json").read_text()), stack_dir


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    return synthesize({}, tmp_path_factory.mktemp("synth-default"))


@pytest.fixture(scope="session")
def synth(synthesized: tuple[dict[str, Any], Path]) -> dict[str, Any]:
    """The parsed cdk.tf.json of the stack with default settings."""
    return synthesized[0]


@pytest.fixture(scope="session")
def stack_dir(synthesized: tuple[dict[str, Any], Path]) -> Path:
    """The synthesized stack directory (cdk.tf.json) with default settings."""
    return synthesized[1]


@pytest.fixture(scope="session")
def variant(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The parsed cdk.tf.json of the stack with VARIANT_SETTINGS."""
    return synthesize(VARIANT_SETTINGS, tmp_path_factory.mktemp("synth-variant"))[0]


def provider_mirror() -> Path:
    """The filesystem mirror holding hashicorp/aws 5.100.0 (there is no registry route here)."""
    value = os.environ.get(MIRROR_ENV)
    if not value:
        pytest.fail(
            f"set {MIRROR_ENV} to the Terraform provider filesystem mirror (e.g. /opt/tf-plugins); .ci/run does"
        )
    path = Path(value)
    if not (path / "registry.terraform.io/hashicorp/aws/5.100.0").is_dir():
        pytest.fail(f"{MIRROR_ENV}={value} holds no registry.terraform.io/hashicorp/aws/5.100.0")
    return path


@pytest.fixture(scope="session")
def terraform_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for running terraform offline against the provider mirror."""
    if shutil.which("terraform") is None:
        pytest.fail("terraform is not on PATH; install Terraform >= 1.6")
    mirror = provider_mirror()
    home = tmp_path_factory.mktemp("terraform-home")
    rc = home / "terraformrc"
    rc.write_text(
        "provider_installation {\n"
        f'  filesystem_mirror {{\n    path    = "{mirror}"\n    include = ["registry.terraform.io/hashicorp/*"]\n  }}\n'
        '  direct {\n    exclude = ["registry.terraform.io/*/*"]\n  }\n'
        "}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    env.update(TF_CLI_CONFIG_FILE=str(rc), TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1", TF_INPUT="0")
    return env


@pytest.fixture(scope="session")
def terraform(terraform_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``terraform ARGS`` in a directory; raises with its output on failure unless check=False."""

    def run(cwd: Path, *args: str, check: bool = True, env: Mapping[str, str] | None = None, timeout: float = 600):
        proc = subprocess.run(
            ["terraform", *args],
            cwd=cwd,
            env={**terraform_env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"terraform {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    return run
