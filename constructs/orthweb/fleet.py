"""Several Orthanc hosts behind one stable endpoint (``hosts`` >= 2): a Network Load Balancer
(:class:`Balancer`) in front of an Auto Scaling group (:class:`HostGroup`) that launches the
host's launch template across the zones."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cdktf import Token
from cdktf_cdktf_provider_aws.autoscaling_group import (
    AutoscalingGroup,
    AutoscalingGroupInstanceMaintenancePolicy,
    AutoscalingGroupInstanceRefresh,
    AutoscalingGroupInstanceRefreshPreferences,
    AutoscalingGroupLaunchTemplate,
    AutoscalingGroupTag,
)
from cdktf_cdktf_provider_aws.lb import Lb
from cdktf_cdktf_provider_aws.lb_listener import LbListener, LbListenerDefaultAction
from cdktf_cdktf_provider_aws.lb_target_group import LbTargetGroup, LbTargetGroupHealthCheck
from cdktf_cdktf_provider_aws.route53_record import Route53Record, Route53RecordAlias
from cdktf_cdktf_provider_aws.security_group import SecurityGroup

from constructs import Construct
from orthweb import capacity, defaults
from orthweb.connections import Connections
from orthweb.host import DICOM_TLS_PORT, HTTPS_PORT, Host
from orthweb.network import Network

# The hosts' health endpoint (orthweb-health.socket): 200 only when nginx, Orthanc and the
# database all answer a real request.
HEALTH_PORT = 8099
HEALTH_PATH = "/healthz"
# A new host installs Docker, pulls two images and starts Orthanc: give it this long before its
# health counts, and count it in service this long after it first passes.
BOOT_GRACE_SECONDS = 600
WARMUP_SECONDS = 120
# How long a host being replaced keeps its open DICOM associations and web requests.
DRAIN_SECONDS = 300


class Balancer(Construct):
    """The deployment's one stable endpoint: an internet-facing Network Load Balancer.

    - It spans the public subnets of every zone, with cross-zone balancing so each host gets an
      even share whatever its zone. It forwards TCP, so TLS stays end to end: nginx on each host
      terminates HTTPS and DICOM TLS with the one shared certificate and can still ask DICOM
      peers for client certificates. Instance targets keep the client's address.
    - Its security group admits the web port from ``web_cidrs`` and DICOM TLS from the DICOM
      peers' networks (``dicom_cidrs``) only; a host admits those ports (and its health port) from
      this group only (:class:`HostGroup`).
    - Health checks ask each host's health endpoint over HTTP, which answers 200 only when a real
      request passes nginx, Orthanc and the database; an unhealthy host gets no new connections.
    - :attr:`dns_name` is stable for the deployment's life; with ``domain_name`` and
      ``hosted_zone_id``, an alias record in that zone points at it.
    - With ``serve_web`` false (``login = "cognito"``: the web goes through the front door's
      Application Load Balancer, :mod:`orthweb.front_door`) it carries DICOM TLS only.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name_prefix: str,
        network: Network,
        web_port: int = HTTPS_PORT,
        web_cidrs: Sequence[str] = defaults.WEB_CIDRS,
        dicom_cidrs: Sequence[str] = defaults.DICOM_CIDRS,
        deletion_protection: bool = defaults.DELETION_PROTECTION,
        domain_name: str | None = None,
        hosted_zone_id: str | None = None,
        serve_web: bool = True,
    ) -> None:
        super().__init__(scope, id_)
        self.web_port = web_port
        self.security_group = SecurityGroup(
            self,
            "SecurityGroup",
            name_prefix=f"{name_prefix}-nlb-",
            description="Orthanc load balancer: HTTPS and DICOM TLS from allowed networks only",
            vpc_id=network.vpc_id,
            tags={"Name": f"{name_prefix}-nlb"},
            lifecycle={"create_before_destroy": True},
        )
        self.connections = Connections(self, self.security_group.id, "the Orthanc load balancer")
        what = "Orthanc web UI and REST API" if web_port == HTTPS_PORT else "Orthanc web UI (plain HTTP)"
        ingress = [
            *((f"Web{i}", web_port, cidr, what) for i, cidr in enumerate(web_cidrs if serve_web else ())),
            *((f"DicomTls{i}", DICOM_TLS_PORT, cidr, "DICOM over TLS") for i, cidr in enumerate(dicom_cidrs)),
        ]
        self.connections.allow_from_networks(ingress)

        self.balancer = Lb(
            self,
            "Balancer",
            name=f"{name_prefix}-nlb",
            load_balancer_type="network",
            internal=False,
            subnets=network.public_subnet_ids,
            security_groups=[self.security_group.id],
            enable_cross_zone_load_balancing=True,
            enable_deletion_protection=deletion_protection,
            tags={"Name": f"{name_prefix}-nlb"},
        )
        self.dns_name: str = self.balancer.dns_name

        self.target_groups: dict[int, LbTargetGroup] = {}
        served = (("web", web_port), ("dicom", DICOM_TLS_PORT)) if serve_web else (("dicom", DICOM_TLS_PORT),)
        for name, port in served:
            group = LbTargetGroup(
                self,
                f"{name.title()}Targets",
                name_prefix=f"{name[:4]}-",
                port=port,
                protocol="TCP",
                target_type="instance",
                vpc_id=network.vpc_id,
                preserve_client_ip="true",
                deregistration_delay=str(DRAIN_SECONDS),
                health_check=LbTargetGroupHealthCheck(
                    enabled=True,
                    protocol="HTTP",
                    port=str(HEALTH_PORT),
                    path=HEALTH_PATH,
                    matcher="200",
                    interval=10,
                    timeout=6,
                    healthy_threshold=3,
                    unhealthy_threshold=2,
                ),
                lifecycle={"create_before_destroy": True},
                tags={"Name": f"{name_prefix}-{name}"},
            )
            LbListener(
                self,
                f"{name.title()}Listener",
                load_balancer_arn=self.balancer.arn,
                port=port,
                protocol="TCP",
                default_action=[LbListenerDefaultAction(type="forward", target_group_arn=group.arn)],
            )
            self.target_groups[port] = group

        if domain_name and hosted_zone_id:
            Route53Record(
                self,
                "Alias",
                zone_id=hosted_zone_id,
                name=domain_name,
                type="A",
                alias=Route53RecordAlias(
                    name=self.balancer.dns_name, zone_id=self.balancer.zone_id, evaluate_target_health=True
                ),
            )


