"""Run moto's server with small patches so that ``terraform apply`` then ``plan`` converges.

``python -m orthweb_dev.emulator --host 127.0.0.1 --port 5000`` runs moto's own server entry point
(``moto.server.main``) in the foreground, after :func:`apply_patches` has fixed the fidelity gaps listed in
:data:`FIDELITY_PATCHES`: attributes that real AWS returns and moto drops, which the AWS provider reads back
and would otherwise show as drift on the next plan. Each patch wraps one moto method and falls back to moto's
own behaviour when moto's internals do not have the expected shape. It also sets
``MOTO_IAM_LOAD_MANAGED_POLICIES=true`` so AWS managed policies (AmazonRDSEnhancedMonitoringRole, ...) exist.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import os
import secrets
import string
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

LOG = logging.getLogger("orthweb.emulator")

# What the AWS provider reads back when it is not in the config, or when the API leaves it out.
KMS_DEFAULT_ROTATION_PERIOD_DAYS = 365
RDS_DEFAULT_ENGINE_LIFECYCLE_SUPPORT = "open-source-rds-extended-support"
RDS_EXTENDED_SUPPORT_ENGINES = ("postgres", "mysql", "aurora-postgresql", "aurora-mysql")
# The CA RDS gives a new DB instance that names none: DescribeCertificates' DefaultCertificateForNewLaunches
# (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/UsingWithRDS.SSL.html, "Certificate authorities").
RDS_DEFAULT_CA = "rds-ca-rsa2048-g1"
_RESOURCE_ID_CHARS = string.ascii_uppercase + string.digits
# Request-context keys a bucket policy may test that moto never has for an S3 request.
S3_CONTEXT_KEYS_MOTO_LACKS = ("aws:SecureTransport", "aws:PrincipalAccount", "aws:PrincipalArn", "aws:SourceVpce")


@dataclass(frozen=True)
class FidelityPatch:
    """One gap between moto and AWS that shows as drift in ``terraform plan`` after ``apply``."""

    name: str
    resource: str
    attribute: str
    moto_does: str
    patch_does: str


FIDELITY_PATCHES: tuple[FidelityPatch, ...] = (
    FidelityPatch(
        "kms_rotation_period",
        "aws_kms_key",
        "rotation_period_in_days",
        "EnableKeyRotation ignores RotationPeriodInDays; GetKeyRotationStatus returns only KeyRotationEnabled",
        "keeps the period (default 365) and returns it, with KeyId, while rotation is enabled",
    ),
    FidelityPatch(
        "rds_engine_lifecycle_support",
        "aws_db_instance",
        "engine_lifecycle_support",
        "CreateDBInstance drops EngineLifecycleSupport (unknown keyword to DBInstance); Describe never returns it",
        "keeps it (default open-source-rds-extended-support for engines with extended support) and returns it",
    ),
    FidelityPatch(
        "rds_default_ca",
        "aws_db_instance",
        "ca_cert_identifier",
        "CreateDBInstance without CACertificateIdentifier gives rds-ca-default, an identifier RDS does not use, so "
        "the provider follows every create with a ModifyDBInstance to the configured CA and a second ~80 s wait",
        f"a new instance that names no CA gets RDS's default for new launches, {RDS_DEFAULT_CA}",
    ),
    FidelityPatch(
        "rds_unique_resource_id",
        "aws_db_instance",
        "id (the provider finds an instance by its DbiResourceId)",
        "every DB instance gets the same DbiResourceId (db-M5ENSHXFPU6XHZ4G4ZEI5QIO2U), so with two instances "
        "(a deployment restored beside the first) the dbi-resource-id filter finds both and the provider reports "
        "the new one as missing",
        "gives each instance its own identifier, as AWS's Region-unique, immutable DbiResourceId",
    ),
    FidelityPatch(
        "rds_restore_master_secret",
        "aws_db_instance (snapshot_identifier, manage_master_user_password)",
        "master_user_secret",
        "RestoreDBInstanceFromDBSnapshot copies the source instance's managed master password, making a secret the "
        "request did not ask for (AWS manages it only when ManageMasterUserPassword is given); the provider's "
        "ModifyDBInstance then makes a second one, and the first outlives the instance",
        "a restored instance manages its master password only when the restore asks for it",
    ),
    FidelityPatch(
        "rds_parameter_source",
        "aws_db_parameter_group",
        "parameter",
        "ModifyDBParameterGroup stores parameters without Source, and DescribeDBParameters ignores the Source "
        "filter, so the provider (which keeps only Source=user parameters) reads none back",
        "marks modified parameters Source=user and applies the Source filter",
    ),
    FidelityPatch(
        "ec2_instance_groups_from_eni",
        "aws_instance",
        "vpc_security_group_ids",
        "RunInstances with NetworkInterfaces (subnet + associate_public_ip_address) puts the groups on the ENI "
        "only; DescribeInstances reports no SecurityGroups for the instance",
        "the instance's groups are its primary ENI's groups when RunInstances named none at instance level",
    ),
    FidelityPatch(
        "ec2_group_rule_description",
        "aws_vpc_security_group_ingress_rule / aws_vpc_security_group_egress_rule",
        "description (rules with referenced_security_group_id or prefix_list_id)",
        "DescribeSecurityGroupRules takes Description from the CIDR range only, so rules naming a group or a prefix "
        "list (an S3 gateway endpoint's) lose it",
        "falls back to the Description given with the referenced group (UserIdGroupPairs) or prefix list "
        "(PrefixListIds)",
    ),
    FidelityPatch(
        "autoscaling_warmup_and_maintenance",
        "aws_autoscaling_group",
        "default_instance_warmup, instance_maintenance_policy",
        "CreateAutoScalingGroup and UpdateAutoScalingGroup ignore DefaultInstanceWarmup and "
        "InstanceMaintenancePolicy; DescribeAutoScalingGroups returns neither",
        "keeps both as given (create or update) and returns them",
    ),
    FidelityPatch(
        "ec2_launch_template_own_tags",
        "aws_launch_template",
        "tag_specifications",
        "CreateLaunchTemplate copies the request's TagSpecifications for the template itself (resource type "
        "launch-template) into LaunchTemplateData.TagSpecifications, which AWS keeps for what the template launches",
        "tags the template only; the version's data keeps the tag specifications it was given",
    ),
    FidelityPatch(
        "s3_bucket_policy_conditions",
        "aws_s3_bucket_policy (and aws_s3_object, read back through it)",
        "Deny statements conditioned on the request",
        "evaluates bucket policies with no request context (it knows neither the caller's ARN and account nor the "
        "VPC endpoint) and counts a statement whose condition it cannot evaluate as a denial, Deny or Allow alike, "
        "so a Deny for other accounts or outside the VPC endpoint refuses every GetObject and HeadObject: a host "
        "cannot read, and terraform plan fails with 403",
        "leaves out the Deny statements whose conditions use only "
        + ", ".join(S3_CONTEXT_KEYS_MOTO_LACKS)
        + " (keys moto does not know, and aws:SecureTransport, false on the emulator's plain HTTP where AWS is "
        "reached over HTTPS); every other statement is evaluated as moto does, and the conditions themselves are "
        "checked in the synthesized policy",
    ),
)


def _setattr(obj: object, name: str, value: object) -> None:
    """Set an attribute moto's classes do not declare (keeps mypy quiet without ignores)."""
    setattr(obj, name, value)


