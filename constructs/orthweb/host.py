"""The EC2 host that runs Orthanc behind nginx, bootstrapped by cloud-init."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from cdktf import Fn, TerraformLocal, TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.data_aws_ssm_parameter import DataAwsSsmParameter
from cdktf_cdktf_provider_aws.iam_instance_profile import IamInstanceProfile
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.instance import (
    Instance,
    InstanceEbsBlockDevice,
    InstanceMetadataOptions,
    InstanceRootBlockDevice,
)
from cdktf_cdktf_provider_aws.launch_template import (
    LaunchTemplate,
    LaunchTemplateBlockDeviceMappings,
    LaunchTemplateBlockDeviceMappingsEbs,
    LaunchTemplateIamInstanceProfile,
    LaunchTemplateMetadataOptions,
    LaunchTemplateMonitoring,
    LaunchTemplateNetworkInterfaces,
    LaunchTemplateTagSpecifications,
)
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule

from constructs import Construct
from orthweb import defaults
from orthweb.connections import Connections
from orthweb.encryption import Encryption
from orthweb.network import Network
from orthweb.policy import FROM_THE_INSTANCE_ONLY, assume_role_policy, policy_document, with_condition


class HasConnections(Protocol):
    connections: Connections


HTTPS_PORT = 443
HTTP_PORT = 80
DICOM_TLS_PORT = 11112
DICOM_PORT = 4242
SSH_PORT = 22
# Terraform address of the instance: the runbook's `-target aws_instance.orthweb` relies on it.
INSTANCE_LOGICAL_ID = "orthweb"
AMI_PARAMETER = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-{arch}"
# What the SSM Agent needs for Session Manager, by the endpoint service each action is called on.
# From the Systems Manager User Guide: "Create a custom IAM role for Session Manager" (the
# minimal instance permissions: ssm:UpdateInstanceInformation and the four ssmmessages actions)
# and "Reference: ec2messages, ssmmessages, and other API operations" (the ec2messages actions the
# agent uses to receive commands). Unlike AmazonSSMManagedInstanceCore, nothing here reads SSM
# parameters, documents or associations.
SESSION_MANAGER_ACTIONS: dict[str, tuple[str, ...]] = {
    "ssm": ("ssm:UpdateInstanceInformation",),
    "ssmmessages": (
        "ssmmessages:CreateControlChannel",
        "ssmmessages:CreateDataChannel",
        "ssmmessages:OpenControlChannel",
        "ssmmessages:OpenDataChannel",
    ),
    "ec2messages": (
        "ec2messages:AcknowledgeMessage",
        "ec2messages:DeleteMessage",
        "ec2messages:FailMessage",
        "ec2messages:GetEndpoint",
        "ec2messages:GetMessages",
        "ec2messages:SendReply",
    ),
}
# IMDSv2 PUT response hop limit of the instance and of the launched hosts: 1 keeps instance
# metadata (and the role's credentials) on the host itself, out of every container's reach;
# Orthanc gets its S3 session from a file (orthweb-images), so no container needs metadata.
IMDS_HOP_LIMIT = 1
LAUNCH_TEMPLATE_HOP_LIMIT = IMDS_HOP_LIMIT
# Amazon Linux 2023's root device.
ROOT_DEVICE = "/dev/xvda"
# The archive volume's device name: Amazon Linux 2023's udev rules (amazon-ec2-utils) link it to its
# NVMe device, where orthweb-archives finds it (userdata/bin/orthweb-archives.sh, ORTHWEB_ARCHIVE_DEVICE).
ARCHIVE_DEVICE = "/dev/sdf"


class Host(Construct):
    """One Amazon Linux 2023 instance in a public subnet, replaceable without data loss.

    IMDSv2 only, with a hop limit of 1: the instance role's credentials reach processes of the host
    (the AWS CLI of the host scripts, the Docker daemon's log driver) and never a container, whose
    traffic crosses Docker's bridge, one hop more. Encrypted gp3 root volume, and a second one
    (``archive_volume_gb``) where Orthanc builds archives and media, so no download can fill the
    root volume; reachable from
    outside only on the ports given (HTTPS, DICOM TLS, and SSH only when a key and CIDR are
    configured); managed through Session Manager with the few actions it needs. Its role starts
    with no data access: grant it with the owning constructs' ``grant_*`` methods. The AMI is read
    once at creation and ignored afterwards, so a new Amazon Linux release replaces the host only
    when you choose to.

    With ``launch_template`` the same host is described by a launch template instead of being one
    instance (``hosts`` >= 2: an Auto Scaling group launches it, see :class:`orthweb.fleet.Fleet`):
    same AMI, role, security group, IMDSv2, encrypted volumes and user data; ``tags`` go on
    each instance and volume it launches.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name_prefix: str,
        network: Network,
        encryption: Encryption,
        user_data: str,
        instance_type: str = defaults.INSTANCE_TYPE,
        architecture: str = "arm64",
        root_volume_gb: int = defaults.ROOT_VOLUME_GB,
        archive_volume_gb: int = defaults.ARCHIVE_VOLUME_GB,
        web_cidrs: Sequence[str] = defaults.WEB_CIDRS,
        dicom_cidrs: Sequence[str] = defaults.DICOM_CIDRS,
        https: bool = defaults.HTTPS,
        plain_dicom_in_vpc: bool = defaults.PLAIN_DICOM_IN_VPC,
        move_destinations: Sequence[tuple[str, int]] = (),
        ssh_key_name: str | None = None,
        ssh_cidr: str | None = None,
        launch_template: bool = False,
        tags: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.security_group = SecurityGroup(
            self,
            "SecurityGroup",
            name_prefix=f"{name_prefix}-host-",
            description="Orthanc host: HTTPS and DICOM TLS from allowed networks only",
            vpc_id=network.vpc_id,
            tags={"Name": f"{name_prefix}-host"},
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
        )
        self.security_group_id: str = self.security_group.id
        self.connections = Connections(self, self.security_group.id, "the Orthanc host")
        web_port = HTTPS_PORT if https else HTTP_PORT
        ingress: list[tuple[str, int, str, str]] = [
            *((f"Web{i}", web_port, cidr, "Orthanc web UI and REST API") for i, cidr in enumerate(web_cidrs)),
            *((f"DicomTls{i}", DICOM_TLS_PORT, cidr, "DICOM over TLS") for i, cidr in enumerate(dicom_cidrs)),
        ]
        if plain_dicom_in_vpc:
            ingress.append(("DicomInVpc", DICOM_PORT, network.vpc_cidr, "Plain DICOM from inside the VPC"))
        if ssh_key_name and ssh_cidr:
            ingress.append(("Ssh", SSH_PORT, ssh_cidr, "SSH from the administrator network"))
        self.connections.allow_from_networks(ingress)

        # Out, besides PostgreSQL to the database (connect_to) and C-MOVE to the peers (below):
        # HTTPS, said three times so each destination is explicit. The private endpoints and S3
        # (through the gateway endpoint: the Amazon Linux repositories are S3 buckets in the
        # region) would be enough for AWS APIs and packages; Docker Hub, Docker's package
        # repository and the RDS CA bundle have no fixed address ranges, so HTTPS to anywhere
        # stays (docs/host.md, "Egress"). DNS, NTP and IMDS are link-local VPC services, which
        # security groups do not filter. Each rule is its own resource: adding or removing one
        # never touches the instance.
        def https_out(
            rule_id: str,
            description: str,
            *,
            cidr_ipv4: str | None = None,
            referenced_security_group_id: str | None = None,
            prefix_list_id: str | None = None,
        ) -> VpcSecurityGroupEgressRule:
            return VpcSecurityGroupEgressRule(
                self,
                rule_id,
                security_group_id=self.security_group.id,
                description=description,
                ip_protocol="tcp",
                from_port=HTTPS_PORT,
                to_port=HTTPS_PORT,
                cidr_ipv4=cidr_ipv4,
                referenced_security_group_id=referenced_security_group_id,
                prefix_list_id=prefix_list_id,
            )

        https_out(
            "HttpsToEndpoints",
            "HTTPS to the private AWS API endpoints",
            referenced_security_group_id=network.endpoint_security_group.id,
        )
        # The first boot's first call: the bundle of host files, through the gateway endpoint.
        self.s3_egress = https_out(
            "HttpsToS3",
            "HTTPS to S3 through the gateway endpoint (package repositories)",
            prefix_list_id=network.s3_endpoint.prefix_list_id,
        )
        https_out(
            "HttpsOut",
            "HTTPS to image registries, Docker's repository, the RDS CA bundle, AWS APIs without an endpoint",
            cidr_ipv4="0.0.0.0/0",
        )
        # C-MOVE: Orthanc sends the images to each peer granted move, at its host and port, over
        # DICOM TLS (nginx's relay); only there.
        for i, (address, port) in enumerate(move_destinations):
            VpcSecurityGroupEgressRule(
                self,
                f"DicomMove{i}",
                security_group_id=self.security_group.id,
                description="DICOM TLS to a peer's C-MOVE destination",
                ip_protocol="tcp",
                from_port=port,
                to_port=port,
                cidr_ipv4=f"{address}/32",
            )

        self.role = IamRole(
            self,
            "Role",
            name_prefix=f"{name_prefix}-host-",
            description="Orthanc host: reads its secrets, fills the admin secret, Session Manager",
            assume_role_policy=assume_role_policy("ec2.amazonaws.com"),
        )
        # Session Manager, in place of AmazonSSMManagedInstanceCore. Where the VPC has the
        # service's interface endpoint, the agent's calls go through it and carry the
        # from-the-instance condition (policy.FROM_THE_INSTANCE_ONLY); over the public endpoint
        # the condition's keys are absent and would refuse the agent, so it is left out there.
        IamRolePolicy(
            self,
            "SessionManager",
            role=self.role.id,
            name="session-manager",
            policy=policy_document(
                *(
                    with_condition(
                        {"Sid": f"SessionManager{service.capitalize()}", "Action": list(actions), "Resource": "*"},
                        FROM_THE_INSTANCE_ONLY if service in network.private_services else None,
                    )
                    for service, actions in SESSION_MANAGER_ACTIONS.items()
                )
            ),
        )
        profile = IamInstanceProfile(self, "Profile", name_prefix=f"{name_prefix}-host-", role=self.role.name)

        # The cloud-config (the facts and the bundle's fetch step) is gzipped by Terraform at plan time,
        # after filling in the facts: compressing in Python would tie the bytes to the local zlib
        # build, and another build on a colleague's machine would plan a host replacement.
        user_data_local = TerraformLocal(self, "UserData", user_data)
        ami = DataAwsSsmParameter(self, "Ami", name=AMI_PARAMETER.format(arch=architecture))
        if launch_template:
            self.launch_template = self._launch_template(
                name_prefix=name_prefix,
                image_id=ami.value,
                instance_type=instance_type,
                profile_name=profile.name,
                key_name=ssh_key_name if ssh_key_name and ssh_cidr else None,
                root_volume_gb=root_volume_gb,
                archive_volume_gb=archive_volume_gb,
                key_arn=encryption.key_arn,
                user_data=Fn.base64gzip(user_data_local.as_string),
                tags={**(tags or {}), "Name": f"{name_prefix}-host"},
            )
            return
        self.instance = Instance(
            self,
            "Instance",
            ami=ami.value,
            instance_type=instance_type,
            subnet_id=network.public_subnet_ids[0],
            vpc_security_group_ids=[self.security_group.id],
            associate_public_ip_address=True,
            iam_instance_profile=profile.name,
            key_name=ssh_key_name if ssh_key_name and ssh_cidr else None,
            ebs_optimized=True,
            monitoring=False,
            metadata_options=InstanceMetadataOptions(
                http_endpoint="enabled",
                http_tokens="required",
                # 1: a container's request to IMDS crosses Docker's bridge and never gets a token.
                http_put_response_hop_limit=IMDS_HOP_LIMIT,
                instance_metadata_tags="disabled",
            ),
            root_block_device=InstanceRootBlockDevice(
                volume_type="gp3",
                volume_size=root_volume_gb,
                encrypted=True,
                kms_key_id=encryption.key_arn,
                delete_on_termination=True,
            ),
            # A new size replaces the host (EC2 attaches these volumes at launch only); its content
            # is temporary (archives being built and the last finished one), so nothing is lost.
            ebs_block_device=[
                InstanceEbsBlockDevice(
                    device_name=ARCHIVE_DEVICE,
                    volume_type="gp3",
                    volume_size=archive_volume_gb,
                    encrypted=True,
                    kms_key_id=encryption.key_arn,
                    delete_on_termination=True,
                )
            ],
            user_data_base64=Fn.base64gzip(user_data_local.as_string),
            # cloud-init runs once per instance: a changed bootstrap takes effect on a new host.
            user_data_replace_on_change=True,
            lifecycle=TerraformResourceLifecycle(ignore_changes=["ami"]),
            tags={"Name": f"{name_prefix}-host"},
        )
        self.instance.override_logical_id(INSTANCE_LOGICAL_ID)
        self.instance_id: str = self.instance.id
        self.public_dns: str = self.instance.public_dns

    def _launch_template(
        self,
        *,
        name_prefix: str,
        image_id: str,
        instance_type: str,
        profile_name: str,
        key_name: str | None,
        root_volume_gb: int,
        archive_volume_gb: int,
        key_arn: str,
        user_data: str,
        tags: Mapping[str, str],
    ) -> LaunchTemplate:
        """The instance above, as a launch template. Its AMI is ignored after creation like the
        instance's: a new Amazon Linux release rolls the group only when you replace the template."""
        return LaunchTemplate(
            self,
            "LaunchTemplate",
            name_prefix=f"{name_prefix}-host-",
            description="Orthanc host: Amazon Linux 2023, IMDSv2 only, encrypted root volume",
            image_id=image_id,
            instance_type=instance_type,
            iam_instance_profile=LaunchTemplateIamInstanceProfile(name=profile_name),
            key_name=key_name,
            ebs_optimized="true",
            monitoring=LaunchTemplateMonitoring(enabled=False),
            # A public address for egress (images, packages, AWS APIs) without a NAT gateway; the
            # security group admits nothing from the internet but what comes through the balancer.
            network_interfaces=[
                LaunchTemplateNetworkInterfaces(
                    device_index=0,
                    associate_public_ip_address="true",
                    delete_on_termination="true",
                    security_groups=[self.security_group.id],
                )
            ],
            metadata_options=LaunchTemplateMetadataOptions(
                http_endpoint="enabled",
                http_tokens="required",
                http_put_response_hop_limit=LAUNCH_TEMPLATE_HOP_LIMIT,
                instance_metadata_tags="disabled",
            ),
            # The root volume and the archive volume, alike but for their size.
            block_device_mappings=[
                LaunchTemplateBlockDeviceMappings(
                    device_name=device,
                    ebs=LaunchTemplateBlockDeviceMappingsEbs(
                        volume_type="gp3",
                        volume_size=size,
                        encrypted="true",
                        kms_key_id=key_arn,
                        delete_on_termination="true",
                    ),
                )
                for device, size in ((ROOT_DEVICE, root_volume_gb), (ARCHIVE_DEVICE, archive_volume_gb))
            ],
            user_data=user_data,
            tag_specifications=[
                LaunchTemplateTagSpecifications(resource_type=kind, tags=dict(tags))
                for kind in ("instance", "volume", "network-interface")
            ],
            update_default_version=True,
            lifecycle=TerraformResourceLifecycle(ignore_changes=["image_id"]),
            tags={"Name": f"{name_prefix}-host"},
        )

    def connect_to(
        self, other: HasConnections, port: int | None = None
    ) -> tuple[VpcSecurityGroupEgressRule, VpcSecurityGroupIngressRule]:
        """Let the host open connections to ``other`` (on its default port): both rules, in one call."""
        return self.connections.allow_to(other.connections, port)
