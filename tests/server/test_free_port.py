"""`free_port` keeps test and bench servers' ports out of the kernel's ephemeral range, where a
peer's reconnecting socket could take a killed server's port before its restart binds it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from scheduler.server import local_cluster
from scheduler.server.local_cluster import free_port


def _ephemeral() -> tuple[int, int]:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return low, high


def test_ports_are_distinct_bindable_and_outside_the_ephemeral_range() -> None:
    if local_cluster._listen_span() is None:
        pytest.skip("this kernel's ephemeral range leaves no span of 4,000 ports outside it")
    low, high = _ephemeral()
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(not low <= port <= high for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[-1]))  # free when handed out


def test_a_port_taken_by_a_listener_is_never_handed_out(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        monkeypatch.setattr(local_cluster, "_listen_span", lambda: (port, port + 1))  # only it
        assert free_port() != port  # 200 draws of the taken port, then the kernel's choice


def test_without_an_ephemeral_range_it_falls_back_to_the_kernels_choice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_cluster, "_listen_span", lambda: None)
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
