"""A cluster of server processes on this machine: the plan (ports, directories, secret) and
`cluster up`'s foreground supervisor.

Why child processes and not N servers in one trio run: each server then fails alone (kill -9
a leader from another terminal and watch the rest), exactly as in production and in the
tests. The children run in their own sessions, so Ctrl-C reaches only the supervisor, which
then stops them in order with SIGTERM and waits (SIGKILL after a bound).
"""

from __future__ import annotations

import json
import os
import random
import secrets
import signal
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import trio

__all__ = ["ClusterPlan", "LocalCluster", "NodePlan", "free_port", "plan_cluster"]

STOP_GRACE_S: Final = 5.0
LINE_BYTES_MAX: Final = 64 * 1024
_COLORS: Final = ("\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m", "\033[31m")


@dataclass(frozen=True, slots=True)
class NodePlan:
    node_id: str
    raft: tuple[str, int]
    http: tuple[str, int]
    data_dir: Path

    @property
    def http_url(self) -> str:
        return f"http://{self.http[0]}:{self.http[1]}"


@dataclass(frozen=True, slots=True)
class ClusterPlan:
    directory: Path
    nodes: tuple[NodePlan, ...]
    secret_file: Path | None
    extra_args: tuple[str, ...] = field(default=())

    def peers_arg(self) -> str:
        return ",".join(f"{n.node_id}={n.raft[0]}:{n.raft[1]}" for n in self.nodes)

    def peers_http_arg(self) -> str:
        return ",".join(f"{n.node_id}={n.http[0]}:{n.http[1]}" for n in self.nodes)

    def argv(self, node: NodePlan, *, extra: tuple[str, ...] = ()) -> list[str]:
        """The command line that starts `node` (the secret by file, never inline)."""
        argv = [sys.executable, "-m", "raftcron", "server", "--id", node.node_id,
                "--data-dir", str(node.data_dir), "--raft", f"{node.raft[0]}:{node.raft[1]}",
                "--http", f"{node.http[0]}:{node.http[1]}", "--peers", self.peers_arg(),
                "--peers-http", self.peers_http_arg()]
        if self.secret_file is not None:
            argv += ["--secret-file", str(self.secret_file)]
        return argv + list(self.extra_args) + list(extra)

    def write(self) -> None:
        """DIR/cluster.json: how `cluster status` and `job` find the members."""
        self.directory.mkdir(parents=True, exist_ok=True)
        document = {"nodes": [{"id": n.node_id, "http_url": n.http_url,
                               "raft": f"{n.raft[0]}:{n.raft[1]}", "data_dir": str(n.data_dir)}
                              for n in self.nodes]}
        (self.directory / "cluster.json").write_text(json.dumps(document, indent=2) + "\n")


_handed_out: set[int] = set()  # never the same port twice in one process
_pick = random.SystemRandom()  # ports are the machine's, not a run's: no seed to honour


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free now, to listen on later, picked outside the kernel's ephemeral range.

    Why not bind 0 and close: that port comes from the ephemeral range, which the kernel also
    uses as source ports of outgoing connections. A killed server's port was then free for
    any reconnecting peer's connection to take, and the restart failed to bind. Outside the
    range only another listener can take it (bind 0 again when no such range exists)."""
    span = _listen_span()
    if span is not None:
        for _ in range(200):
            port = _pick.randrange(span[0], span[1])
            if port not in _handed_out and _bindable(host, port):
                _handed_out.add(port)
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port = int(sock.getsockname()[1])
        _handed_out.add(port)
        return port


def _listen_span() -> tuple[int, int] | None:
    """[low, high) of ports below (or above) the ephemeral range, at least 4,000 wide."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return None
    if low - 10000 >= 4000:
        return 10000, low
    if 65536 - (high + 1) >= 4000:
        return high + 1, 65536
    return None


def _bindable(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _secret_file(directory: Path) -> Path:
    path = directory / "secret"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
    return path


def plan_cluster(directory: Path, count: int, *, http_base: int = 0, raft_base: int = 0,
                 extra: list[str] | None = None, secret: bool = True) -> ClusterPlan:
    """Plan `count` servers n1..nN on 127.0.0.1; a base of 0 picks free ports."""
    directory.mkdir(parents=True, exist_ok=True)
    nodes = []
    for i in range(count):
        http_port = http_base + i if http_base else free_port()
        raft_port = raft_base + i if raft_base else free_port()
        node_id = f"n{i + 1}"
        nodes.append(NodePlan(node_id, ("127.0.0.1", raft_port), ("127.0.0.1", http_port),
                              directory / node_id))
    plan = ClusterPlan(directory, tuple(nodes), _secret_file(directory) if secret else None,
                       tuple(extra or ()))
    plan.write()
    return plan


class LocalCluster:
    """`cluster up`: run the planned servers until Ctrl-C, with `n1 | ...` prefixed output."""

    def __init__(self, plan: ClusterPlan) -> None:
        self.plan = plan
        self._color = sys.stdout.isatty()

    async def run_foreground(self) -> int:
        processes: list[tuple[NodePlan, Any]] = []
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                for index, node in enumerate(self.plan.nodes):
                    process = await trio.lowlevel.open_process(
                        self.plan.argv(node), stdout=-1, stderr=-2, start_new_session=True)
                    processes.append((node, process))
                    nursery.start_soon(self._pump, node, index, process)
                async for signum in signals:
                    self._say(f"stopping on {signal.Signals(signum).name}")
                    break
                await self._stop_all(processes)
                nursery.cancel_scope.cancel()
        return 0

    async def _pump(self, node: NodePlan, index: int, process: Any) -> None:
        prefix = f"{node.node_id:<3}|"
        if self._color:
            prefix = f"{_COLORS[index % len(_COLORS)]}{prefix}\033[0m"
        buffer = b""
        async for chunk in process.stdout:
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                print(f"{prefix} {line.decode(errors='replace')}", flush=True)
            if len(buffer) > LINE_BYTES_MAX:  # a runaway line: print what we have
                print(f"{prefix} {buffer.decode(errors='replace')}", flush=True)
                buffer = b""
        code = await process.wait()
        print(f"{prefix} exited with code {code}", flush=True)

    async def _stop_all(self, processes: list[tuple[NodePlan, Any]]) -> None:
        for _, process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_GRACE_S):
            for _, process in processes:
                await process.wait()
        for node, process in processes:
            if process.returncode is None:
                self._say(f"{node.node_id} did not stop in {STOP_GRACE_S}s: killing it")
                process.kill()
                await process.wait()

    def _say(self, text: str) -> None:
        print(f"cluster | {text}", file=sys.stderr, flush=True)
