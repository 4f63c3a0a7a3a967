"""Settings change the synthesized stack the way their documentation says (one variant synth)."""

from __future__ import annotations

from typing import Any

from orthweb_dev.synth import VARIANT_SETTINGS, data, only, policy, resources

Synth = dict[str, Any]


def _host_ingress(synth: Synth) -> list[tuple[int, str]]:
    host_sg = next(n for n in resources(synth, "aws_security_group") if n.startswith("Host"))
    rules = resources(synth, "aws_vpc_security_group_ingress_rule").values()
    return sorted((r["from_port"], r["cidr_ipv4"]) for r in rules if host_sg in r["security_group_id"])


def test_network_follows_cidr_and_zone_count(variant: Synth) -> None:
    assert only(variant, "aws_vpc")["cidr_block"] == "10.20.0.0/20"
    subnets = resources(variant, "aws_subnet").values()
    assert len(subnets) == 6
    assert sorted(s["cidr_block"] for s in subnets if s["tags"]["Tier"] == "public") == [
        "10.20.0.0/23",
        "10.20.2.0/23",
        "10.20.4.0/23",
    ]


def test_extra_interface_endpoints_are_added_in_the_private_subnets(variant: Synth) -> None:
    interface = [e for e in resources(variant, "aws_vpc_endpoint").values() if e["vpc_endpoint_type"] == "Interface"]
    assert sorted(e["service_name"].rsplit(".", 1)[1] for e in interface) == [
        "ec2messages",
        "logs",
        "monitoring",
        "secretsmanager",
        "ssm",
        "ssmmessages",
    ]
    assert all(e["private_dns_enabled"] for e in interface)
    assert all(len(e["subnet_ids"]) == 3 for e in interface)


def test_host_ports_follow_cidrs_https_plain_dicom_and_ssh(variant: Synth) -> None:
    assert _host_ingress(variant) == [
        (22, "192.0.2.0/24"),
        (80, "192.168.10.0/24"),
        (4242, "10.20.0.0/20"),
        (11112, "192.0.2.0/28"),
        (11112, "203.0.113.0/24"),
    ]
    instance = resources(variant, "aws_instance")["orthweb"]
    assert instance["key_name"] == "ops-key"
    assert only(variant, "aws_instance")["instance_type"] == "m7i.large"
    (ami,) = data(variant, "aws_ssm_parameter").values()
    assert ami["name"].endswith("al2023-ami-kernel-default-x86_64")
    assert variant["output"]["web_url"]["value"].startswith("http://")


def test_dicom_port_is_closed_until_cidrs_are_given(synth: Synth) -> None:
    assert all(port != 11112 for port, _ in _host_ingress(synth))


def test_dicom_egress_goes_only_to_the_move_destinations(variant: Synth) -> None:
    egress = [r for r in resources(variant, "aws_vpc_security_group_egress_rule").values() if r["from_port"] == 11112]
    assert [(r["cidr_ipv4"], r["to_port"]) for r in egress] == [("192.0.2.5/32", 11112)]


def test_database_follows_class_storage_version_multi_az_and_backups(variant: Synth) -> None:
    db = only(variant, "aws_db_instance")
    assert db["instance_class"] == "db.m7g.large"
    assert db["allocated_storage"] == 100
    assert db["max_allocated_storage"] == 400  # storage autoscaling up to 4 x, unless set
    assert db["engine_version"] == "16.4"
    assert only(variant, "aws_db_parameter_group")["family"] == "postgres16"
    assert db["multi_az"] is True
    assert db["backup_retention_period"] == 14
    assert db["identifier"] == "pacs-test-db"


def test_turning_protection_off_allows_a_clean_teardown(variant: Synth) -> None:
    db = only(variant, "aws_db_instance")
    assert db["deletion_protection"] is False
    assert db["skip_final_snapshot"] is True
    assert "final_snapshot_identifier" not in db
    assert only(variant, "aws_secretsmanager_secret")["recovery_window_in_days"] == 0


def test_prefix_region_retention_and_tags_reach_every_resource(variant: Synth) -> None:
    (provider,) = variant["provider"]["aws"]
    assert provider["region"] == "eu-west-1"
    assert provider["default_tags"][0]["tags"] == {
        "Project": "orthweb",
        "Deployment": "pacs-test",
        **VARIANT_SETTINGS["tags"],
    }
    assert only(variant, "aws_kms_alias")["name"] == "alias/pacs-test"
    assert only(variant, "aws_secretsmanager_secret")["name_prefix"].startswith("pacs-test/")
    assert all(g["retention_in_days"] == 731 for g in resources(variant, "aws_cloudwatch_log_group").values())
    endpoints = [e["service_name"] for e in resources(variant, "aws_vpc_endpoint").values()]
    assert all(name.startswith("com.amazonaws.eu-west-1.") for name in endpoints)


def test_s3_backend_uses_encryption_and_native_locking(variant: Synth) -> None:
    backend = variant["terraform"]["backend"]
    assert set(backend) == {"s3"}
    assert backend["s3"] == {
        "bucket": "pacs-test-state",
        "key": "orthweb/terraform.tfstate",
        "region": "eu-west-1",
        "encrypt": True,
        "use_lockfile": True,
    }


def test_session_manager_calls_through_configured_endpoints_work_only_from_the_instance(variant: Synth) -> None:
    (session,) = [
        policy(p["policy"])["Statement"]
        for p in resources(variant, "aws_iam_role_policy").values()
        if p["name"] == "session-manager"
    ]
    # The variant has the ssm, ssmmessages and ec2messages endpoints: every agent call goes through one.
    assert {s["Sid"] for s in session} == {
        "SessionManagerSsm",
        "SessionManagerSsmmessages",
        "SessionManagerEc2messages",
    }
    for statement in session:
        assert statement["Condition"] == {
            "StringEquals": {
                "aws:Ec2InstanceSourceVpc": "$${aws:SourceVpc}",
                "aws:Ec2InstanceSourcePrivateIPv4": "$${aws:VpcSourceIp}",
            }
        }


def test_container_logs_written_through_the_logs_endpoint_work_only_from_the_instance(variant: Synth) -> None:
    (write,) = [
        policy(p["policy"])["Statement"]
        for p in resources(variant, "aws_iam_role_policy").values()
        if p["name"] == "write-container-logs"
    ]
    assert write[0]["Condition"] == {
        "StringEquals": {
            "aws:Ec2InstanceSourceVpc": "$${aws:SourceVpc}",
            "aws:Ec2InstanceSourcePrivateIPv4": "$${aws:VpcSourceIp}",
        }
    }
