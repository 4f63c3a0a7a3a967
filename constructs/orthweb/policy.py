"""IAM policy JSON helpers: one place that spells the policy grammar."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy

from constructs import Construct

# Credentials that EC2 delivered to an instance keep working only from that instance: the request
# must come through a VPC endpoint of the VPC the credentials were delivered to (aws:SourceVpc) and
# from the private address they were delivered to (aws:VpcSourceIp). AWS documents this pair of
# global keys for exactly this purpose (IAM User Guide, "AWS global condition context keys",
# aws:Ec2InstanceSourceVpc and aws:Ec2InstanceSourcePrivateIPv4). aws:SourceVpc and aws:VpcSourceIp
# exist only for requests made through a VPC endpoint, so an Allow carrying this condition is
# useless to a thief calling from anywhere else, and also to the instance itself when the call
# takes the public endpoint: put it only on actions whose service this VPC reaches privately.
# Never on a call an AWS service makes for the caller (KMS called by Secrets Manager): AWS redacts
# the network keys there ("certain network-specific authorization context is redacted").
# `$${` because these are Terraform strings: Terraform turns `$${` into a literal `${`, which IAM
# then reads as a policy variable.
FROM_THE_INSTANCE_ONLY: Mapping[str, Any] = {
    "StringEquals": {
        "aws:Ec2InstanceSourceVpc": "$${aws:SourceVpc}",
        "aws:Ec2InstanceSourcePrivateIPv4": "$${aws:VpcSourceIp}",
    }
}


def policy_document(*statements: dict[str, Any]) -> str:
    """An IAM policy document allowing ``statements`` (each gets ``Effect: Allow``)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **s} for s in statements]})


def assume_role_policy(service: str, **conditions: Any) -> str:
    """A trust policy letting the AWS ``service`` principal assume the role."""
    statement: dict[str, Any] = {"Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if conditions:
        statement["Condition"] = conditions
    return policy_document(statement)


def with_condition(statement: dict[str, Any], condition: Mapping[str, Any] | None) -> dict[str, Any]:
    """``statement`` with ``condition``'s operators merged into its own (none: unchanged)."""
    if not condition:
        return statement
    merged: dict[str, Any] = {op: dict(keys) for op, keys in statement.get("Condition", {}).items()}
    for op, keys in condition.items():
        merged.setdefault(op, {}).update(keys)
    return {**statement, "Condition": merged}


def grant(
    scope: Construct,
    id_: str,
    *,
    role: IamRole,
    name: str,
    statement: dict[str, Any],
    condition: Mapping[str, Any] | None = None,
) -> IamRolePolicy:
    """Attach to ``role`` an inline policy named ``name`` that allows one ``statement`` (plus
    ``condition``, such as :data:`FROM_THE_INSTANCE_ONLY`).

    Created under ``scope`` (the construct that owns the resource), so the permission lives with it.
    """
    document = policy_document(with_condition(statement, condition))
    return IamRolePolicy(scope, id_, role=role.id, name=name, policy=document)
