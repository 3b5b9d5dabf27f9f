"""The test S3 server's ports: a session moves to the next free set when one is taken."""

from __future__ import annotations

import socket

from tests.s3server import HOST, PORTS, free_port_set, port_set


def test_a_taken_port_moves_the_server_to_another_set():
    first = free_port_set()
    assert first is not None
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind((HOST, first["filer"][1]))
        held.listen()
        second = free_port_set()
    assert second is not None and second != first
    taken = {port for pair in first.values() for port in pair}
    assert first["filer"][1] not in {port for pair in second.values() for port in pair}
    assert taken != {port for pair in second.values() for port in pair}
    offset = second["s3"][0] - PORTS["s3"][0]
    assert second == port_set(offset)
    assert second["admin"][1] - second["admin"][0] == 10000
