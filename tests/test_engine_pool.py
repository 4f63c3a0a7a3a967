"""The test engine's one address pool (orthweb_dev.engine.ADDRESS_POOL): an engine already running
with other pools is refused with a message naming the fix, since the tests list their DICOM peer
there (containers.ENGINE_CLIENTS, a /16: a peer granted find may be that wide without a
certificate). The engine itself is checked in tests/test_engine.py."""

from __future__ import annotations

import ipaddress

import pytest

from orthweb.settings import WIDEST_READ_NETWORK
from orthweb_dev import engine
from orthweb_dev.containers import ENGINE_CLIENTS


@pytest.mark.parametrize("pools", [[], [("172.17.0.0/16", 16)], [(engine.ADDRESS_POOL, 24), ("10.9.0.0/16", 24)]])
def test_an_engine_with_other_pools_is_refused_naming_the_option(
    monkeypatch: pytest.MonkeyPatch, pools: list[tuple[str, int]]
) -> None:
    monkeypatch.setattr(engine, "engine_pools", lambda: pools)
    with pytest.raises(engine.EngineError) as err:
        engine.check_address_pool()
    assert "--default-address-pool base=172.30.0.0/16,size=24" in str(err.value)
    assert "\n" not in str(err.value)


def test_an_engine_with_the_pool_is_accepted_and_the_tests_peer_is_no_wider_than_a_reader_may_be(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine, "engine_pools", lambda: [(engine.ADDRESS_POOL, engine.ADDRESS_POOL_SIZE)])
    engine.check_address_pool()
    assert ENGINE_CLIENTS == engine.ADDRESS_POOL
    assert ipaddress.ip_network(ENGINE_CLIENTS).prefixlen == WIDEST_READ_NETWORK