def _patch_kms_rotation_period() -> None:
    # Gap: aws_kms_key.rotation_period_in_days (moto drops RotationPeriodInDays on enable and on status).
    from moto.kms.responses import KmsResponse

    enable: Callable[[KmsResponse], str] = KmsResponse.enable_key_rotation
    status: Callable[[KmsResponse], str] = KmsResponse.get_key_rotation_status

    def enable_key_rotation(self: KmsResponse) -> str:
        result = enable(self)
        period = self._get_param("RotationPeriodInDays")
        key = self.kms_backend.describe_key(self._get_param("KeyId"))
        _setattr(key, "rotation_period_in_days", int(period) if period else KMS_DEFAULT_ROTATION_PERIOD_DAYS)
        return result

    def get_key_rotation_status(self: KmsResponse) -> str:
        body = status(self)
        try:
            data = json.loads(body)
            key = self.kms_backend.describe_key(self._get_param("KeyId"))
        except (ValueError, KeyError, AttributeError):
            return body
        if not isinstance(data, dict):
            return body
        data.setdefault("KeyId", key.arn)
        if data.get("KeyRotationEnabled"):
            data.setdefault(
                "RotationPeriodInDays", getattr(key, "rotation_period_in_days", KMS_DEFAULT_ROTATION_PERIOD_DAYS)
            )
        return json.dumps(data)

    _setattr(KmsResponse, "enable_key_rotation", enable_key_rotation)
    _setattr(KmsResponse, "get_key_rotation_status", get_key_rotation_status)


