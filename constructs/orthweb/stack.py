"""OrthwebStack: wires the constructs together. Each concern lives in its own module."""

from __future__ import annotations

from pathlib import Path

from cdktf import LocalBackend, S3Backend, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderDefaultTags

from constructs import Construct
from orthweb.bootstrap import HostFacts, render_user_data
from orthweb.database import Database
from orthweb.encryption import Encryption
from orthweb.host import DICOM_TLS_PORT, Host
from orthweb.network import Network
from orthweb.secrets import AdminSecret
from orthweb.settings import Settings

STACK_NAME = "orthweb"


class OrthwebStack(TerraformStack):
    """The whole deployment: network, key, database, admin secret and host, plus outputs."""

    def __init__(self, scope: Construct, id_: str, *, settings: Settings, project_dir: Path) -> None:
        super().__init__(scope, id_)
        s = settings
        AwsProvider(
            self,
            "aws",
            region=s.region,
            default_tags=[AwsProviderDefaultTags(tags={"Project": "orthweb", "Deployment": s.name_prefix, **s.tags})],
        )
        if s.state_backend == "s3":
            backend = S3Backend(self, bucket=str(s.state_bucket), key=s.state_key, region=s.region, encrypt=True)
            # Terraform's native S3 locking (a lock object beside the state), no DynamoDB table.
            backend.add_override("use_lockfile", True)
        else:
            # Absolute, so the state never lives inside cdktf.out (which synth rewrites).
            LocalBackend(self, path=str((project_dir / s.state_path).resolve()))

        encryption = Encryption(self, "Encryption", name_prefix=s.name_prefix, region=s.region)
        network = Network(
            self,
            "Network",
            name_prefix=s.name_prefix,
            region=s.region,
            encryption=encryption,
            vpc_cidr=s.vpc_cidr,
            az_count=s.az_count,
            interface_endpoints=s.interface_endpoints,
            endpoints_in_all_azs=s.endpoints_in_all_azs,
            log_retention_days=s.log_retention_days,
        )
        database = Database(
            self,
            "Database",
            name_prefix=s.name_prefix,
            network=network,
            encryption=encryption,
            engine_version=s.db_engine_version,
            instance_class=s.db_instance_class,
            storage_gb=s.db_storage_gb,
            multi_az=s.db_multi_az,
            backup_days=s.db_backup_days,
            deletion_protection=s.deletion_protection,
            log_retention_days=s.log_retention_days,
        )
        admin = AdminSecret(
            self,
            "AdminSecret",
            name_prefix=s.name_prefix,
            encryption=encryption,
            recovery_window_days=7 if s.deletion_protection else 0,
        )
        user_data = render_user_data(
            s,
            HostFacts(
                region=s.region,
                db_address=database.endpoint_address,
                db_port=str(database.port),
                db_name=database.db_name,
                db_secret_arn=database.master_secret_arn,
                admin_secret_arn=admin.secret_arn,
            ),
            for_terraform=True,
        )
        host = Host(
            self,
            "Host",
            name_prefix=s.name_prefix,
            network=network,
            encryption=encryption,
            user_data=user_data,
            instance_type=s.instance_type,
            architecture=s.architecture,
            root_volume_gb=s.root_volume_gb,
            web_cidrs=s.web_cidrs,
            dicom_cidrs=s.dicom_ingress_cidrs,
            move_destinations=[(p.host, p.port) for p in s.dicom_peers if p.host and p.port],
            https=s.https,
            plain_dicom_in_vpc=s.plain_dicom_in_vpc,
            ssh_key_name=s.ssh_key_name,
            ssh_cidr=s.ssh_cidr,
        )
        host.connect_to(database)
        database.grant_read_master_secret(host.role)
        admin.grant_read_write(host.role)
        encryption.grant_secrets_use(host.role, region=s.region)

        scheme = "https" if s.https else "http"
        site = s.site_name or host.public_dns
        outputs = {
            "host_public_dns": (host.public_dns, "Public DNS name of the Orthanc host"),
            "web_url": (f"{scheme}://{site}/", "Orthanc web UI (users' passwords in the admin secret, under users)"),
            "dicom_endpoint": (f"{s.orthanc_aet}@{site}:{DICOM_TLS_PORT}", "DICOM TLS endpoint, AET@host:port"),
            "db_endpoint": (database.instance.endpoint, "RDS PostgreSQL endpoint (private, TLS only)"),
            "db_master_secret_arn": (database.master_secret_arn, "Secrets Manager ARN of the RDS-managed master login"),
            "admin_secret_arn": (admin.secret_arn, "Secrets Manager ARN of the web users' passwords"),
            "instance_id": (host.instance_id, "EC2 instance id of the Orthanc host"),
            "ssm_session_command": (
                f"aws ssm start-session --region {s.region} --target {host.instance_id}",
                "Open a shell on the host through Session Manager (no SSH needed)",
            ),
        }
        for name, (value, description) in outputs.items():
            TerraformOutput(self, name, value=value, description=description)
