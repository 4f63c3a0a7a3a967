"""Day-two resources in the synthesized stack: alarms and their encrypted topic, the health metric
grant, and a database restored from a snapshot (default settings and the variant)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cdktf import App, TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider

from orthweb import thresholds
from orthweb.alarms import Alarms
from orthweb.encryption import Encryption
from orthweb_dev import alarms_table
from orthweb_dev.synth import VARIANT_SETTINGS, load_stack, only, policy, resources

Synth = dict[str, Any]
FROM_THE_INSTANCE_ONLY_AS_SYNTHESIZED = {
    "StringEquals": {
        "aws:Ec2InstanceSourceVpc": "$${aws:SourceVpc}",
        "aws:Ec2InstanceSourcePrivateIPv4": "$${aws:VpcSourceIp}",
    }
}


def _key_statements(synth: Synth) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in policy(only(synth, "aws_kms_key")["policy"])["Statement"]}


def _role_policy(synth: Synth, name: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]]
    (found,) = [
        policy(p["policy"])["Statement"] for p in resources(synth, "aws_iam_role_policy").values() if p["name"] == name
    ]
    return found


# --- alarms --------------------------------------------------------------------------------------


def test_without_alarm_email_there_is_no_topic_alarm_or_metric_grant(synth: Synth) -> None:
    assert resources(synth, "aws_sns_topic") == {}
    assert resources(synth, "aws_cloudwatch_metric_alarm") == {}
    assert "CloudWatchAlarmsPublishToEncryptedTopics" not in _key_statements(synth)
    assert not any(p["name"] == "publish-health-metric" for p in resources(synth, "aws_iam_role_policy").values())


def test_alarm_topic_is_encrypted_with_the_deployment_key_and_accepts_only_this_deployments_alarms(
    variant: Synth,
) -> None:
    topic = only(variant, "aws_sns_topic")
    assert topic["name"] == "pacs-test-alarms"
    assert topic["kms_master_key_id"].startswith("${aws_kms_key.")
    statements = {s["Sid"]: s for s in policy(only(variant, "aws_sns_topic_policy")["policy"])["Statement"]}
    publish = statements["ThisDeploymentsAlarmsPublish"]
    assert publish["Effect"] == "Allow"
    assert publish["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert publish["Action"] == "sns:Publish"
    assert publish["Condition"]["StringEquals"]["aws:SourceAccount"].startswith("${data.aws_caller_identity.")
    assert publish["Condition"]["ArnLike"]["aws:SourceArn"].endswith(":alarm:pacs-test-*")
    tls = statements["TlsOnly"]
    assert (tls["Effect"], tls["Principal"], tls["Condition"]) == (
        "Deny",
        "*",
        {"Bool": {"aws:SecureTransport": "false"}},
    )
    subscription = only(variant, "aws_sns_topic_subscription")
    assert (subscription["protocol"], subscription["endpoint"]) == ("email", "pacs-ops@example.org")


def test_key_policy_lets_cloudwatch_alarms_use_the_key_for_the_encrypted_topic(variant: Synth) -> None:
    statement = _key_statements(variant)["CloudWatchAlarmsPublishToEncryptedTopics"]
    assert statement["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey*"]


def test_only_this_deployments_alarms_may_have_cloudwatch_use_the_key(variant: Synth) -> None:
    """CloudWatch is a confused deputy without a source condition: any account's alarm could make
    it use this key. The grant holds only for alarms of this account named like this deployment's,
    exactly the alarms the topic policy accepts."""
    conditions = _key_statements(variant)["CloudWatchAlarmsPublishToEncryptedTopics"]["Condition"]
    account = conditions["StringEquals"]["aws:SourceAccount"]
    assert account.startswith("${data.aws_caller_identity.")
    alarms_pattern = conditions["ArnLike"]["aws:SourceArn"]
    assert alarms_pattern.endswith(f":cloudwatch:{variant['provider']['aws'][0]['region']}:{account}:alarm:pacs-test-*")
    topic_policy = policy(only(variant, "aws_sns_topic_policy")["policy"])["Statement"]
    publish = next(s for s in topic_policy if s["Sid"] == "ThisDeploymentsAlarmsPublish")
    assert conditions == publish["Condition"]
    for alarm in resources(variant, "aws_cloudwatch_metric_alarm").values():
        assert alarm["alarm_name"].startswith("pacs-test-")


def test_every_alarm_is_synthesized_as_specified_and_notifies_on_alarm_and_recovery(variant: Synth) -> None:
    alarms = {a["alarm_name"]: a for a in resources(variant, "aws_cloudwatch_metric_alarm").values()}
    specs = thresholds.alarm_specs(
        name_prefix="pacs-test",
        instance_id="unused",
        db_identifier="pacs-test-db",
        db_instance_class=VARIANT_SETTINGS["db_instance_class"],
        db_storage_gb=VARIANT_SETTINGS["db_storage_gb"],
    )
    assert sorted(alarms) == sorted(f"pacs-test-{s.name}" for s in specs)
    topic = next(iter(resources(variant, "aws_sns_topic")))
    for spec in specs:
        alarm = alarms[f"pacs-test-{spec.name}"]
        for attribute in ("namespace", "metric_name", "statistic", "comparison_operator", "period"):
            assert alarm[attribute] == getattr(spec, attribute), (spec.name, attribute)
        assert alarm["threshold"] == spec.threshold
        assert alarm["evaluation_periods"] == alarm["datapoints_to_alarm"] == spec.evaluation_periods
        assert alarm["treat_missing_data"] == spec.treat_missing_data
        assert alarm["alarm_actions"] == alarm["ok_actions"] == [f"${{aws_sns_topic.{topic}.arn}}"]
        assert spec.fires_when in alarm["alarm_description"]


def test_alarm_thresholds_follow_the_database_class_and_storage(variant: Synth) -> None:
    alarms = {a["alarm_name"]: a for a in resources(variant, "aws_cloudwatch_metric_alarm").values()}
    # db.m7g.large: 8 GiB; AWS's formula on 75 % of it gives 675 connections; 90 % of that is 607.
    assert alarms["pacs-test-db-connections"]["threshold"] == 607
    # 10 % of 100 GiB.
    assert alarms["pacs-test-db-free-storage"]["threshold"] == 10 * 1024**3
    assert alarms["pacs-test-db-cpu"]["threshold"] == 80
    status = alarms["pacs-test-host-status-check"]
    assert status["dimensions"]["InstanceId"] == "${aws_instance.orthweb.id}"
    health = alarms["pacs-test-application-health"]
    # No probe result at all (host down) counts as failing.
    assert (health["namespace"], health["metric_name"], health["treat_missing_data"]) == (
        "Orthweb",
        "ApplicationHealthy",
        "breaching",
    )
    assert health["dimensions"] == {"Deployment": "pacs-test"}


@pytest.mark.parametrize(
    ("instance_class", "alarm_above"),
    [("db.t4g.micro", 75), ("db.t4g.small", 151), ("db.m7g.large", 607), ("db.r6g.2xlarge", 5000 * 9 // 10)],
)
def test_connection_alarm_is_90_percent_of_the_connection_estimate(instance_class: str, alarm_above: int) -> None:
    (spec,) = [
        s
        for s in thresholds.alarm_specs(
            name_prefix="p", instance_id="i", db_identifier="d", db_instance_class=instance_class, db_storage_gb=20
        )
        if s.name == "db-connections"
    ]
    assert spec.threshold == alarm_above


def test_host_publishes_only_the_health_metric_and_only_from_the_instance(variant: Synth) -> None:
    (statement,) = _role_policy(variant, "publish-health-metric")
    assert statement["Action"] == "cloudwatch:PutMetricData"
    # PutMetricData has no resource type; the namespace condition is what narrows it.
    assert statement["Resource"] == "*"
    assert statement["Condition"]["StringEquals"] == {
        "cloudwatch:namespace": "Orthweb",
        **FROM_THE_INSTANCE_ONLY_AS_SYNTHESIZED["StringEquals"],
    }


def test_unhealthy_targets_alarm_hook_for_a_load_balancer(tmp_path: Path) -> None:
    app = App(outdir=str(tmp_path))
    stack = TerraformStack(app, "hook")
    AwsProvider(stack, "aws", region="us-east-1")
    encryption = Encryption(stack, "Encryption", name_prefix="lb", region="us-east-1")
    alarms = Alarms(
        stack,
        "Alarms",
        name_prefix="lb",
        region="us-east-1",
        encryption=encryption,
        email="ops@example.org",
        instance_id="i-0123",
        db_identifier="lb-db",
        db_instance_class="db.t4g.micro",
        db_storage_gb=20,
    )
    alarms.add_unhealthy_targets_alarm(load_balancer="net/lb/0123", target_group="targetgroup/lb/4567")
    app.synth()
    synth = load_stack(tmp_path, "hook")
    (alarm,) = [
        a for a in resources(synth, "aws_cloudwatch_metric_alarm").values() if a["alarm_name"] == "lb-unhealthy-targets"
    ]
    assert (alarm["namespace"], alarm["metric_name"]) == ("AWS/NetworkELB", "UnHealthyHostCount")
    assert alarm["dimensions"] == {"LoadBalancer": "net/lb/0123", "TargetGroup": "targetgroup/lb/4567"}
    assert (alarm["comparison_operator"], alarm["threshold"]) == ("GreaterThanOrEqualToThreshold", 1)
    assert alarm["alarm_actions"] == alarm["ok_actions"]


# --- restore -------------------------------------------------------------------------------------


def test_a_snapshot_is_copied_under_the_deployment_key_and_the_database_created_from_the_copy(variant: Synth) -> None:
    copy = only(variant, "aws_db_snapshot_copy")
    assert copy["source_db_snapshot_identifier"] == "rds:orthweb-db-2026-11-27-03-10"
    assert copy["target_db_snapshot_identifier"] == "pacs-test-db-restore-source"
    # The restored database keeps its snapshot's key: the copy is what makes it this deployment's key.
    assert copy["kms_key_id"].startswith("${aws_kms_key.")
    db = only(variant, "aws_db_instance")
    (copy_name,) = resources(variant, "aws_db_snapshot_copy")
    assert db["snapshot_identifier"] == f"${{aws_db_snapshot_copy.{copy_name}.id}}"
    # RDS still manages the master password, in a new secret of this deployment.
    assert db["manage_master_user_password"] is True
    assert db["kms_key_id"] == copy["kms_key_id"]
    # Read at creation only: a later change of the setting never replaces a database holding data.
    assert db["lifecycle"]["ignore_changes"] == ["snapshot_identifier"]
    assert copy["lifecycle"]["ignore_changes"] == ["source_db_snapshot_identifier"]


def test_without_a_snapshot_the_database_starts_empty(synth: Synth) -> None:
    assert resources(synth, "aws_db_snapshot_copy") == {}
    assert "snapshot_identifier" not in only(synth, "aws_db_instance")


def test_operations_doc_lists_every_alarm_with_its_threshold() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    assert alarms_table.table() in doc, "docs/operations.md: paste `python -m orthweb_dev.alarms_table` over the table"
