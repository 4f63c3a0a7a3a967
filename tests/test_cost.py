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


def test_variant_costs_follow_multi_az_and_endpoint_zones(variant: dict[str, Any]) -> None:
    items = dict(cost.line_items(variant, PRICES))
    assert items["RDS db.m7g.large Multi-AZ"] == PRICES["rds_hourly"]["db.m7g.large"] * 24 * 2
    assert items["Interface endpoint ssm x3 AZ"] == PRICES["interface_endpoint_az_hourly"] * 24 * 3