def _patch_rds_engine_lifecycle_support() -> None:
    # Gap: aws_db_instance.engine_lifecycle_support (moto never stores nor returns EngineLifecycleSupport).
    from moto.rds.models import DBInstance

    init: Callable[..., None] = DBInstance.__init__

    def __init__(self: DBInstance, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if getattr(self, "engine_lifecycle_support", None) is None:
            given = kwargs.get("engine_lifecycle_support")
            default = RDS_DEFAULT_ENGINE_LIFECYCLE_SUPPORT if self.engine in RDS_EXTENDED_SUPPORT_ENGINES else None
            _setattr(self, "engine_lifecycle_support", given or default)

    # ModifyDBInstance already sets every given attribute (DBInstance.update), so only creation needs this.
    _setattr(DBInstance, "__init__", __init__)


def _patch_rds_default_ca() -> None:
    # Gap: aws_db_instance.ca_cert_identifier (moto's default CA is not RDS's default for new launches).
    from moto.rds.models import DBInstance

    init: Callable[..., None] = DBInstance.__init__

    def __init__(self: DBInstance, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if not kwargs.get("ca_certificate_identifier"):
            _setattr(self, "ca_certificate_identifier", RDS_DEFAULT_CA)

    _setattr(DBInstance, "__init__", __init__)


def _patch_rds_unique_resource_id() -> None:
    # Gap: aws_db_instance.id (moto hard-codes one DbiResourceId for every instance).
    from moto.rds.models import DBInstance

    init: Callable[..., None] = DBInstance.__init__

    def __init__(self: DBInstance, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if not hasattr(self, "dbi_resource_id"):
            raise TypeError("DBInstance has no dbi_resource_id")
        # AWS's are "db-" and 26 upper-case letters and digits.
        _setattr(self, "dbi_resource_id", "db-" + "".join(secrets.choice(_RESOURCE_ID_CHARS) for _ in range(26)))

    _setattr(DBInstance, "__init__", __init__)


def _patch_rds_restore_master_secret() -> None:
    # Gap: aws_db_instance.master_user_secret after a restore (moto copies the source's secret management).
    from moto.rds.models import DBInstance, RDSBackend

    restore: Callable[..., DBInstance] = RDSBackend.restore_db_instance_from_db_snapshot

    def restore_db_instance_from_db_snapshot(
        self: RDSBackend, from_snapshot_id: str, overrides: dict[str, Any]
    ) -> DBInstance:
        database = restore(self, from_snapshot_id, overrides)
        if not overrides.get("manage_master_user_password") and hasattr(database, "master_user_secret"):
            database.update(manage_master_user_password=False)  # moto's own way to drop it, secret and all
        return database

    _setattr(RDSBackend, "restore_db_instance_from_db_snapshot", restore_db_instance_from_db_snapshot)


def _patch_rds_parameter_source() -> None:
    # Gap: aws_db_parameter_group.parameter (moto's parameters lack Source=user; the Source filter is ignored).
    from moto.core.responses import ActionResult
    from moto.rds.models import DBParameterGroup
    from moto.rds.responses import RDSResponse

    update: Callable[[DBParameterGroup, Iterable[dict[str, Any]]], None] = DBParameterGroup.update_parameters
    describe: Callable[[RDSResponse], ActionResult] = RDSResponse.describe_db_parameters

    def update_parameters(self: DBParameterGroup, new_parameters: Iterable[dict[str, Any]]) -> None:
        update(self, [{**param, "Source": param.get("Source") or "user"} for param in new_parameters])

    def describe_db_parameters(self: RDSResponse) -> ActionResult:
        result = describe(self)
        source = self._get_param("Source")
        body = result.result
        if not source or not isinstance(body, dict) or "Parameters" not in body:
            return result
        kept = [p for p in body["Parameters"] if not isinstance(p, dict) or p.get("Source", "user") == source]
        return ActionResult({**body, "Parameters": kept})

    _setattr(DBParameterGroup, "update_parameters", update_parameters)
    _setattr(RDSResponse, "describe_db_parameters", describe_db_parameters)


def _patch_ec2_instance_groups_from_eni() -> None:
    # Gap: aws_instance.vpc_security_group_ids (groups given on the primary NetworkInterface are not reported).
    from moto.ec2.models.instances import Instance

    prep_nics: Callable[..., None] = Instance.prep_nics

    def patched_prep_nics(self: Instance, *args: Any, **kwargs: Any) -> None:
        prep_nics(self, *args, **kwargs)
        primary = getattr(self, "nics", {}).get(0)
        groups = getattr(primary, "_group_set", None)
        if not self.security_groups and groups:
            self.security_groups = list(dict.fromkeys(groups))

    _setattr(Instance, "prep_nics", patched_prep_nics)


def _patch_ec2_group_rule_description() -> None:
    # Gap: aws_vpc_security_group_{in,e}gress_rule.description with referenced_security_group_id or
    # prefix_list_id (dropped).
    from moto.ec2.models.security_groups import SecurityGroupRule

    original = SecurityGroupRule.__dict__["description"]
    if not isinstance(original, property) or original.fget is None:
        raise TypeError("SecurityGroupRule.description is not a property")
    fget = original.fget
    init: Callable[..., None] = SecurityGroupRule.__init__
    signature = inspect.signature(init)
    if "prefix_list_id" not in signature.parameters:
        raise TypeError("SecurityGroupRule() takes no prefix_list_id")

    def __init__(self: SecurityGroupRule, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        prefix_list = signature.bind(self, *args, **kwargs).arguments.get("prefix_list_id")
        described = prefix_list.get("Description") if isinstance(prefix_list, dict) else None
        _setattr(self, "prefix_list_description", described)

    def description(self: SecurityGroupRule) -> str | None:
        value: str | None = fget(self)
        source_group = getattr(self, "source_group", None)
        if value is None and isinstance(source_group, dict):
            value = source_group.get("Description")
        if value is None:
            value = getattr(self, "prefix_list_description", None)
        return value

    _setattr(SecurityGroupRule, "__init__", __init__)
    _setattr(SecurityGroupRule, "description", property(description))


def _patch_autoscaling_warmup_and_maintenance() -> None:
    # Gap: aws_autoscaling_group.default_instance_warmup / instance_maintenance_policy (dropped by moto).
    from moto.autoscaling.responses import AutoScalingResponse

    create: Callable[[AutoScalingResponse], Any] = AutoScalingResponse.create_auto_scaling_group
    update: Callable[[AutoScalingResponse], Any] = AutoScalingResponse.update_auto_scaling_group

    def keep(self: AutoScalingResponse) -> None:
        group = self.autoscaling_backend.autoscaling_groups.get(self._get_param("AutoScalingGroupName"))
        if group is None:
            return
        warmup = self._get_int_param("DefaultInstanceWarmup")
        if warmup is not None:
            _setattr(group, "default_instance_warmup", warmup)
        policy = {
            key: self._get_int_param(f"InstanceMaintenancePolicy.{key}")
            for key in ("MinHealthyPercentage", "MaxHealthyPercentage")
        }
        if any(v is not None for v in policy.values()):
            _setattr(group, "instance_maintenance_policy", {k: v for k, v in policy.items() if v is not None})

    def create_auto_scaling_group(self: AutoScalingResponse) -> Any:
        result = create(self)
        keep(self)
        return result

    def update_auto_scaling_group(self: AutoScalingResponse) -> Any:
        result = update(self)
        keep(self)
        return result

    _setattr(AutoScalingResponse, "create_auto_scaling_group", create_auto_scaling_group)
    _setattr(AutoScalingResponse, "update_auto_scaling_group", update_auto_scaling_group)


def _patch_ec2_launch_template_own_tags() -> None:
    # Gap: aws_launch_template.tag_specifications (the template's own tags leak into what it launches).
    from moto.ec2.responses.launch_templates import LaunchTemplates

    create: Callable[[LaunchTemplates], Any] = LaunchTemplates.create_launch_template

    def create_launch_template(self: LaunchTemplates) -> Any:
        result = create(self)
        template = self.ec2_backend.get_launch_template_by_name(self._get_param("LaunchTemplateName"))
        for version in template.versions:
            specs = version.data.get("TagSpecifications")
            if not isinstance(specs, list):
                continue
            kept = [s for s in specs if not (isinstance(s, dict) and s.get("ResourceType") == "launch-template")]
            if kept:
                version.data["TagSpecifications"] = kept
            else:
                del version.data["TagSpecifications"]
        return result

    _setattr(LaunchTemplates, "create_launch_template", create_launch_template)


def _patch_s3_bucket_policy_conditions() -> None:
    # Gap: a Deny applies only when its condition holds (IAM User Guide, "Condition"); moto, which
    # has no request context for S3, denies whenever it cannot show that a condition holds.
    from moto.iam.access_control import IAMPolicy
    from moto.s3.models import FakeBucket

    get_permission: Callable[[FakeBucket, str, str], Any] = FakeBucket.get_permission

    def unevaluable_deny(statement: Any) -> bool:
        if not isinstance(statement, dict) or statement.get("Effect") != "Deny" or "Condition" not in statement:
            return False
        keys = {key for operator in statement["Condition"].values() for key in operator}
        return keys <= set(S3_CONTEXT_KEYS_MOTO_LACKS)

    def patched(self: FakeBucket, action: str, resource: str) -> Any:
        if self.policy is None:
            return get_permission(self, action, resource)
        document = json.loads(self.policy.decode())
        statements = document.get("Statement", [])
        statements = [statements] if isinstance(statements, dict) else statements
        kept = [s for s in statements if not unevaluable_deny(s)]
        return IAMPolicy(json.dumps({**document, "Statement": kept})).is_action_permitted(action, resource)

    _setattr(FakeBucket, "get_permission", patched)


_APPLIERS: dict[str, Callable[[], None]] = {
    "kms_rotation_period": _patch_kms_rotation_period,
    "rds_engine_lifecycle_support": _patch_rds_engine_lifecycle_support,
    "rds_default_ca": _patch_rds_default_ca,
    "rds_unique_resource_id": _patch_rds_unique_resource_id,
    "rds_restore_master_secret": _patch_rds_restore_master_secret,
    "rds_parameter_source": _patch_rds_parameter_source,
    "ec2_instance_groups_from_eni": _patch_ec2_instance_groups_from_eni,
    "ec2_group_rule_description": _patch_ec2_group_rule_description,
    "autoscaling_warmup_and_maintenance": _patch_autoscaling_warmup_and_maintenance,
    "ec2_launch_template_own_tags": _patch_ec2_launch_template_own_tags,
    "s3_bucket_policy_conditions": _patch_s3_bucket_policy_conditions,
}

_applied: list[str] = []


def apply_patches() -> list[str]:
    """Apply every patch once (idempotent); return the names applied. A patch that no longer fits moto is skipped."""
    if _applied:
        return list(_applied)
    for patch in FIDELITY_PATCHES:
        try:
            _APPLIERS[patch.name]()
        except (ImportError, AttributeError, KeyError, TypeError) as exc:
            LOG.warning("emulator: patch %s skipped, moto's behaviour kept (%s)", patch.name, exc)
        else:
            _applied.append(patch.name)
    return list(_applied)


def patches_table() -> str:
    """:data:`FIDELITY_PATCHES` as a Markdown table (for the README)."""
    rows = ["| Resource | Attribute | What moto does | What the patch does |", "| --- | --- | --- | --- |"]
    rows += [f"| `{p.resource}` | `{p.attribute}` | {p.moto_does} | {p.patch_does} |" for p in FIDELITY_PATCHES]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Parse ``--host``/``--port``, apply the patches and run moto's server in the foreground."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-H", "--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("-p", "--port", type=int, default=5000, help="port to listen on (default: 5000)")
    parser.add_argument("--list-patches", action="store_true", help="print the patches as a Markdown table and exit")
    args = parser.parse_args(argv)
    if args.list_patches:
        print(patches_table())
        return

    os.environ["MOTO_IAM_LOAD_MANAGED_POLICIES"] = "true"
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    applied = apply_patches()
    LOG.info("emulator: fidelity patches applied: %s", ", ".join(applied) or "none")

    from moto.server import main as moto_main

    moto_main(["--host", args.host, "--port", str(args.port)])


if __name__ == "__main__":
    main(sys.argv[1:])
