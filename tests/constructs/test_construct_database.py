"""Database alone: private, encrypted, TLS only, password kept by RDS, reachable only when connected."""

from __future__ import annotations

from typing import Any

from cdktf import TerraformStack
from cdktf_cdktf_provider_aws.iam_role import IamRole

from orthweb.database import Database
from orthweb.encryption import Encryption
from orthweb.network import Network
from orthweb.policy import assume_role_policy
from orthweb_dev.synth import construct_stack, named, only, policy, resources, synth_stack


def place(**props: Any) -> tuple[TerraformStack, Database]:
    stack = construct_stack()
    key = Encryption(stack, "Encryption", name_prefix="t", region="eu-west-1")
    network = Network(stack, "Network", name_prefix="t", region="eu-west-1", encryption=key)
    return stack, Database(stack, "Database", name_prefix="t", network=network, encryption=key, **props)


def test_the_database_is_private_encrypted_tls_only_and_protected() -> None:
    stack, _ = place()
    synth = synth_stack(stack)
    db = only(synth, "aws_db_instance")
    assert db["publicly_accessible"] is False
    assert db["storage_encrypted"] is True
    assert db["deletion_protection"] is True
    assert db["skip_final_snapshot"] is False
    assert {"name": "rds.force_ssl", "value": "1"} in only(synth, "aws_db_parameter_group")["parameter"]
    assert all("Private" in s for s in only(synth, "aws_db_subnet_group")["subnet_ids"])


def test_storage_grows_by_itself_up_to_its_ceiling_and_not_at_all_without_one() -> None:
    stack, _ = place()
    db = only(synth_stack(stack), "aws_db_instance")
    assert db["max_allocated_storage"] == 4 * db["allocated_storage"]  # the default ceiling
    stack, _ = place(storage_ceiling_gb=None)
    assert "max_allocated_storage" not in only(synth_stack(stack), "aws_db_instance")


def test_rds_keeps_the_master_password_and_terraform_never_sees_it() -> None:
    stack, _ = place()
    db = only(synth_stack(stack), "aws_db_instance")
    assert db["manage_master_user_password"] is True
    assert "password" not in db
    assert "password_wo" not in db


def test_nothing_reaches_the_database_until_something_is_connected_to_it() -> None:
    stack, _ = place()
    synth = synth_stack(stack)
    (db_group,) = only(synth, "aws_db_instance")["vpc_security_group_ids"]
    rules = resources(synth, "aws_vpc_security_group_ingress_rule").values()
    assert [r for r in rules if r["security_group_id"] == db_group] == []


def test_grant_read_master_secret_reads_only_the_rds_managed_secret() -> None:
    stack, database = place()
    role = IamRole(stack, "Role", assume_role_policy=assume_role_policy("ec2.amazonaws.com"))
    created = database.grant_read_master_secret(role)
    assert created.node.scope is database  # the grant lives with the resource it opens, and is returned
    (statement,) = policy(named(synth_stack(stack), "aws_iam_role_policy", "read-db-master-secret")["policy"])[
        "Statement"
    ]
    assert statement["Resource"].endswith(".master_user_secret[0].secret_arn}")
    assert sorted(statement["Action"]) == ["secretsmanager:DescribeSecret", "secretsmanager:GetSecretValue"]
