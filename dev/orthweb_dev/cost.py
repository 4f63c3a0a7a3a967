"""Daily cost of the synthesized stack, summed from a committed, dated us-east-1 price table.

Usage: python -m orthweb_dev.cost [path/to/cdk.tf.json]   (default: cdktf.out/stacks/orthweb/cdk.tf.json)
       python -m orthweb_dev.cost --topologies            (synthesizes each topology and compares them)
Counts the always-on charges the stack creates; usage-based charges are listed, not guessed. Image
storage grows with the archive, so it is priced per TB-month for each ``storage`` choice.
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from orthweb_dev import PROJECT_DIR

PRICES = PROJECT_DIR / "docs" / "prices-us-east-1.json"
DEFAULT_STACK = PROJECT_DIR / "cdktf.out" / "stacks" / "orthweb" / "cdk.tf.json"
TARGET_PER_DAY = 1.50
GIB_PER_TB = 1024
# A CT or MR instance is about 0.5 MB: some 2 million objects per TB, each monitored by Intelligent-Tiering.
OBJECTS_PER_TB = 2_000_000

# The topologies docs/scaling.md compares (settings beyond the defaults).
TOPOLOGIES: dict[str, dict[str, Any]] = {
    "1 host, images in PostgreSQL (default)": {},
    "1 host, images in S3": {"storage": "s3"},
    "2 hosts over 2 zones, images in S3": {
        "storage": "s3", "hosts": 2, "db_multi_az": True, "endpoints_in_all_azs": True,
    },
    "3 hosts over 3 zones, images in S3": {
        "storage": "s3", "hosts": 3, "az_count": 3, "db_multi_az": True, "endpoints_in_all_azs": True,
    },
}  # fmt: skip


class PriceMissing(KeyError):
    pass


def _monitoring_items(res: dict[str, Any], prices: dict[str, Any], month_days: float) -> list[tuple[str, float]]:
    """Alarms, the host's health metric, log groups and the alarm topic."""
    items: list[tuple[str, float]] = []
    alarms = list(res.get("aws_cloudwatch_metric_alarm", {}).values())
    if alarms:
        items.append((f"CloudWatch alarms x{len(alarms)}", len(alarms) * prices["cloudwatch_alarm_month"] / month_days))
    # A metric the stack's alarms watch outside AWS/ namespaces is published by the host.
    custom = sorted({(a["namespace"], a["metric_name"]) for a in alarms if not a["namespace"].startswith("AWS/")})
    for namespace, metric in custom:
        items.append((f"Custom metric {namespace}/{metric}", prices["cloudwatch_custom_metric_month"] / month_days))
        # Published once a minute by every host (orthweb-probe.timer): one PutMetricData request each.
        hosts = sum(g["desired_capacity"] for g in res.get("aws_autoscaling_group", {}).values()) or 1
        per_day = 24 * 60 * hosts * prices["cloudwatch_api_requests_per_1000"] / 1000
        items.append((f"PutMetricData once a minute x{hosts} host{'s' if hosts > 1 else ''} ({namespace})", per_day))
    groups = res.get("aws_cloudwatch_log_group", {})
    if groups:
        items.append((f"CloudWatch Logs groups x{len(groups)} (no fixed charge; usage below)", 0.0))
    for _ in res.get("aws_sns_topic", {}).values():
        items.append(("SNS alarm topic and e-mail (no fixed charge; 1,000 e-mails/month free)", 0.0))
    return items


def _volume_items(root: int, archives: list[int], gb_day: float, hosts: int = 1) -> list[tuple[str, float]]:
    """Each host's EBS volumes: the root volume, then the archive volume (gp3, per GiB)."""
    each = f" x{hosts}" if hosts > 1 else ""
    volumes = [("root", root)] + [("archives", gb) for gb in archives]
    return [(f"EBS gp3 {label} {gb} GiB{each}", gb * gb_day * hosts) for label, gb in volumes]


