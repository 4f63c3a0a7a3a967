"""IAM policy JSON helpers: one place that spells the policy grammar."""

from __future__ import annotations

import json
from typing import Any


def policy_document(*statements: dict[str, Any]) -> str:
    """An IAM policy document allowing ``statements`` (each gets ``Effect: Allow``)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **s} for s in statements]})


def assume_role_policy(service: str, **conditions: Any) -> str:
    """A trust policy letting the AWS ``service`` principal assume the role."""
    statement: dict[str, Any] = {"Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    if conditions:
        statement["Condition"] = conditions
    return policy_document(statement)
