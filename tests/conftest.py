"""Session fixtures and test tiers.

The stack is synthesized once per test session (importing the AWS bindings alone costs ~10 s),
and once more for a variant with most settings changed. Tiers are markers: a test not marked
``emulator``, ``lifecycle``, ``app`` or ``fresh`` is in the ``fast`` tier (``make test-fast``)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from orthweb.settings import Settings
from orthweb_dev.containers import ENGINE_CLIENTS, ContainerHost, containers_for_test
from orthweb_dev.dicom import TEST_AET
from orthweb_dev.emulator_server import REGION, MotoServer, moto_server
from orthweb_dev.synth import COGNITO_SETTINGS, SCALED_SETTINGS, VARIANT_SETTINGS, synthesize
from orthweb_dev.terraform import MirrorMissing, provider_mirror, write_cli_config

# jsii's banner about Node 20 would clutter every test's output.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")

PROJECT_DIR = Path(__file__).resolve().parents[1]
# Wall time of each terraform step of the lifecycle tests, printed in the session summary.
_STEP_TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="session")
def step_timings() -> dict[str, float]:
    """Record ``{step: seconds}`` here; the session summary prints them."""
    return _STEP_TIMINGS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _STEP_TIMINGS:
        terminalreporter.section("lifecycle step timings (emulator)")
        for step, seconds in _STEP_TIMINGS.items():
            terminalreporter.write_line(f"terraform {step}: {seconds:.1f} s")


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
def variant_synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    return synthesize(VARIANT_SETTINGS, tmp_path_factory.mktemp("synth-variant"))


@pytest.fixture(scope="session")
def variant(variant_synthesized: tuple[dict[str, Any], Path]) -> dict[str, Any]:
    """The parsed cdk.tf.json of the stack with VARIANT_SETTINGS."""
    return variant_synthesized[0]


@pytest.fixture(scope="session")
def variant_dir(variant_synthesized: tuple[dict[str, Any], Path]) -> Path:
    """The synthesized stack directory with VARIANT_SETTINGS."""
    return variant_synthesized[1]


@pytest.fixture(scope="session")
def scaled_synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    return synthesize(SCALED_SETTINGS, tmp_path_factory.mktemp("synth-scaled"))


@pytest.fixture(scope="session")
def scaled(scaled_synthesized: tuple[dict[str, Any], Path]) -> dict[str, Any]:
    """The parsed cdk.tf.json with SCALED_SETTINGS: three hosts behind the balancer, images in S3."""
    return scaled_synthesized[0]


@pytest.fixture(scope="session")
def scaled_stack_dir(scaled_synthesized: tuple[dict[str, Any], Path]) -> Path:
    return scaled_synthesized[1]


@pytest.fixture(scope="session")
def cognito_synthesized(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    return synthesize(COGNITO_SETTINGS, tmp_path_factory.mktemp("synth-cognito"))


@pytest.fixture(scope="session")
def cognito(cognito_synthesized: tuple[dict[str, Any], Path]) -> dict[str, Any]:
    """The parsed cdk.tf.json with COGNITO_SETTINGS: one host behind the front door's Cognito login."""
    return cognito_synthesized[0]


@pytest.fixture(scope="session")
def cognito_stack_dir(cognito_synthesized: tuple[dict[str, Any], Path]) -> Path:
    return cognito_synthesized[1]


@pytest.fixture(scope="session")
def cognito_scaled(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The parsed cdk.tf.json of SCALED_SETTINGS behind the front door (three hosts, login=cognito)."""
    settings = {**SCALED_SETTINGS, **{k: v for k, v in COGNITO_SETTINGS.items() if k != "dicom_peers"}}
    return synthesize(settings, tmp_path_factory.mktemp("synth-cognito-scaled"))[0]


@pytest.fixture(scope="session")
def images_in_s3(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The parsed cdk.tf.json of one host with ``storage = "s3"``."""
    return synthesize({"storage": "s3"}, tmp_path_factory.mktemp("synth-s3"))[0]


@pytest.fixture(scope="session")
def terraform_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for running terraform offline against the provider mirror."""
    if shutil.which("terraform") is None:
        pytest.fail("terraform is not on PATH; install Terraform >= 1.6")
    try:
        mirror = provider_mirror()
    except MirrorMissing as exc:
        pytest.fail(str(exc))
    rc = write_cli_config(tmp_path_factory.mktemp("terraform-home") / "terraformrc", mirror)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "TF_"))}
    env.update(TF_CLI_CONFIG_FILE=str(rc), TF_IN_AUTOMATION="1", CHECKPOINT_DISABLE="1", TF_INPUT="0")
    return env


@pytest.fixture(scope="session")
def terraform(terraform_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run ``terraform ARGS`` in a directory; raises with its output on failure unless check=False."""

    def run(
        cwd: Path, *args: str, check: bool = True, env: Mapping[str, str] | None = None, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
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


SLOW_TIERS = ("emulator", "lifecycle", "app", "fresh")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test outside the slow tiers is in the fast tier."""
    for item in items:
        if not any(item.get_closest_marker(tier) for tier in SLOW_TIERS):
            item.add_marker(pytest.mark.fast)


# The application the `app` fixture runs: default settings, plus the one DICOM peer the tests
# call from (orthweb_dev.dicom's AE title), allowed to store and find from where this machine's
# connections reach nginx in its container.
APP_SETTINGS = Settings(dicom_peers=[{"aet": TEST_AET, "cidr": ENGINE_CLIENTS, "permissions": ["store", "find"]}])


@pytest.fixture(scope="module")
def app() -> Iterator[ContainerHost]:
    """One running application (APP_SETTINGS) in its containers, for a test module."""
    with containers_for_test(APP_SETTINGS) as host:
        yield host


# --- the lifecycle modules' emulator ----------------------------------------------------------
# Module-scoped: each lifecycle module deploys into an emulator of its own (in the emulator's
# default REGION), stopped after it.


@pytest.fixture(scope="module")
def emulator() -> Iterator[MotoServer]:
    with moto_server(REGION, patched=True) as server:
        yield server


@pytest.fixture(scope="module")
def aws_env(emulator: MotoServer) -> dict[str, str]:
    """The ``AWS_*`` variables that point Terraform and the AWS CLI at the module's emulator."""
    return {k: v for k, v in emulator.env({}).items() if k.startswith("AWS_")}


@pytest.fixture(scope="module")
def timed_terraform(
    terraform: Callable[..., subprocess.CompletedProcess[str]], aws_env: dict[str, str], step_timings: dict[str, float]
) -> Callable[..., Callable[..., subprocess.CompletedProcess[str]]]:
    """``make(stack_dir, label)``: Terraform in ``stack_dir`` against the module's emulator, each
    step's time recorded under ``label`` (``{step}`` in it is the command), initialised first."""

    def make(
        stack_dir: Path, label: str = "{step}", timeout: float = 900
    ) -> Callable[..., subprocess.CompletedProcess[str]]:
        def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
            started = time.monotonic()
            proc = terraform(stack_dir, *args, check=check, env=aws_env, timeout=timeout)
            step = " ".join(a for a in args if not a.startswith("-"))
            step_timings[label.format(step=step)] = time.monotonic() - started
            return proc

        run("init", "-input=false")
        return run

    return make


@pytest.fixture(scope="module")
def aws(aws_env: dict[str, str]) -> Any:
    """``aws("ec2")``: a boto3 client for the module's emulator."""
    import boto3

    session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION)
    return lambda service: session.client(service, endpoint_url=aws_env["AWS_ENDPOINT_URL"])
