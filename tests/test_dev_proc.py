"""orthweb_dev.proc: the ports the harness, the emulator and the tests listen on."""

from __future__ import annotations

import socket

from orthweb_dev.proc import ephemeral_low, free_port


def test_a_free_port_is_bindable_on_loopback_and_outside_the_ephemeral_range() -> None:
    """No outgoing connection of any process can be given the port before the server binds it."""
    for _ in range(20):
        port = free_port()
        assert port < ephemeral_low()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))


def test_a_process_is_never_handed_the_same_port_twice() -> None:
    """The harness asks for several ports before any server binds one: each must be distinct, or
    the second server to start finds its port taken by the first."""
    ports = [free_port() for _ in range(2000)]
    assert len(set(ports)) == len(ports)
