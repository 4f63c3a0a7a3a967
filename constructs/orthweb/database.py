"""Encrypted RDS PostgreSQL holding Orthanc's index and images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.db_instance import DbInstance
from cdktf_cdktf_provider_aws.db_parameter_group import DbParameterGroup, DbParameterGroupParameter
from cdktf_cdktf_provider_aws.db_snapshot_copy import DbSnapshotCopy
from cdktf_cdktf_provider_aws.db_subnet_group import DbSubnetGroup
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktf_cdktf_provider_aws.security_group import SecurityGroup

from constructs import Construct
from orthweb import defaults
from orthweb.connections import Connections
from orthweb.encryption import Encryption
from orthweb.names import db_identifier
from orthweb.network import Network
from orthweb.policy import assume_role_policy, grant

DB_NAME = "orthanc"
DB_USERNAME = "orthanc"
DB_PORT = 5432
# Exported to CloudWatch; the groups are created here first so they are encrypted and expire.
LOG_EXPORTS = ("postgresql", "upgrade")


class Database(Construct):
    """RDS for PostgreSQL in the private subnets.

    Not publicly accessible; gp3 storage encrypted with the deployment key; TLS required by the
    parameter group (``rds.force_ssl=1``); the master password generated and kept by RDS in
    Secrets Manager (encrypted with the key, rotated by RDS), so it never appears in the
    synthesized JSON or the Terraform state. Reachable on 5432 only from what is connected to it
    (``other.connections.allow_to(database.connections)``).

    With ``snapshot_identifier`` the database is created from that snapshot (restore): the stack
    first copies it under this deployment's key, because a restored instance keeps the key of its
    snapshot, and the snapshot of another deployment is encrypted with that deployment's key,
    which goes when that deployment is destroyed. RDS then manages a new master password. The
    snapshot is read only at creation: setting or changing it later never replaces the database.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name_prefix: str,
        network: Network,
        encryption: Encryption,
        engine_version: str = defaults.DB_ENGINE_VERSION,
        instance_class: str = defaults.DB_INSTANCE_CLASS,
        storage_gb: int = defaults.DB_STORAGE_GB,
        storage_ceiling_gb: int | None = defaults.DB_STORAGE_GB * defaults.DB_STORAGE_AUTOSCALING_FACTOR,
        multi_az: bool = defaults.DB_MULTI_AZ,
        backup_days: int = defaults.DB_BACKUP_DAYS,
        deletion_protection: bool = defaults.DELETION_PROTECTION,
        log_retention_days: int = defaults.LOG_RETENTION_DAYS,
        snapshot_identifier: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        major = engine_version.split(".", maxsplit=1)[0]
        identifier = db_identifier(name_prefix)

        subnet_group = DbSubnetGroup(
            self,
            "SubnetGroup",
            name_prefix=f"{name_prefix}-",
            description="Private subnets of the Orthanc database",
            subnet_ids=network.private_subnet_ids,
        )
        parameters = DbParameterGroup(
            self,
            "Parameters",
            name_prefix=f"{name_prefix}-pg{major}-",
            family=f"postgres{major}",
            description="Orthanc database: TLS required, connections logged",
            parameter=[
                DbParameterGroupParameter(name="rds.force_ssl", value="1"),
                DbParameterGroupParameter(name="log_connections", value="1"),
                DbParameterGroupParameter(name="log_disconnections", value="1"),
            ],
            lifecycle={"create_before_destroy": True},
        )
        self.security_group = SecurityGroup(
            self,
            "SecurityGroup",
            name_prefix=f"{name_prefix}-db-",
            description="Orthanc database: PostgreSQL from the Orthanc host only",
            vpc_id=network.vpc_id,
            tags={"Name": f"{name_prefix}-db"},
            lifecycle={"create_before_destroy": True},
        )
        self.security_group_id: str = self.security_group.id
        self.connections = Connections(
            self, self.security_group.id, "the Orthanc database", default_port=DB_PORT, protocol="PostgreSQL"
        )

        log_groups = [
            CloudwatchLogGroup(
                self,
                f"Logs-{kind}",
                name=f"/aws/rds/instance/{identifier}/{kind}",
                retention_in_days=log_retention_days,
                kms_key_id=encryption.key_arn,
            )
            for kind in LOG_EXPORTS
        ]
        monitoring_role = IamRole(
            self,
            "MonitoringRole",
            name_prefix=f"{name_prefix}-rds-mon-",
            assume_role_policy=assume_role_policy("monitoring.rds.amazonaws.com"),
        )
        IamRolePolicyAttachment(
            self,
            "MonitoringPolicy",
            role=monitoring_role.name,
            policy_arn=f"arn:{encryption.partition}:iam::aws:policy/service-role/AmazonRDSEnhancedMonitoringRole",
        )

        restore_source = None
        if snapshot_identifier:
            restore_source = DbSnapshotCopy(
                self,
                "RestoreSource",
                source_db_snapshot_identifier=snapshot_identifier,
                target_db_snapshot_identifier=f"{identifier}-restore-source",
                kms_key_id=encryption.key_arn,
                tags={"Name": f"{identifier}-restore-source", "RestoredFrom": snapshot_identifier.rsplit(":", 1)[-1]},
                # RDS reports where a snapshot was copied from only for cross-Region and cross-account
                # copies (DescribeDBSnapshots, SourceDBSnapshotIdentifier); the provider would read
                # this same-Region copy's source back as empty and replace it at every plan.
                lifecycle=TerraformResourceLifecycle(ignore_changes=["source_db_snapshot_identifier"]),
            )
        self.instance = DbInstance(
            self,
            "Instance",
            identifier=identifier,
            snapshot_identifier=restore_source.id if restore_source else None,
            engine="postgres",
            engine_version=engine_version,
            # No paid RDS Extended Support: an end-of-life major is upgraded, not billed.
            engine_lifecycle_support="open-source-rds-extended-support-disabled",
            instance_class=instance_class,
            db_name=DB_NAME,
            username=DB_USERNAME,
            port=DB_PORT,
            manage_master_user_password=True,
            master_user_secret_kms_key_id=encryption.key_arn,
            # Nothing logs in with IAM: Orthanc and the host's role step use passwords (Secrets Manager).
            iam_database_authentication_enabled=False,
            allocated_storage=storage_gb,
            # Storage autoscaling: RDS grows the volume (up to this ceiling) when free space stays
            # below 10% for 5 minutes; Terraform then ignores allocated_storage's growth. None: off.
            max_allocated_storage=storage_ceiling_gb,
            storage_type="gp3",
            storage_encrypted=True,
            kms_key_id=encryption.key_arn,
            db_subnet_group_name=subnet_group.name,
            vpc_security_group_ids=[self.security_group.id],
            parameter_group_name=parameters.name,
            publicly_accessible=False,
            multi_az=multi_az,
            ca_cert_identifier="rds-ca-rsa2048-g1",
            backup_retention_period=backup_days,
            copy_tags_to_snapshot=True,
            delete_automated_backups=not deletion_protection,
            enabled_cloudwatch_logs_exports=list(LOG_EXPORTS),
            monitoring_interval=60,
            monitoring_role_arn=monitoring_role.arn,
            auto_minor_version_upgrade=True,
            allow_major_version_upgrade=False,
            deletion_protection=deletion_protection,
            skip_final_snapshot=not deletion_protection,
            final_snapshot_identifier=f"{identifier}-final" if deletion_protection else None,
            apply_immediately=False,
            depends_on=log_groups,
            tags={"Name": identifier},
            # The snapshot matters only when the database is created: setting or changing
            # db_snapshot_identifier later must never replace a database that holds data.
            lifecycle=TerraformResourceLifecycle(ignore_changes=["snapshot_identifier"]),
        )
        self.identifier: str = identifier
        self.endpoint_address: str = self.instance.address
        self.port: int = DB_PORT
        self.db_name: str = DB_NAME
        self.master_secret_arn: str = self.instance.master_user_secret.get(0).secret_arn

    def grant_read_master_secret(self, role: IamRole, *, condition: Mapping[str, Any] | None = None) -> IamRolePolicy:
        """Let ``role`` read (only) the RDS-managed master credentials, under ``condition``; returns the policy."""
        return grant(
            self,
            "ReadMasterSecret",
            role=role,
            name="read-db-master-secret",
            statement={
                "Sid": "ReadDatabaseMasterSecret",
                "Action": ["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
                "Resource": self.master_secret_arn,
            },
            condition=condition,
        )
