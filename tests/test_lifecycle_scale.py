"""Three hosts behind the load balancer with images in S3, driven with plain `terraform` against the
local AWS emulator: apply with well-formed outputs and the hosts spread over the zones, a clean second
plan, a changed launch template that touches only the template and the group (which then rolls),
and a destroy that leaves nothing behind. Tests run in file order and share one deployment."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orthweb_dev.emulator_server import REGION
from orthweb_dev.synth import SCALED_SETTINGS, synthesize

pytestmark = pytest.mark.lifecycle

# The scaled topology, with what a throwaway deployment needs to tear down, and no Route 53 zone.
SETTINGS = {
    **{k: v for k, v in SCALED_SETTINGS.items() if k not in ("domain_name", "hosted_zone_id")},
    "deletion_protection": False,
}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(SETTINGS, tmp_path_factory.mktemp("lifecycle-scale"))[1]


@pytest.fixture(scope="module")
def tf(workdir: Path, timed_terraform: Any) -> Any:
    return timed_terraform(workdir, "{step} (3 hosts, images in S3)", timeout=1200)


def state_resources(workdir: Path) -> dict[str, dict[str, Any]]:
    path = Path(json.loads((workdir / "cdk.tf.json").read_text())["terraform"]["backend"]["local"]["path"])
    found = {}
    for r in json.loads(path.read_text())["resources"]:
        if r["mode"] == "managed":
            for inst in r["instances"]:
                found[f"{r['type']}.{r['name']}"] = inst["attributes"]
    return found


def test_1_apply_creates_three_hosts_over_three_zones_behind_the_balancer(tf: Any, workdir: Path, aws: Any) -> None:
    tf("apply", "-auto-approve", "-input=false")
    outputs = {k: v["value"] for k, v in json.loads(tf("output", "-json").stdout).items()}
    assert outputs["web_url"] == f"https://{outputs['endpoint_dns']}/"
    assert outputs["dicom_endpoint"] == f"ORTHANC@{outputs['endpoint_dns']}:11112"
    assert outputs["images_bucket"].startswith("orthweb-images-")
    assert outputs["certificate_secret_arn"].startswith(f"arn:aws:secretsmanager:{REGION}:")
    assert "instance_id" not in outputs

    (group,) = aws("autoscaling").describe_auto_scaling_groups(
        AutoScalingGroupNames=[outputs["autoscaling_group_name"]]
    )["AutoScalingGroups"]
    assert len(group["Instances"]) == 3
    # AWS spreads the instances evenly over the group's subnets; moto puts them all in the first one
    # (moto/autoscaling/models.py, "We'll create all instances in a single subnet"), so what is checked
    # here is what AWS spreads over: one public subnet in each of the three zones.
    subnets = aws("ec2").describe_subnets(SubnetIds=group["VPCZoneIdentifier"].split(","))["Subnets"]
    assert len({s["AvailabilityZone"] for s in subnets}) == 3
    assert all({t["Key"]: t["Value"] for t in s["Tags"]}["Tier"] == "public" for s in subnets)
    assert group["HealthCheckType"] == "ELB"
    (lb,) = aws("elbv2").describe_load_balancers(Names=["orthweb-nlb"])["LoadBalancers"]
    assert lb["DNSName"] == outputs["endpoint_dns"]
    assert lb["Type"] == "network"
    listeners = aws("elbv2").describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"]
    assert sorted((x["Port"], x["Protocol"]) for x in listeners) == [(443, "TCP"), (11112, "TCP")]
    for target_group in aws("elbv2").describe_target_groups(LoadBalancerArn=lb["LoadBalancerArn"])["TargetGroups"]:
        assert (target_group["HealthCheckProtocol"], target_group["HealthCheckPort"]) == ("HTTP", "8099")
        assert target_group["HealthCheckPath"] == "/healthz"

    s3 = aws("s3")
    bucket = outputs["images_bucket"]
    rule = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["BucketKeyEnabled"] is True
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
    statements = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert {s["Sid"] for s in statements} >= {"DenyPlainHttp", "DenyImageContentToAllButOrthanc"}


def test_2_second_plan_shows_no_changes(tf: Any) -> None:
    proc = tf("plan", "-detailed-exitcode", "-input=false", check=False)
    assert proc.returncode == 0, proc.stdout[-4000:]


def test_3_a_changed_launch_template_touches_only_the_template_and_the_group(
    tf: Any, workdir: Path, tmp_path: Path
) -> None:
    changed, _ = synthesize({**SETTINGS, "instance_type": "t4g.medium"}, tmp_path)
    original = (workdir / "cdk.tf.json").read_text()
    changed["terraform"]["backend"] = json.loads(original)["terraform"]["backend"]
    (workdir / "cdk.tf.json").write_text(json.dumps(changed))
    try:
        tf("plan", "-input=false", "-out=plan.bin")
        plan = json.loads(tf("show", "-json", "plan.bin").stdout)
    finally:
        (workdir / "cdk.tf.json").write_text(original)
    changes = {
        c["address"].split(".")[0]: c["change"]["actions"]
        for c in plan["resource_changes"]
        if c["change"]["actions"] != ["no-op"]
    }
    # A new template version; the group follows it (its instance refresh replaces the hosts).
    assert changes == {"aws_launch_template": ["update"], "aws_autoscaling_group": ["update"]}


def test_4_destroy_leaves_nothing_behind(tf: Any, workdir: Path, aws: Any) -> None:
    tf("destroy", "-auto-approve", "-input=false")
    assert state_resources(workdir) == {}
    assert aws("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"] == []
    assert aws("elbv2").describe_load_balancers()["LoadBalancers"] == []
    assert aws("elbv2").describe_target_groups()["TargetGroups"] == []
    assert aws("ec2").describe_launch_templates()["LaunchTemplates"] == []
    running = [
        i
        for r in aws("ec2").describe_instances()["Reservations"]
        for i in r["Instances"]
        if i["State"]["Name"] != "terminated"
    ]
    assert running == []
    assert aws("s3").list_buckets()["Buckets"] == []
    assert aws("rds").describe_db_instances()["DBInstances"] == []
    assert [s for s in aws("secretsmanager").list_secrets()["SecretList"] if "DeletedDate" not in s] == []
    assert [r for r in aws("iam").list_roles()["Roles"] if r["RoleName"].startswith("orthweb-")] == []
    assert [v for v in aws("ec2").describe_vpcs()["Vpcs"] if not v.get("IsDefault")] == []
