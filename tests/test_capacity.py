"""Database connections for several hosts: what RDS offers per class, and what the hosts need."""

from __future__ import annotations

import pytest

from orthweb import capacity
from orthweb.settings import Settings, SettingsError


@pytest.mark.parametrize(
    ("db_class", "gib"),
    [("db.t4g.micro", 1), ("db.t3.medium", 4), ("db.m7g.large", 8), ("db.r8g.xlarge", 32), ("db.m6i.48xlarge", 768)],
)
def test_class_memory_follows_the_family_and_size(db_class: str, gib: int) -> None:
    assert capacity.class_memory_gib(db_class) == gib


@pytest.mark.parametrize("db_class", ["db.x2g.large", "db.t4g.huge", "t4g.micro", "db.serverless"])
def test_unknown_classes_have_no_estimate(db_class: str) -> None:
    assert capacity.max_connections(db_class) is None


def test_the_estimate_stays_below_what_rds_sets() -> None:
    # RDS sets LEAST({DBInstanceClassMemory/9531392}, 5000); measured on 2 and 4 GiB classes: 198 and 413.
    small, medium = capacity.max_connections("db.t3.small"), capacity.max_connections("db.t3.medium")
    assert small is not None
    assert medium is not None
    assert 150 < small < 198
    assert 300 < medium < 413
    assert capacity.max_connections("db.r6g.16xlarge") == 5000  # RDS's cap


def test_hosts_need_their_index_connections_plus_one_host_more_plus_the_reserve() -> None:
    assert capacity.connections_needed(3, images_in_postgresql=False) == 4 * 5 + 10
    assert capacity.connections_needed(3, images_in_postgresql=True) == 4 * 6 + 10


@pytest.mark.parametrize(("hosts", "surge"), [(2, 150), (3, 134), (4, 125), (10, 110)])
def test_the_rolling_replacement_adds_exactly_one_host(hosts: int, surge: int) -> None:
    assert capacity.surge_percentage(hosts) == surge
    assert hosts * (surge - 100) / 100 >= 1  # at least one extra host
    assert hosts * (surge - 100) / 100 < 2  # and never two


def test_a_class_too_small_for_the_hosts_is_refused_with_the_arithmetic(monkeypatch: pytest.MonkeyPatch) -> None:
    # No RDS class is that small today: one host more per host would be (a heavier per-host pool).
    monkeypatch.setattr(capacity, "INDEX_CONNECTIONS", 20)
    with pytest.raises(SettingsError) as err:
        Settings(hosts=10, db_multi_az=True, endpoints_in_all_azs=True)
    message = str(err.value)
    for words in ("10 + 1", "x 21 connections", "+ 10 reserved need 241", "db.t4g.micro", "about 84", "larger class"):
        assert words in message, words
    Settings(hosts=10, db_multi_az=True, endpoints_in_all_azs=True, db_instance_class="db.m7g.large")
