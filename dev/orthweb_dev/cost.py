"""Daily cost of the synthesized stack, summed from a committed, dated us-east-1 price table.

Usage: python -m orthweb_dev.cost [path/to/cdk.tf.json]   (default: cdktf.out/stacks/orthweb/cdk.tf.json)
Counts the always-on charges the stack creates; usage-based charges are listed, not guessed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from orthweb_dev import PROJECT_DIR

PRICES = PROJECT_DIR / "docs" / "prices-us-east-1.json"
DEFAULT_STACK = PROJECT_DIR / "cdktf.out" / "stacks" / "orthweb" / "cdk.tf.json"
TARGET_PER_DAY = 1.50


class PriceMissing(KeyError):
    pass


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
        gb = inst.get("root_block_device", {}).get("volume_size", 8)
        items.append((f"EBS gp3 root {gb} GiB", gb * prices["ebs_gp3_gb_month"] / month_days))
        if inst.get("associate_public_ip_address"):
            items.append(("Public IPv4 address", prices["public_ipv4_hourly"] * hours))
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
    for _ in res.get("aws_secretsmanager_secret", {}).values():
        items.append(("Secrets Manager: Orthanc admin secret", prices["secret_month"] / month_days))
    return items


def main(argv: list[str]) -> int:
    stack = Path(argv[1]) if len(argv) > 1 else DEFAULT_STACK
    if not stack.is_file():
        print(f"cost: {stack} not found; run `make synth` first", file=sys.stderr)
        return 2
    prices = json.loads(PRICES.read_text())
    try:
        items = line_items(json.loads(stack.read_text()), prices)
    except PriceMissing as exc:
        print(f"cost: {exc.args[0]}", file=sys.stderr)
        return 2
    width = max(len(d) for d, _ in items)
    print(f"Daily cost, {prices['region']} on-demand prices as of {prices['as_of']}:")
    for desc, usd in items:
        print(f"  {desc:<{width}}  ${usd:7.3f}")
    total = sum(usd for _, usd in items)
    target = f"per 30 days: ${total * 30:.2f}; target <= ${TARGET_PER_DAY:.2f}/day"
    print(f"  {'Total per day':<{width}}  ${total:7.3f}   ({target})")
    print("Not counted (usage-based):")
    for note in prices["usage_based_not_counted"]:
        print(f"  - {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