class HostGroup(Construct):
    """``hosts`` instances of a :class:`~orthweb.host.Host` launch template behind a :class:`Balancer`.

    - The group keeps ``hosts`` instances spread over the zones' public subnets, registered with
      the balancer's target groups, and replaces a host whose health check fails (after a boot
      grace period: a new host installs Docker and pulls two images first).
    - The hosts' security group admits the web port, DICOM TLS and the health port from the
      balancer's security group only: a host has a public address for its own egress (no NAT
      gateway to pay for), but nothing on the internet reaches it except through the balancer.
    - A changed launch template (user data, instance type...) rolls the group: an instance refresh
      that launches a replacement before it terminates an old host (minimum healthy 100%, one
      extra host at a time); replacing an unhealthy host does the same.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name_prefix: str,
        network: Network,
        host: Host,
        balancer: Balancer,
        hosts: int,
        tags: Mapping[str, str] | None = None,
        more_target_group_arns: Sequence[str] = (),
    ) -> None:
        super().__init__(scope, id_)
        for port in (*balancer.target_groups, HEALTH_PORT):
            balancer.connections.allow_to(host.connections, port)
        surge = capacity.surge_percentage(hosts)
        self.group = AutoscalingGroup(
            self,
            "Group",
            name_prefix=f"{name_prefix}-hosts-",
            min_size=hosts,
            max_size=hosts,
            desired_capacity=hosts,
            vpc_zone_identifier=network.public_subnet_ids,
            # The latest version: a changed template starts the instance refresh below.
            launch_template=AutoscalingGroupLaunchTemplate(
                id=host.launch_template.id, version=Token.as_string(host.launch_template.latest_version)
            ),
            # ``more_target_group_arns``: the front door's (login = "cognito").
            target_group_arns=[*(g.arn for g in balancer.target_groups.values()), *more_target_group_arns],
            health_check_type="ELB",
            health_check_grace_period=BOOT_GRACE_SECONDS,
            default_instance_warmup=WARMUP_SECONDS,
            # Replacing an unhealthy host, too, launches the new one first.
            instance_maintenance_policy=AutoscalingGroupInstanceMaintenancePolicy(
                min_healthy_percentage=100, max_healthy_percentage=surge
            ),
            instance_refresh=AutoscalingGroupInstanceRefresh(
                strategy="Rolling",
                preferences=AutoscalingGroupInstanceRefreshPreferences(
                    min_healthy_percentage=100,
                    max_healthy_percentage=surge,
                    instance_warmup=str(WARMUP_SECONDS),
                    skip_matching=False,
                ),
            ),
            tag=[
                AutoscalingGroupTag(key=k, value=v, propagate_at_launch=False)
                for k, v in {**(tags or {}), "Name": f"{name_prefix}-hosts"}.items()
            ],
        )
        self.group_name: str = self.group.name
