"""AdminSecret alone: created empty, encrypted with the deployment key, readable and fillable by one role."""

from __future__ import annotations

from cdktf_cdktf_provider_aws.iam_role import IamRole

from orthweb.encryption import Encryption
from orthweb.policy import assume_role_policy
from orthweb.secrets import AdminSecret
from orthweb_dev.synth import construct_stack, named, only, policy, synth_stack


def test_the_admin_secret_is_encrypted_with_the_key_and_holds_no_value() -> None:
    stack = construct_stack()
    key = Encryption(stack, "Encryption", name_prefix="t", region="eu-west-1")
    AdminSecret(stack, "AdminSecret", name_prefix="t", encryption=key)
    synth = synth_stack(stack)
    secret = only(synth, "aws_secretsmanager_secret")
    assert "aws_kms_key" in secret["kms_key_id"]
    assert secret["recovery_window_in_days"] == 7
    # Terraform never holds the password: there is no secret version in the configuration.
    assert "aws_secretsmanager_secret_version" not in synth.get("resource", {})


def test_grant_read_write_names_exactly_this_secret() -> None:
    stack = construct_stack()
    key = Encryption(stack, "Encryption", name_prefix="t", region="eu-west-1")
    admin = AdminSecret(stack, "AdminSecret", name_prefix="t", encryption=key)
    role = IamRole(stack, "Role", assume_role_policy=assume_role_policy("ec2.amazonaws.com"))
    created = admin.grant_read_write(role)
    assert created.node.scope is admin  # the grant lives with the resource it opens, and is returned
    (statement,) = policy(
        named(synth_stack(stack), "aws_iam_role_policy", "read-write-orthanc-admin-secret")["policy"]
    )["Statement"]
    assert statement["Resource"].startswith("${aws_secretsmanager_secret.")
    assert sorted(statement["Action"]) == [
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:PutSecretValue",
    ]
