"""Names derived from the deployment's name prefix that several constructs must agree on."""

from __future__ import annotations


def db_identifier(name_prefix: str) -> str:
    """The RDS instance identifier (RDS names its log groups after it)."""
    return f"{name_prefix}-db"


def log_group_patterns(name_prefix: str) -> tuple[str, ...]:
    """Every CloudWatch Logs group this deployment makes, as wildcard patterns: its own groups
    (``/<prefix>/…``: the containers', the VPC flow logs) and RDS's (``/aws/rds/instance/<id>/…``).
    The slash after each name keeps another deployment (``<prefix>-restore``) out."""
    return (f"/{name_prefix}/*", f"/aws/rds/instance/{db_identifier(name_prefix)}/*")