def line_items(synth: dict[str, Any], prices: dict[str, Any]) -> list[tuple[str, float]]:
    """(description, USD per day) for every priced resource in the synthesized stack."""
    hours, month_days = 24.0, prices["hours_per_month"] / 24.0
    res = synth.get("resource", {})
    items: list[tuple[str, float]] = []

    def hourly(table: str, key: str) -> float:
        try:
            return float(prices[table][key])
        except KeyError:
            raise PriceMissing(f"no price for {key} in {PRICES.name} ({table}); add it with its source") from None

    for inst in res.get("aws_instance", {}).values():
        items.append((f"EC2 {inst['instance_type']}", hourly("ec2_hourly", inst["instance_type"]) * hours))
        root = inst.get("root_block_device", {}).get("volume_size", 8)
        archives = [volume["volume_size"] for volume in inst.get("ebs_block_device", [])]
        items += _volume_items(root, archives, prices["ebs_gp3_gb_month"] / month_days)
        if inst.get("associate_public_ip_address"):
            items.append(("Public IPv4 address", prices["public_ipv4_hourly"] * hours))
    templates = res.get("aws_launch_template", {})
    for group in res.get("aws_autoscaling_group", {}).values():
        (template,) = [t for n, t in templates.items() if f"aws_launch_template.{n}." in group["launch_template"]["id"]]
        n = group["desired_capacity"]
        kind = template["instance_type"]
        items.append((f"EC2 {kind} x{n} hosts", hourly("ec2_hourly", kind) * hours * n))
        root, *archives = [b["ebs"]["volume_size"] for b in template.get("block_device_mappings", [])]
        items += _volume_items(root, archives, prices["ebs_gp3_gb_month"] / month_days, hosts=n)
        if any(i.get("associate_public_ip_address") == "true" for i in template.get("network_interfaces", [])):
            items.append((f"Public IPv4 address x{n}", prices["public_ipv4_hourly"] * hours * n))
    for lb in res.get("aws_lb", {}).values():
        if lb["load_balancer_type"] == "network":
            items.append(("Network Load Balancer", prices["nlb_hourly"] * hours))
    items += _front_door_items(res, prices, hours)
    for db in res.get("aws_db_instance", {}).values():
        copies = 2 if db.get("multi_az") else 1
        cls = db["instance_class"]
        items.append((f"RDS {cls}{' Multi-AZ' if copies == 2 else ''}", hourly("rds_hourly", cls) * hours * copies))
        gb = db["allocated_storage"]
        items.append((f"RDS gp3 storage {gb} GiB", gb * prices["rds_gp3_gb_month"] * copies / month_days))
        if db.get("manage_master_user_password"):
            items.append(("Secrets Manager: RDS-managed master secret", prices["secret_month"] / month_days))
    for ep in res.get("aws_vpc_endpoint", {}).values():
        if ep["vpc_endpoint_type"] == "Interface":
            zones = len(ep["subnet_ids"])
            service = ep["service_name"].rsplit(".", 1)[1]
            items.append(
                (f"Interface endpoint {service} x{zones} AZ", prices["interface_endpoint_az_hourly"] * hours * zones)
            )
    for _ in res.get("aws_kms_key", {}).values():
        items.append(("KMS customer-managed key", prices["kms_key_month"] / month_days))
    for secret in res.get("aws_secretsmanager_secret", {}).values():
        what = "shared TLS certificate" if "/tls-" in secret.get("name_prefix", "") else "Orthanc admin secret"
        items.append((f"Secrets Manager: {what}", prices["secret_month"] / month_days))
    items += _host_files_items(res, prices, month_days)
    items += _monitoring_items(res, prices, month_days)
    return items


def _front_door_items(res: dict[str, Any], prices: dict[str, Any], hours: float) -> list[tuple[str, float]]:
    """``login = "cognito"``: the Application Load Balancer (its hours, an estimate of its capacity
    units, a public IPv4 address in each zone), its ACM certificate, and the Cognito user pool."""
    items: list[tuple[str, float]] = []
    for lb in res.get("aws_lb", {}).values():
        if lb["load_balancer_type"] != "application":
            continue
        lcu = prices["alb_lcu_estimate"]
        zones = len(lb["subnets"])
        items += [
            ("Application Load Balancer", prices["alb_hourly"] * hours),
            (f"ALB capacity, estimated {lcu} LCU", lcu * prices["alb_lcu_hourly"] * hours),
            (f"Public IPv4 address x{zones} (ALB, one per zone)", prices["public_ipv4_hourly"] * hours * zones),
        ]
    for _ in res.get("aws_acm_certificate", {}).values():
        items.append(("ACM public certificate (no charge)", 0.0))
    users = len(res.get("aws_cognito_user", {}))
    for pool in res.get("aws_cognito_user_pool", {}).values():
        tier = pool.get("user_pool_tier", "ESSENTIALS")
        free = prices["cognito_free_mau"] if tier != "PLUS" else 0
        paid = max(0, users - free) * prices["cognito_mau_month"][tier] / (prices["hours_per_month"] / 24)
        items.append((f"Cognito {tier.title()} tier, {users} users (first {free:,} MAU a month free)", paid))
    return items


def _host_files_items(res: dict[str, Any], prices: dict[str, Any], month_days: float) -> list[tuple[str, float]]:
    """The hosts' bundle in S3 Standard: its bytes, and as many again for the versions earlier
    synths left (they expire after 90 days). Its requests (one read per host boot) cost nothing to speak of."""
    items = []
    for obj in res.get("aws_s3_object", {}).values():
        gb = len(obj["content_base64"]) * 3 / 4 / 1024**3
        items.append(
            ("S3 host files (the hosts' bundle, versioned)", 2 * gb * prices["s3_standard_gb_month"] / month_days)
        )
    return items


