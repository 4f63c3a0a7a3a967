"""The whole stack placed the same way as the construct tests (``Testing.app()`` + ``Testing.synth``):
every construct wired, the host granted exactly its secrets, and the outputs an operator needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cdktf
import pytest

from orthweb.settings import Settings
from orthweb.stack import OrthwebStack
from orthweb_dev.synth import Synth, resources, synth_stack


@pytest.fixture(scope="module")
def stack_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    stack = OrthwebStack(
        cdktf.Testing.app(), "orthweb", settings=Settings(name_prefix="ct"), project_dir=tmp_path_factory.mktemp("p")
    )
    return synth_stack(stack)


def test_every_concern_is_present_once_and_the_host_keeps_its_address(stack_synth: Synth) -> None:
    for type_ in ("aws_vpc", "aws_kms_key", "aws_db_instance", "aws_secretsmanager_secret", "aws_flow_log"):
        assert len(resources(stack_synth, type_)) == 1, type_
    assert list(resources(stack_synth, "aws_instance")) == ["orthweb"]


def test_the_host_role_gets_exactly_its_grants(stack_synth: Synth) -> None:
    (profile,) = resources(stack_synth, "aws_iam_instance_profile").values()
    host_role = profile["role"].removesuffix(".name}")  # "${aws_iam_role.<host role>"
    granted = [
        p for p in resources(stack_synth, "aws_iam_role_policy").values() if p["role"].startswith(host_role + ".")
    ]
    assert sorted(p["name"] for p in granted) == [
        "read-db-master-secret",
        "read-host-files",
        "read-write-orthanc-admin-secret",
        "session-manager",
        "use-key-through-secrets-manager",
        "write-container-logs",
    ]


def test_outputs_say_where_to_connect_and_describe_themselves(stack_synth: Synth) -> None:
    outputs: dict[str, Any] = stack_synth["output"]
    for name in ("web_url", "dicom_endpoint", "admin_secret_arn", "instance_id", "ssm_session_command"):
        assert outputs[name]["description"], name
    assert outputs["web_url"]["value"].startswith("https://")


def test_the_local_state_lives_outside_the_synth_output(
    stack_synth: Synth, tmp_path_factory: pytest.TempPathFactory
) -> None:
    path = Path(stack_synth["terraform"]["backend"]["local"]["path"])
    assert path.name == "terraform.orthweb.tfstate"
    assert "cdktf.out" not in path.parts
