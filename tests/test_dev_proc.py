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