def images_in(synth: dict[str, Any]) -> str:
    """Where the synthesized stack keeps images: ``s3`` when it has the image bucket."""
    buckets = synth.get("resource", {}).get("aws_s3_bucket", {}).values()
    return "s3" if any("-images-" in b["bucket_prefix"] for b in buckets) else "postgresql"


def storage_per_tb(prices: dict[str, Any], multi_az: bool = False) -> dict[str, list[tuple[str, float]]]:
    """USD per TB-month of images, for each ``storage`` choice: (what, price) lines."""
    rds = prices["rds_gp3_gb_month"] * GIB_PER_TB
    tiers = prices["s3_intelligent_tiering_gb_month"]
    monitoring = prices["s3_intelligent_tiering_monitoring_per_1000_objects_month"] * OBJECTS_PER_TB / 1000
    copies = 2 if multi_az else 1
    return {
        "postgresql": [(f"RDS gp3{', Multi-AZ (two copies)' if multi_az else ''}", rds * copies)],
        "s3": [
            *(
                (f"S3 Intelligent-Tiering, {tier} + monitoring", gb * GIB_PER_TB + monitoring)
                for tier, gb in tiers.items()
            ),
            ("(for comparison: S3 Standard)", prices["s3_standard_gb_month"] * GIB_PER_TB),
        ],
    }


def report(synth: dict[str, Any], prices: dict[str, Any], *, target: bool = True) -> list[str]:
    """The daily table, the usage-based notes and the storage lines, as printed."""
    items = line_items(synth, prices)
    width = max(len(d) for d, _ in items)
    lines = [f"Daily cost, {prices['region']} on-demand prices as of {prices['as_of']}:"]
    lines += [f"  {desc:<{width}}  ${usd:7.3f}" for desc, usd in items]
    total = sum(usd for _, usd in items)
    judged = f"; target <= ${TARGET_PER_DAY:.2f}/day" if target else ""
    lines.append(f"  {'Total per day':<{width}}  ${total:7.3f}   (per 30 days: ${total * 30:.2f}{judged})")
    multi_az = any(db.get("multi_az") for db in synth.get("resource", {}).get("aws_db_instance", {}).values())
    chosen = images_in(synth)
    lines.append("Image storage per TB-month (grows with the archive; not in the daily total):")
    for choice, rows in storage_per_tb(prices, multi_az).items():
        mark = "   <- this stack" if choice == chosen else ""
        for what, usd in rows:
            lines.append(f"  {choice:<10}  {what:<80}  ${usd:7.2f}{mark}")
    lines.append("Not counted (usage-based):")
    lines += [f"  - {note}" for note in prices["usage_based_not_counted"]]
    return lines


def topologies(prices: dict[str, Any], settings: Mapping[str, Mapping[str, Any]] = TOPOLOGIES) -> list[str]:
    """A Markdown table of the daily cost of each topology, each synthesized with its settings."""
    from orthweb_dev.synth import synthesize

    rows = ["| Topology | USD/day | USD per 30 days | Images, USD per TB-month |", "| --- | ---: | ---: | --- |"]
    with tempfile.TemporaryDirectory(prefix="orthweb-cost-") as tmp:
        for i, (name, values) in enumerate(settings.items()):
            synth, _ = synthesize(values, Path(tmp) / str(i))
            total = sum(usd for _, usd in line_items(synth, prices))
            tiers = [usd for what, usd in storage_per_tb(prices, bool(values.get("db_multi_az")))[images_in(synth)]
                     if not what.startswith("(")]  # fmt: skip
            spread = f"{min(tiers):.2f}" if len(tiers) == 1 else f"{min(tiers):.2f} (cold) to {max(tiers):.2f} (hot)"
            rows.append(f"| {name} | {total:.2f} | {total * 30:.2f} | {spread} |")
    return rows


def main(argv: list[str]) -> int:
    prices = json.loads(PRICES.read_text())
    if argv[1:] == ["--topologies"]:
        print("\n".join(topologies(prices)))
        return 0
    stack = Path(argv[1]) if len(argv) > 1 else DEFAULT_STACK
    if not stack.is_file():
        print(f"cost: {stack} not found; run `make synth` first", file=sys.stderr)
        return 2
    synth = json.loads(stack.read_text())
    try:
        # The daily target is the one-host Basic deployment's: several hosts or the front door go past it by design.
        res = synth.get("resource", {})
        lines = report(synth, prices, target=not (res.get("aws_autoscaling_group") or res.get("aws_cognito_user_pool")))
    except PriceMissing as exc:
        print(f"cost: {exc.args[0]}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
