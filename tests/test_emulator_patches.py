"""orthweb_dev.emulator: each fidelity patch, proved with boto3 against the patched server on loopback."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from orthweb_dev import emulator
from orthweb_dev.emulator_server import moto_server

pytestmark = pytest.mark.emulator


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_server(patched=True) as server:
        yield server.endpoint


def _client(endpoint: str, service: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_every_patch_is_listed_and_applies() -> None:
    names = [p.name for p in emulator.FIDELITY_PATCHES]
    assert len(names) == len(set(names))
    assert emulator.apply_patches() == names
    assert len(emulator.patches_table().splitlines()) == len(names) + 2


def test_kms_rotation_period(endpoint: str) -> None:
    kms = _client(endpoint, "kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    assert "RotationPeriodInDays" not in kms.get_key_rotation_status(KeyId=key_id)
    kms.enable_key_rotation(KeyId=key_id)
    assert kms.get_key_rotation_status(KeyId=key_id)["RotationPeriodInDays"] == 365
    kms.enable_key_rotation(KeyId=key_id, RotationPeriodInDays=90)
    status = kms.get_key_rotation_status(KeyId=key_id)
    assert status["KeyRotationEnabled"] is True
    assert status["RotationPeriodInDays"] == 90


def test_rds_engine_lifecycle_support_and_parameter_source(endpoint: str) -> None:
    rds = _client(endpoint, "rds")
    rds.create_db_parameter_group(DBParameterGroupName="pg", DBParameterGroupFamily="postgres17", Description="d")
    rds.modify_db_parameter_group(
        DBParameterGroupName="pg",
        Parameters=[{"ParameterName": "rds.force_ssl", "ParameterValue": "1", "ApplyMethod": "pending-reboot"}],
    )
    user = rds.describe_db_parameters(DBParameterGroupName="pg", Source="user")["Parameters"]
    assert [(p["ParameterName"], p["Source"]) for p in user] == [("rds.force_ssl", "user")]
    assert rds.describe_db_parameters(DBParameterGroupName="pg", Source="system")["Parameters"] == []

    common = {"DBInstanceClass": "db.t4g.micro", "Engine": "postgres", "AllocatedStorage": 20}
    common |= {"MasterUsername": "admin1", "MasterUserPassword": "not-a-secret-1"}
    rds.create_db_instance(
        DBInstanceIdentifier="a", EngineLifecycleSupport="open-source-rds-extended-support-disabled", **common
    )
    rds.create_db_instance(DBInstanceIdentifier="b", **common)
    got = {
        d["DBInstanceIdentifier"]: d.get("EngineLifecycleSupport") for d in rds.describe_db_instances()["DBInstances"]
    }
    assert got == {"a": "open-source-rds-extended-support-disabled", "b": "open-source-rds-extended-support"}


def test_rds_default_ca_is_the_one_rds_gives_new_instances(endpoint: str) -> None:
    rds = _client(endpoint, "rds")
    common = {"DBInstanceClass": "db.t4g.micro", "Engine": "postgres", "AllocatedStorage": 20}
    common |= {"MasterUsername": "admin1", "MasterUserPassword": "not-a-secret-1"}
    created = rds.create_db_instance(DBInstanceIdentifier="ca-default", **common)["DBInstance"]
    assert created["CACertificateIdentifier"] == emulator.RDS_DEFAULT_CA == "rds-ca-rsa2048-g1"
    chosen = rds.create_db_instance(
        DBInstanceIdentifier="ca-chosen", CACertificateIdentifier="rds-ca-ecc384-g1", **common
    )["DBInstance"]
    assert chosen["CACertificateIdentifier"] == "rds-ca-ecc384-g1"


def test_ec2_instance_groups_and_group_rule_description(endpoint: str) -> None:
    ec2 = _client(endpoint, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    host = ec2.create_security_group(GroupName="host", Description="h", VpcId=vpc)["GroupId"]
    db = ec2.create_security_group(GroupName="db", Description="d", VpcId=vpc)["GroupId"]

    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    nic = {"DeviceIndex": 0, "SubnetId": subnet, "Groups": [host], "AssociatePublicIpAddress": True}
    ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, NetworkInterfaces=[nic])
    instance = ec2.describe_instances()["Reservations"][0]["Instances"][0]
    assert [g["GroupId"] for g in instance["SecurityGroups"]] == [host]

    pair = {"GroupId": host, "Description": "5432 from the host"}
    perm = {"IpProtocol": "tcp", "FromPort": 5432, "ToPort": 5432, "UserIdGroupPairs": [pair]}
    rule_id = ec2.authorize_security_group_ingress(GroupId=db, IpPermissions=[perm])["SecurityGroupRules"][0]
    rules = ec2.describe_security_group_rules(SecurityGroupRuleIds=[rule_id["SecurityGroupRuleId"]])
    assert rules["SecurityGroupRules"][0]["Description"] == "5432 from the host"
    assert rules["SecurityGroupRules"][0]["ReferencedGroupInfo"]["GroupId"] == host


def test_autoscaling_keeps_default_warmup_and_maintenance_policy(endpoint: str) -> None:
    ec2, autoscaling = _client(endpoint, "ec2"), _client(endpoint, "autoscaling")
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.8.1.0/24")["Subnet"]["SubnetId"]
    image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.create_launch_template(LaunchTemplateName="lt-asg", LaunchTemplateData={"ImageId": image})
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="g",
        MinSize=0,
        MaxSize=2,
        DesiredCapacity=0,
        VPCZoneIdentifier=subnet,
        LaunchTemplate={"LaunchTemplateName": "lt-asg", "Version": "$Latest"},
        DefaultInstanceWarmup=120,
        InstanceMaintenancePolicy={"MinHealthyPercentage": 100, "MaxHealthyPercentage": 150},
    )
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["g"])["AutoScalingGroups"]
    assert group["DefaultInstanceWarmup"] == 120
    assert group["InstanceMaintenancePolicy"] == {"MinHealthyPercentage": 100, "MaxHealthyPercentage": 150}
    autoscaling.update_auto_scaling_group(
        AutoScalingGroupName="g", InstanceMaintenancePolicy={"MinHealthyPercentage": 90, "MaxHealthyPercentage": 110}
    )
    (group,) = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["g"])["AutoScalingGroups"]
    assert group["InstanceMaintenancePolicy"] == {"MinHealthyPercentage": 90, "MaxHealthyPercentage": 110}
    assert group["DefaultInstanceWarmup"] == 120


def test_launch_template_own_tags_stay_off_what_it_launches(endpoint: str) -> None:
    ec2 = _client(endpoint, "ec2")
    launched = [{"ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "host"}]}]
    created = ec2.create_launch_template(
        LaunchTemplateName="lt-tags",
        LaunchTemplateData={"InstanceType": "t4g.small", "TagSpecifications": launched},
        TagSpecifications=[{"ResourceType": "launch-template", "Tags": [{"Key": "Owner", "Value": "radiology"}]}],
    )["LaunchTemplate"]
    assert {"Key": "Owner", "Value": "radiology"} in created["Tags"]
    (version,) = ec2.describe_launch_template_versions(LaunchTemplateName="lt-tags")["LaunchTemplateVersions"]
    specs = version["LaunchTemplateData"]["TagSpecifications"]
    assert [s["ResourceType"] for s in specs] == ["instance"]
    assert specs[0]["Tags"] == [{"Key": "Name", "Value": "host"}]


def test_ec2_prefix_list_rule_description(endpoint: str) -> None:
    ec2 = _client(endpoint, "ec2")
    vpc = ec2.create_vpc(CidrBlock="10.8.0.0/16")["Vpc"]["VpcId"]
    host = ec2.create_security_group(GroupName="host-pl", Description="h", VpcId=vpc)["GroupId"]
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    endpoint_ = ec2.create_vpc_endpoint(
        VpcId=vpc, ServiceName="com.amazonaws.us-east-1.s3", VpcEndpointType="Gateway", RouteTableIds=[table]
    )["VpcEndpoint"]
    prefix_list = next(
        p["PrefixListId"] for p in ec2.describe_prefix_lists()["PrefixLists"] if p["PrefixListName"].endswith(".s3")
    )
    assert endpoint_["VpcEndpointId"]
    pair = {"PrefixListId": prefix_list, "Description": "HTTPS to S3"}
    perm = {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "PrefixListIds": [pair]}
    rule = ec2.authorize_security_group_egress(GroupId=host, IpPermissions=[perm])["SecurityGroupRules"][0]
    (described,) = ec2.describe_security_group_rules(SecurityGroupRuleIds=[rule["SecurityGroupRuleId"]])[
        "SecurityGroupRules"
    ]
    assert described["PrefixListId"] == prefix_list
    assert described["Description"] == "HTTPS to S3"


def test_rds_unique_resource_id(endpoint: str) -> None:
    rds = _client(endpoint, "rds")
    common = {"DBInstanceClass": "db.t4g.micro", "Engine": "postgres", "AllocatedStorage": 20}
    common |= {"MasterUsername": "admin1", "MasterUserPassword": "not-a-secret-1"}
    rds.create_db_instance(DBInstanceIdentifier="first", **common)
    rds.create_db_snapshot(DBInstanceIdentifier="first", DBSnapshotIdentifier="first-snap")
    rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="restored", DBSnapshotIdentifier="first-snap")
    ids = {d["DBInstanceIdentifier"]: d["DbiResourceId"] for d in rds.describe_db_instances()["DBInstances"]}
    assert ids["first"] != ids["restored"]
    assert all(len(i) == 29 and i.startswith("db-") for i in ids.values())
    # What the AWS provider does to find an instance by its ID:
    found = rds.describe_db_instances(Filters=[{"Name": "dbi-resource-id", "Values": [ids["restored"]]}])
    assert [d["DBInstanceIdentifier"] for d in found["DBInstances"]] == ["restored"]


def test_rds_restore_master_secret(endpoint: str) -> None:
    rds, secrets = _client(endpoint, "rds"), _client(endpoint, "secretsmanager")
    common = {"DBInstanceClass": "db.t4g.micro", "Engine": "postgres", "AllocatedStorage": 20}
    rds.create_db_instance(
        DBInstanceIdentifier="managed", MasterUsername="admin1", ManageMasterUserPassword=True, **common
    )
    rds.create_db_snapshot(DBInstanceIdentifier="managed", DBSnapshotIdentifier="managed-snap")
    before = {s["ARN"] for s in secrets.list_secrets()["SecretList"]}
    plain = rds.restore_db_instance_from_db_snapshot(DBInstanceIdentifier="plain", DBSnapshotIdentifier="managed-snap")
    assert "MasterUserSecret" not in plain["DBInstance"]
    assert {s["ARN"] for s in secrets.list_secrets()["SecretList"]} == before  # no secret nobody asked for
    asked = rds.restore_db_instance_from_db_snapshot(
        DBInstanceIdentifier="asked", DBSnapshotIdentifier="managed-snap", ManageMasterUserPassword=True
    )
    assert asked["DBInstance"]["MasterUserSecret"]["SecretArn"] not in before


def test_s3_deny_on_request_context_moto_lacks_applies_only_when_its_condition_holds(endpoint: str) -> None:
    s3 = _client(endpoint, "s3")
    s3.create_bucket(Bucket="conditional-deny")
    s3.put_object(Bucket="conditional-deny", Key="k", Body=b"bytes")
    deny = {"Effect": "Deny", "Principal": "*", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::conditional-deny/*"}
    other_accounts = {**deny, "Condition": {"StringNotEquals": {"aws:PrincipalAccount": "123456789012"}}}
    s3.put_bucket_policy(Bucket="conditional-deny", Policy=json.dumps({"Statement": [other_accounts]}))
    assert s3.get_object(Bucket="conditional-deny", Key="k")["Body"].read() == b"bytes"
    # A Deny with no condition, or on a key the patch does not know, still refuses, as in moto.
    for statement in (deny, {**deny, "Condition": {"StringEquals": {"s3:ExistingObjectTag/x": "y"}}}):
        s3.put_bucket_policy(Bucket="conditional-deny", Policy=json.dumps({"Statement": [statement]}))
        with pytest.raises(ClientError) as refused:
            s3.get_object(Bucket="conditional-deny", Key="k")
        assert refused.value.response["Error"]["Code"] in ("403", "AccessDenied")
