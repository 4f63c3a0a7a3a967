"""Who may talk to whom, said once: a small version of aws-cdk's connections API.

Every construct that owns a security group exposes ``connections``. One call,
``a.connections.allow_to(b.connections)``, writes both halves of the pair: an egress rule on
``a``'s group (under ``a``) and the matching ingress rule on ``b``'s group (under ``b``), each
naming the other group, so no reader has to match a rule in one file with its twin in another.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cdktf_cdktf_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule

from constructs import Construct


@dataclass(frozen=True)
class Connections:
    """A security group, the construct that owns it, and what it serves.

    ``label`` names the owner in rule descriptions ("the Orthanc database"); ``default_port`` and
    ``protocol`` say what a peer connects to when it is given no port ("PostgreSQL" on 5432).
    """

    owner: Construct
    security_group_id: str
    label: str
    default_port: int | None = None
    protocol: str | None = None

    def allow_to(
        self, other: Connections, port: int | None = None
    ) -> tuple[VpcSecurityGroupEgressRule, VpcSecurityGroupIngressRule]:
        """Let members of this group open TCP connections to ``other`` on ``port`` (default: its
        ``default_port``); returns (this side's egress rule, the other side's ingress rule)."""
        port = port or other.default_port
        if port is None:
            raise ValueError(f"{other.label} has no default port: name the port")
        what = other.protocol or f"TCP {port}"
        egress = VpcSecurityGroupEgressRule(
            self.owner,
            f"To{port}",
            security_group_id=self.security_group_id,
            description=f"{what} to {other.label}",
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            referenced_security_group_id=other.security_group_id,
        )
        # On the other side's own port the rule is "IngressFrom<owner>"; on any other port the port
        # is part of the name, so one owner may reach several ports of the same group.
        suffix = "" if port == other.default_port else str(port)
        ingress = VpcSecurityGroupIngressRule(
            other.owner,
            f"IngressFrom{self.owner.node.id}{suffix}",
            security_group_id=other.security_group_id,
            description=f"{what} from {self.label}",
            ip_protocol="tcp",
            from_port=port,
            to_port=port,
            referenced_security_group_id=self.security_group_id,
        )
        return egress, ingress

    def allow_from_networks(self, rules: Iterable[tuple[str, int, str, str]]) -> list[VpcSecurityGroupIngressRule]:
        """Let clients in IPv4 networks open TCP connections to members of this group: one ingress
        rule per ``(construct id, port, cidr, description)``, created under the owner."""
        return [
            VpcSecurityGroupIngressRule(
                self.owner,
                rule_id,
                security_group_id=self.security_group_id,
                description=description,
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_ipv4=cidr,
            )
            for rule_id, port, cidr, description in rules
        ]
