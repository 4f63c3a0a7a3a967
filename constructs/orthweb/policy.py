"""IAM policy JSON helpers: one place that spells the policy grammar."""

from __future__ import annotations

import json
from typing import Any

from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy

from constructs import Construct


def policy_document(*statements: dict[str, Any]) -> str:
    """An IAM policy document allowing ``statements`` (each gets ``Effect: Allow``)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **s} for s in statements]})


def assume_role_policy(service: str, **conditions: Any) -> str:
    """A trust policy letting the AWS ``service`` principal assume the role."""
    statement: dict[str, Any] = {"Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if conditions:
        statement["Condition"] = conditions
    return policy_document(statement)


def grant(scope: Construct, id_: str, *, role: IamRole, name: str, statement: dict[str, Any]) -> IamRolePolicy:
    """Attach to ``role`` an inline policy named ``name`` that allows one ``statement``.

    Created under ``scope`` (the construct that owns the resource), so the permission lives with it.
    """
    return IamRolePolicy(scope, id_, role=role.id, name=name, policy=policy_document(statement))
