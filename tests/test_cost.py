"""The cost script sums the synthesized stack from the committed price table."""

from __future__ import annotations

import json
from typing import Any

from orthweb_dev import cost

PRICES: dict[str, Any] = json.loads(cost.PRICES.read_text())


def test_default_stack_costs_at_most_the_target_per_day(synth: dict[str, Any]) -> None:
    items = dict(cost.line_items(synth, PRICES))
    total = sum(items.values())
    assert 1.0 < total <= cost.TARGET_PER_DAY
    # Encryption, the private endpoint and backups are kept, not traded for the target.
    assert "KMS customer-managed key" in items
    assert "Interface endpoint secretsmanager x1 AZ" in items


def test_each_host_pays_its_archive_volume(synth: dict[str, Any], scaled: dict[str, Any]) -> None:
    gb_day = PRICES["ebs_gp3_gb_month"] / (PRICES["hours_per_month"] / 24.0)
    assert dict(cost.line_items(synth, PRICES))["EBS gp3 archives 10 GiB"] == 10 * gb_day
    assert dict(cost.line_items(scaled, PRICES))["EBS gp3 archives 10 GiB x3"] == 10 * gb_day * 3


def test_variant_costs_follow_multi_az_and_endpoint_zones(variant: dict[str, Any]) -> None:
    items = dict(cost.line_items(variant, PRICES))
    assert items["RDS db.m7g.large Multi-AZ"] == PRICES["rds_hourly"]["db.m7g.large"] * 24 * 2
    assert items["Interface endpoint ssm x3 AZ"] == PRICES["interface_endpoint_az_hourly"] * 24 * 3


def test_several_hosts_cost_each_host_its_address_the_balancer_and_the_second_database(scaled: dict[str, Any]) -> None:
    items = dict(cost.line_items(scaled, PRICES))
    hour = 24
    assert items["EC2 t4g.small x3 hosts"] == PRICES["ec2_hourly"]["t4g.small"] * hour * 3
    assert items["Public IPv4 address x3"] == PRICES["public_ipv4_hourly"] * hour * 3
    assert items["Network Load Balancer"] == PRICES["nlb_hourly"] * hour
    assert items["RDS db.t4g.micro Multi-AZ"] == PRICES["rds_hourly"]["db.t4g.micro"] * hour * 2
    assert items["Interface endpoint secretsmanager x3 AZ"] == PRICES["interface_endpoint_az_hourly"] * hour * 3
    assert "Secrets Manager: shared TLS certificate" in items
    assert not any("NAT" in what for what in items)  # hosts egress through their own addresses


def test_images_are_priced_per_tb_month_for_each_choice(scaled: dict[str, Any], synth: dict[str, Any]) -> None:
    per_tb = cost.storage_per_tb(PRICES, multi_az=True)
    (rds,) = per_tb["postgresql"]
    assert rds[1] == PRICES["rds_gp3_gb_month"] * 1024 * 2  # a Multi-AZ database keeps two copies
    s3 = dict(per_tb["s3"])
    hot = s3["S3 Intelligent-Tiering, frequent + monitoring"]
    cold = s3["S3 Intelligent-Tiering, archive instant (after 90 days unread) + monitoring"]
    assert cold < hot < rds[1] / 4
    assert cost.images_in(scaled) == "s3"
    assert cost.images_in(synth) == "postgresql"
    lines = cost.report(scaled, PRICES, target=False)
    assert any(line.startswith("  s3 ") and line.endswith("<- this stack") for line in lines)
    assert not any(line.startswith("  postgresql") and line.endswith("<- this stack") for line in lines)


def test_alarms_cost_ten_cents_a_month_each_and_the_health_metric_is_counted(variant: dict[str, Any]) -> None:
    items = dict(cost.line_items(variant, PRICES))
    month_days = PRICES["hours_per_month"] / 24
    assert items["CloudWatch alarms x5"] == 5 * 0.10 / month_days
    assert items["Custom metric Orthweb/ApplicationHealthy"] == 0.30 / month_days
    assert items["PutMetricData once a minute x1 host (Orthweb)"] == 1440 * 0.01 / 1000


def test_without_alarms_nothing_is_charged_for_them(synth: dict[str, Any]) -> None:
    items = dict(cost.line_items(synth, PRICES))
    assert not any(name.startswith(("CloudWatch alarms", "Custom metric", "PutMetricData", "SNS")) for name in items)
    assert items["CloudWatch Logs groups x5 (no fixed charge; usage below)"] == 0.0


def test_the_host_files_bucket_costs_its_bundle_and_the_versions_kept(synth: dict[str, Any]) -> None:
    items = dict(cost.line_items(synth, PRICES))
    month_days = PRICES["hours_per_month"] / 24
    (bundle,) = synth["resource"]["aws_s3_object"].values()
    gb = len(bundle["content_base64"]) * 3 / 4 / 1024**3
    assert items["S3 host files (the hosts' bundle, versioned)"] == 2 * gb * PRICES["s3_standard_gb_month"] / month_days
    assert items["S3 host files (the hosts' bundle, versioned)"] < 0.0001  # well under a cent a month


def test_the_front_door_costs_the_balancer_its_capacity_its_addresses_and_no_cognito_fee(
    cognito: dict[str, Any],
) -> None:
    items = dict(cost.line_items(cognito, PRICES))
    hour = 24
    assert items["Application Load Balancer"] == PRICES["alb_hourly"] * hour
    assert items["ALB capacity, estimated 1 LCU"] == PRICES["alb_lcu_hourly"] * hour
    assert items["Public IPv4 address x2 (ALB, one per zone)"] == PRICES["public_ipv4_hourly"] * hour * 2
    # The Lite tier: three people are far inside the 10,000 monthly active users Cognito does not charge.
    assert items["Cognito Lite tier, 3 users (first 10,000 MAU a month free)"] == 0.0
    assert items["ACM public certificate (no charge)"] == 0.0
