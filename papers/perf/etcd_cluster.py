"""A 3-member etcd cluster on loopback ports in a temporary directory, for the peer benches.

The binary comes from Debian's `etcd-server` package (papers/perf/peers.py installs it on
demand). Members are plain subprocesses we own: `kill` sends SIGKILL to one of them by pid,
`close` kills whatever is left and removes the directory. Writes go through etcd's v3 HTTP
gateway (`POST /v3/kv/put` with base64 key and value), the same client code as ours.
"""

from __future__ import annotations

import base64
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from papers.perf.suite_raft import free_ports

START_TIMEOUT_S = 30.0


class EtcdCluster:
    def __init__(self, binary: str, *, members: int = 3, election_timeout_ms: int | None = None,
                 heartbeat_ms: int | None = None) -> None:
        self.binary = binary
        self.directory = Path(tempfile.mkdtemp(prefix="raftcron-etcd-"))
        ports = free_ports(2 * members)
        self.names = [f"e{i + 1}" for i in range(members)]
        self.client_ports = dict(zip(self.names, ports[:members]))
        self.peer_ports = dict(zip(self.names, ports[members:]))
        self.timing: list[str] = []
        if election_timeout_ms is not None:
            self.timing += ["--election-timeout", str(election_timeout_ms)]
        if heartbeat_ms is not None:
            self.timing += ["--heartbeat-interval", str(heartbeat_ms)]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.http = httpx.Client(timeout=2.0)

    def __enter__(self) -> EtcdCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.client_ports[name]}"

    def start(self) -> None:
        initial = ",".join(f"{n}=http://127.0.0.1:{self.peer_ports[n]}" for n in self.names)
        for name in self.names:
            log = open(self.directory / f"{name}.log", "wb")
            self.processes[name] = subprocess.Popen(
                [self.binary, "--name", name, "--data-dir", str(self.directory / name),
                 "--listen-client-urls", self.url(name), "--advertise-client-urls", self.url(name),
                 "--listen-peer-urls", f"http://127.0.0.1:{self.peer_ports[name]}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_ports[name]}",
                 "--initial-cluster", initial, "--initial-cluster-state", "new",
                 "--initial-cluster-token", f"bench-{self.directory.name}", *self.timing],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
        self.wait_leader()

    def status(self, name: str) -> dict[str, Any] | None:
        try:
            response = self.http.post(self.url(name) + "/v3/maintenance/status", json={})
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    def leader(self) -> str | None:
        """The member whose id a live member reports as leader."""
        for name in self.alive():
            status = self.status(name)
            if status is None or not status.get("leader"):
                continue
            leader_id = status["leader"]
            for other in self.alive():
                other_status = other == name and status or self.status(other)
                if other_status and other_status["header"]["member_id"] == leader_id:
                    return other
        return None

    def wait_leader(self, timeout_s: float = START_TIMEOUT_S) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            leader = self.leader()
            if leader is not None:
                return leader
            time.sleep(0.05)
        raise TimeoutError(f"etcd elected no leader within {timeout_s} s; see {self.directory}")

    def alive(self) -> list[str]:
        return [n for n, p in self.processes.items() if p.poll() is None]

    def kill(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
        for process in self.processes.values():
            process.wait(timeout=10)
        self.http.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def put_request(key: str, value: int) -> tuple[str, dict[str, str]]:
    """The gateway path and JSON body of an etcd v3 put."""
    return "/v3/kv/put", {"key": base64.b64encode(key.encode()).decode(),
                          "value": base64.b64encode(str(value).encode()).decode()}
