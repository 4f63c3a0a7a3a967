"""Encryption alone: one customer-managed key that rotates, and a grant usable only through Secrets Manager.

Construct tests place one construct with its smallest collaborators in a ``Testing.app()`` stack
and read ``Testing.synth(stack)``: copy this shape when you add a construct to Orthweb.
"""

from __future__ import annotations

from cdktf_cdktf_provider_aws.iam_role import IamRole

from orthweb.encryption import Encryption
from orthweb.policy import assume_role_policy
from orthweb_dev.synth import construct_stack, named, only, policy, synth_stack


def test_the_key_rotates_yearly_and_is_named_by_an_alias() -> None:
    stack = construct_stack()
    Encryption(stack, "Encryption", name_prefix="t", region="eu-west-1")
    synth = synth_stack(stack)
    key = only(synth, "aws_kms_key")
    assert key["enable_key_rotation"] is True
    assert key["rotation_period_in_days"] == 365
    assert key["deletion_window_in_days"] == 30
    assert only(synth, "aws_kms_alias")["name"] == "alias/t"


def test_no_statement_of_the_key_policy_opens_the_key_to_anyone() -> None:
    stack = construct_stack()
    Encryption(stack, "Encryption", name_prefix="t", region="eu-west-1")
    statements = policy(only(synth_stack(stack), "aws_kms_key")["policy"])["Statement"]
    for statement in statements:
        principal = statement["Principal"]
        assert principal != "*"
        assert principal.get("AWS") != "*"
    service_use = next(s for s in statements if s["Sid"] == "AwsServicesUseKeyForThisAccount")
    assert "kms:CallerAccount" in service_use["Condition"]["StringEquals"]


def test_grant_secrets_use_allows_the_key_only_through_secrets_manager() -> None:
    stack = construct_stack()
    key = Encryption(stack, "Encryption", name_prefix="t", region="eu-west-1")
    role = IamRole(stack, "Role", assume_role_policy=assume_role_policy("ec2.amazonaws.com"))
    created = key.grant_secrets_use(role, region="eu-west-1")
    assert created.node.scope is key  # the grant lives with the resource it opens, and is returned
    granted = policy(named(synth_stack(stack), "aws_iam_role_policy", "use-key-through-secrets-manager")["policy"])
    (statement,) = granted["Statement"]
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert statement["Condition"] == {"StringEquals": {"kms:ViaService": "secretsmanager.eu-west-1.amazonaws.com"}}
