"""VPC with public and private subnets, private AWS endpoints and flow logs."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from cdktf import Fn
from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.data_aws_availability_zones import (
    DataAwsAvailabilityZones,
    DataAwsAvailabilityZonesFilter,
)
from cdktf_cdktf_provider_aws.default_security_group import DefaultSecurityGroup
from cdktf_cdktf_provider_aws.flow_log import FlowLog
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.internet_gateway import InternetGateway
from cdktf_cdktf_provider_aws.route import Route
from cdktf_cdktf_provider_aws.route_table import RouteTable
from cdktf_cdktf_provider_aws.route_table_association import RouteTableAssociation
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.subnet import Subnet
from cdktf_cdktf_provider_aws.vpc import Vpc
from cdktf_cdktf_provider_aws.vpc_endpoint import VpcEndpoint
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule

from constructs import Construct
from orthweb import defaults
from orthweb.encryption import Encryption
from orthweb.policy import assume_role_policy, grant


def subnet_cidrs(vpc_cidr: str, az_count: int) -> tuple[list[str], list[str]]:
    """Carve the VPC into eight equal blocks: public subnets first, private ones from the middle."""
    blocks = list(ipaddress.IPv4Network(vpc_cidr).subnets(prefixlen_diff=3))
    return [str(b) for b in blocks[:az_count]], [str(b) for b in blocks[4 : 4 + az_count]]


class Network(Construct):
    """A VPC spread over ``az_count`` zones.

    Public subnets route to an internet gateway and hold only the Orthanc host; private subnets
    have no route out and hold the database and the interface endpoints. The host reaches Secrets
    Manager through a private endpoint (443 from inside the VPC only) and S3 through a gateway
    endpoint. Rejected and accepted traffic is logged to a KMS-encrypted log group. The default
    security group allows nothing, so a resource launched without one is isolated.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name_prefix: str,
        region: str,
        encryption: Encryption,
        vpc_cidr: str = defaults.VPC_CIDR,
        az_count: int = defaults.AZ_COUNT,
        interface_endpoints: Sequence[str] = defaults.INTERFACE_ENDPOINTS,
        endpoints_in_all_azs: bool = defaults.ENDPOINTS_IN_ALL_AZS,
        log_retention_days: int = defaults.LOG_RETENTION_DAYS,
    ) -> None:
        super().__init__(scope, id_)
        self.vpc_cidr = vpc_cidr
        # Regular zones only (no opted-in Local Zones), and no `state` filter: a zone that is briefly
        # impaired must not shift the index-based zone choice below and replace the subnets.
        azs = DataAwsAvailabilityZones(
            self,
            "Zones",
            filter=[DataAwsAvailabilityZonesFilter(name="opt-in-status", values=["opt-in-not-required"])],
        )
        self.vpc = Vpc(
            self,
            "Vpc",
            cidr_block=vpc_cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags={"Name": f"{name_prefix}-vpc"},
        )
        self.vpc_id: str = self.vpc.id
        # Take over the default security group with no rules: nothing in, nothing out.
        DefaultSecurityGroup(
            self, "DefaultSecurityGroup", vpc_id=self.vpc.id, tags={"Name": f"{name_prefix}-default-deny"}
        )

        igw = InternetGateway(self, "InternetGateway", vpc_id=self.vpc.id, tags={"Name": f"{name_prefix}-igw"})
        public_rt = RouteTable(self, "PublicRoutes", vpc_id=self.vpc.id, tags={"Name": f"{name_prefix}-public"})
        Route(
            self,
            "PublicDefaultRoute",
            route_table_id=public_rt.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
        )
        private_rt = RouteTable(self, "PrivateRoutes", vpc_id=self.vpc.id, tags={"Name": f"{name_prefix}-private"})

        public_cidrs, private_cidrs = subnet_cidrs(vpc_cidr, az_count)
        self.public_subnets: list[Subnet] = []
        self.private_subnets: list[Subnet] = []
        for i in range(az_count):
            az = Fn.element(azs.names, i)
            public = Subnet(
                self,
                f"Public{i}",
                vpc_id=self.vpc.id,
                cidr_block=public_cidrs[i],
                availability_zone=az,
                # The host asks for its public address explicitly; nothing else gets one by accident.
                map_public_ip_on_launch=False,
                tags={"Name": f"{name_prefix}-public-{i}", "Tier": "public"},
            )
            private = Subnet(
                self,
                f"Private{i}",
                vpc_id=self.vpc.id,
                cidr_block=private_cidrs[i],
                availability_zone=az,
                map_public_ip_on_launch=False,
                tags={"Name": f"{name_prefix}-private-{i}", "Tier": "private"},
            )
            RouteTableAssociation(self, f"Public{i}Routes", subnet_id=public.id, route_table_id=public_rt.id)
            RouteTableAssociation(self, f"Private{i}Routes", subnet_id=private.id, route_table_id=private_rt.id)
            self.public_subnets.append(public)
            self.private_subnets.append(private)
        self.public_subnet_ids: list[str] = [s.id for s in self.public_subnets]
        self.private_subnet_ids: list[str] = [s.id for s in self.private_subnets]

        self.s3_endpoint = VpcEndpoint(
            self,
            "S3Endpoint",
            vpc_id=self.vpc.id,
            service_name=f"com.amazonaws.{region}.s3",
            vpc_endpoint_type="Gateway",
            route_table_ids=[public_rt.id, private_rt.id],
            tags={"Name": f"{name_prefix}-s3"},
        )
        self.s3_endpoint_id: str = self.s3_endpoint.id

        self.endpoint_security_group = SecurityGroup(
            self,
            "EndpointSecurityGroup",
            name_prefix=f"{name_prefix}-endpoints-",
            description="Private AWS API endpoints: HTTPS from inside the VPC only",
            vpc_id=self.vpc.id,
            tags={"Name": f"{name_prefix}-endpoints"},
        )
        VpcSecurityGroupIngressRule(
            self,
            "EndpointHttpsFromVpc",
            security_group_id=self.endpoint_security_group.id,
            description="HTTPS to AWS APIs from inside the VPC",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4=vpc_cidr,
        )
        # The host lives in the first zone; its endpoints are there unless every zone is asked for.
        endpoint_subnets = self.private_subnet_ids if endpoints_in_all_azs else self.private_subnet_ids[:1]
        self.interface_endpoints: dict[str, VpcEndpoint] = {}
        for service in ("secretsmanager", *interface_endpoints):
            self.interface_endpoints[service] = VpcEndpoint(
                self,
                f"Endpoint-{service}",
                vpc_id=self.vpc.id,
                service_name=f"com.amazonaws.{region}.{service}",
                vpc_endpoint_type="Interface",
                private_dns_enabled=True,
                subnet_ids=endpoint_subnets,
                security_group_ids=[self.endpoint_security_group.id],
                tags={"Name": f"{name_prefix}-{service}"},
            )
        # What the VPC reaches without the internet: the gateway endpoint, the interface endpoints.
        self.private_services: frozenset[str] = frozenset({"s3", *self.interface_endpoints})

        self.flow_log_group = CloudwatchLogGroup(
            self,
            "FlowLogGroup",
            name=f"/{name_prefix}/vpc-flow-logs",
            retention_in_days=log_retention_days,
            kms_key_id=encryption.key_arn,
        )
        flow_role = IamRole(
            self,
            "FlowLogRole",
            name_prefix=f"{name_prefix}-flowlogs-",
            assume_role_policy=assume_role_policy(
                "vpc-flow-logs.amazonaws.com", StringEquals={"aws:SourceAccount": encryption.account_id}
            ),
        )
        grant(
            self,
            "FlowLogDelivery",
            role=flow_role,
            name="deliver-to-flow-log-group",
            statement={
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                "Resource": f"{self.flow_log_group.arn}:*",
            },
        )
        FlowLog(
            self,
            "FlowLog",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=self.flow_log_group.arn,
            iam_role_arn=flow_role.arn,
            max_aggregation_interval=600,
        )
