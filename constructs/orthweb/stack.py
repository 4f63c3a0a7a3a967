"""OrthwebStack: wires the constructs together. Each concern lives in its own module."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from cdktf import LocalBackend, S3Backend, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderDefaultTags

from constructs import Construct
from orthweb.alarms import Alarms
from orthweb.bootstrap import HostFacts, bundle_archive, bundle_files, render_user_data
from orthweb.database import Database
from orthweb.encryption import Encryption
from orthweb.fleet import HEALTH_PATH, HEALTH_PORT, Balancer, HostGroup
from orthweb.front_door import FrontDoor
from orthweb.host import DICOM_TLS_PORT, HTTP_PORT, HTTPS_PORT, Host
from orthweb.hostfiles import HostFiles
from orthweb.logs import AppLogs
from orthweb.network import Network
from orthweb.policy import FROM_THE_INSTANCE_ONLY
from orthweb.secrets import AdminSecret, CertificateSecret
from orthweb.settings import Settings
from orthweb.storage import ImageBucket

STACK_NAME = "orthweb"


class OrthwebStack(TerraformStack):
    """The whole deployment: network, key, database, admin secret and host, plus outputs.

    ``storage = "s3"`` adds the image bucket; ``hosts`` >= 2 replaces the one instance with a
    launch template, an Auto Scaling group and a Network Load Balancer, and adds the shared
    certificate's secret (docs/scaling.md). ``login = "cognito"`` puts the front door in front of
    the host(s): an Application Load Balancer with a Cognito login (docs/host.md, "The front door").
    """

    def __init__(self, scope: Construct, id_: str, *, settings: Settings, project_dir: Path) -> None:
        super().__init__(scope, id_)
        s = settings
        tags = {"Project": "orthweb", "Deployment": s.name_prefix, **s.tags}
        AwsProvider(self, "aws", region=s.region, default_tags=[AwsProviderDefaultTags(tags=tags)])
        if s.state_backend == "s3":
            backend = S3Backend(self, bucket=str(s.state_bucket), key=s.state_key, region=s.region, encrypt=True)
            # Terraform's native S3 locking (a lock object beside the state), no DynamoDB table.
            backend.add_override("use_lockfile", True)
        else:
            # Absolute, so the state never lives inside cdktf.out (which synth rewrites).
            LocalBackend(self, path=str((project_dir / s.state_path).resolve()))

        images_in_s3 = s.storage == "s3"
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
            storage_ceiling_gb=s.db_storage_ceiling_gb,
            multi_az=s.db_multi_az,
            backup_days=s.db_backup_days,
            deletion_protection=s.deletion_protection,
            log_retention_days=s.log_retention_days,
            snapshot_identifier=s.db_snapshot_identifier,
        )
        admin = AdminSecret(
            self,
            "AdminSecret",
            name_prefix=s.name_prefix,
            encryption=encryption,
            recovery_window_days=7 if s.deletion_protection else 0,
        )
        images = self._image_bucket(s, network, encryption) if images_in_s3 else None
        balancer = self._balancer(s, network) if s.multi_host else None
        front_door = self._front_door(s, network, encryption) if s.cognito else None
        certificate = (
            CertificateSecret(
                self,
                "Certificate",
                name_prefix=s.name_prefix,
                encryption=encryption,
                recovery_window_days=7 if s.deletion_protection else 0,
            )
            if s.multi_host
            else None
        )
        # Every host file but the deployment facts, in one archive the hosts fetch and verify.
        host_files = HostFiles(
            self,
            "HostFiles",
            name_prefix=s.name_prefix,
            region=s.region,
            network=network,
            encryption=encryption,
            archive=bundle_archive(bundle_files(s)),
        )
        facts = HostFacts(
            region=s.region,
            db_address=database.endpoint_address,
            db_port=str(database.port),
            db_name=database.db_name,
            db_secret_arn=database.master_secret_arn,
            admin_secret_arn=admin.secret_arn,
            bundle_bucket=host_files.bucket_name,
            bundle_version=host_files.version_id,
        )
        if images:
            facts = replace(facts, images_bucket=images.bucket_name, images_role_arn=images.access_role_arn)
        facts = self._topology_facts(s, facts, balancer=balancer, certificate=certificate, front_door=front_door)
        user_data = render_user_data(s, facts, for_terraform=True)
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
            archive_volume_gb=s.archive_volume_gb,
            # Several hosts are reached through the balancer only (its group admits the clients); with
            # the Cognito login, the web comes through the front door only.
            web_cidrs=[] if balancer or front_door else s.web_cidrs,
            dicom_cidrs=[] if balancer else s.dicom_ingress_cidrs,
            move_destinations=[(p.host, p.port) for p in s.dicom_peers if p.host and p.port],
            https=s.https,
            plain_dicom_in_vpc=s.plain_dicom_in_vpc,
            ssh_key_name=s.ssh_key_name,
            ssh_cidr=s.ssh_cidr,
            launch_template=s.multi_host,
            tags=tags,
        )
        host.connect_to(database)
        if front_door:
            front_door.admit(host, instance_id=None if balancer else host.instance_id)
        # The host calls Secrets Manager through its interface endpoint (always present, private
        # DNS on), so its secret grants carry the from-the-instance condition. The key grant does
        # not: KMS is called by Secrets Manager for the host, and that call has no network keys.
        secrets_condition = FROM_THE_INSTANCE_ONLY if "secretsmanager" in network.private_services else None
        grant_host_secrets(s, host.role, database, admin, condition=secrets_condition)
        encryption.grant_secrets_use(host.role, region=s.region)
        # Docker's awslogs driver calls CloudWatch Logs through the logs endpoint when the VPC has one.
        logs = AppLogs(
            self, "AppLogs", name_prefix=s.name_prefix, encryption=encryption, retention_days=s.log_retention_days
        )
        logs.grant_write(host.role, condition=FROM_THE_INSTANCE_ONLY if "logs" in network.private_services else None)
        # The host's first step reads the bundle through the S3 gateway endpoint: its grant, the bucket
        # policy, the endpoint (with its routes) and the egress rule exist before any host boots, so
        # the first fetch takes the private path under the bucket's denials.
        read_bundle = host_files.grant_read(host.role)
        launched_after: list[str] = [
            f"{r.terraform_resource_type}.{r.friendly_unique_id}"
            for r in (read_bundle, host_files.policy, network.s3_endpoint, host.s3_egress)
        ]
        if images:
            role = images.grant_assume(host.role)
            launched_after.append(f"{role.terraform_resource_type}.{role.friendly_unique_id}")
        if certificate:
            certificate.grant_read_write(host.role, condition=secrets_condition)
        group = None
        if balancer:
            group = HostGroup(
                self, "Hosts", name_prefix=s.name_prefix, network=network, host=host, balancer=balancer, hosts=s.hosts,
                tags=tags, more_target_group_arns=[front_door.target_group_arn] if front_door else [],
            )  # fmt: skip
            group.group.depends_on = launched_after
        else:
            # The host's first boot reads the bundle (and assumes the image-store role): grants first.
            host.instance.depends_on = launched_after
        if s.alarm_email:
            alarms = Alarms(
                self,
                "Alarms",
                name_prefix=s.name_prefix,
                region=s.region,
                encryption=encryption,
                email=s.alarm_email,
                instance_id=None if balancer else host.instance_id,
                db_identifier=database.identifier,
                db_instance_class=s.db_instance_class,
                db_storage_gb=s.db_storage_gb,
            )
            if balancer:
                for port, target_group in balancer.target_groups.items():
                    alarms.add_unhealthy_targets_alarm(
                        load_balancer=balancer.balancer.arn_suffix,
                        target_group=target_group.arn_suffix,
                        name="dicom" if port == DICOM_TLS_PORT else "web",
                    )
            # The health probe calls CloudWatch through the monitoring endpoint when the VPC has one.
            alarms.grant_publish_health(
                host.role, condition=FROM_THE_INSTANCE_ONLY if "monitoring" in network.private_services else None
            )

        outputs = self._outputs(
            s, host=host, database=database, admin=admin, images=images, balancer=balancer,
            certificate=certificate, group=group, front_door=front_door,
        )  # fmt: skip
        for name, (value, description) in outputs.items():
            TerraformOutput(self, name, value=value, description=description)

    def _image_bucket(self, s: Settings, network: Network, encryption: Encryption) -> ImageBucket:
        return ImageBucket(
            self,
            "Images",
            name_prefix=s.name_prefix,
            region=s.region,
            network=network,
            encryption=encryption,
            deletion_protection=s.deletion_protection,
        )

    @staticmethod
    def _topology_facts(
        s: Settings,
        facts: HostFacts,
        *,
        balancer: Balancer | None,
        certificate: CertificateSecret | None,
        front_door: FrontDoor | None,
    ) -> HostFacts:
        """The facts several hosts (the shared certificate, the NLB) and the front door add."""
        if balancer and certificate:
            site = s.domain_name or s.site_name or balancer.dns_name
            facts = replace(
                facts, tls_secret_arn=certificate.secret_arn, balancer_dns=balancer.dns_name, site_name=site
            )
        if front_door:
            facts = replace(
                facts,
                site_name=str(s.domain_name),
                alb_arn=front_door.alb_arn,
                user_pool_id=front_door.user_pool_id,
                user_pool_client_id=front_door.user_pool_client_id,
                cognito_domain=front_door.cognito_domain,
            )
        return facts

    def _front_door(self, s: Settings, network: Network, encryption: Encryption) -> FrontDoor:
        return FrontDoor(
            self,
            "FrontDoor",
            name_prefix=s.name_prefix,
            region=s.region,
            account_id=encryption.account_id,
            network=network,
            domain_name=str(s.domain_name),
            hosted_zone_id=str(s.hosted_zone_id),
            web_users=s.web_users,
            web_cidrs=s.web_cidrs,
            session_hours=s.session_hours,
            deletion_protection=s.deletion_protection,
            # Several hosts answer the Network Load Balancer's health check; ask it the same way.
            health_port=HEALTH_PORT if s.multi_host else None,
            health_path=HEALTH_PATH if s.multi_host else "/",
        )

    def _balancer(self, s: Settings, network: Network) -> Balancer:
        return Balancer(
            self,
            "Balancer",
            name_prefix=s.name_prefix,
            network=network,
            web_port=HTTPS_PORT if s.https else HTTP_PORT,
            web_cidrs=s.web_cidrs,
            dicom_cidrs=s.dicom_ingress_cidrs,
            deletion_protection=s.deletion_protection,
            # With the Cognito login the web and the site's name belong to the front door: DICOM only here.
            domain_name=None if s.cognito else s.domain_name,
            hosted_zone_id=None if s.cognito else s.hosted_zone_id,
            serve_web=not s.cognito,
        )

    @staticmethod
    def _outputs(
        s: Settings,
        *,
        host: Host,
        database: Database,
        admin: AdminSecret,
        images: ImageBucket | None,
        balancer: Balancer | None,
        certificate: CertificateSecret | None,
        group: HostGroup | None,
        front_door: FrontDoor | None = None,
    ) -> dict[str, tuple[str, str]]:
        """What an operator needs: where to connect, the secrets, and how to reach the host(s)."""
        scheme = "https" if s.https else "http"
        site = s.domain_name or s.site_name or (balancer.dns_name if balancer else host.public_dns)
        outputs: dict[str, tuple[str, str]] = {}
        if balancer:
            outputs["endpoint_dns"] = (balancer.dns_name, "DNS name of the load balancer: the stable endpoint")
        else:
            outputs["host_public_dns"] = (host.public_dns, "Public DNS name of the Orthanc host")
        # DICOM never passes the front door: the NLB's name with several hosts, else the host's.
        dicom_host = (balancer.dns_name if balancer else host.public_dns) if front_door else site
        login = (
            "Cognito login with MFA; each user invited by e-mail"
            if front_door
            else "users' passwords in the admin secret, under users"
        )
        outputs |= {
            "web_url": (f"{scheme}://{site}/", f"Orthanc web UI ({login})"),
            "dicom_endpoint": (f"{s.orthanc_aet}@{dicom_host}:{DICOM_TLS_PORT}", "DICOM TLS endpoint, AET@host:port"),
            "db_endpoint": (database.instance.endpoint, "RDS PostgreSQL endpoint (private, TLS only)"),
            "db_master_secret_arn": (database.master_secret_arn, "Secrets Manager ARN of the RDS-managed master login"),
            "admin_secret_arn": (admin.secret_arn, "Secrets Manager ARN of the web users' passwords"),
        }
        if front_door:
            outputs["site_url"] = (front_door.site_url, "The site behind the Cognito login (the front door's name)")
            outputs["cognito_domain"] = (
                front_door.cognito_domain,
                "Cognito's hosted login domain (its /logout ends the Cognito session)",
            )
        if images:
            outputs["images_bucket"] = (images.bucket_name, "S3 bucket holding the images (the index stays in RDS)")
        if group and certificate:
            return outputs | {
                "autoscaling_group_name": (group.group_name, "Auto Scaling group of the Orthanc hosts"),
                "certificate_secret_arn": (certificate.secret_arn, "Secrets Manager ARN of the shared TLS certificate"),
                "list_hosts_command": (
                    f"aws autoscaling describe-auto-scaling-groups --region {s.region} --auto-scaling-group-names "
                    f"{group.group_name} --query 'AutoScalingGroups[0].Instances[].[InstanceId,AvailabilityZone,"
                    "HealthStatus]' --output table",
                    "List the hosts (then: aws ssm start-session --target <instance id>)",
                ),
            }
        return outputs | {
            "instance_id": (host.instance_id, "EC2 instance id of the Orthanc host"),
            "ssm_session_command": (
                f"aws ssm start-session --region {s.region} --target {host.instance_id}",
                "Open a shell on the host through Session Manager (no SSH needed)",
            ),
        }


def grant_host_secrets(
    settings: Settings,
    role: IamRole,
    database: Database,
    admin: AdminSecret,
    *,
    condition: Mapping[str, Any] | None,
) -> None:
    """The host reads the database's master secret; with Basic logins it also keeps the web users'
    passwords in the admin secret. With Cognito no one has a password on the host: the admin secret
    stays empty, and the host has no grant on it."""
    database.grant_read_master_secret(role, condition=condition)
    if not settings.cognito:
        admin.grant_read_write(role, condition=condition)
