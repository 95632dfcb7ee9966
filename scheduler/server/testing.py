"""`ProcessCluster`: real server processes on 127.0.0.1 for tests, benchmarks and experiments.

Synchronous on purpose (plain `subprocess`), so a pytest fixture, a perf script or a REPL can
use it alike. Readiness is always awaited by polling with a deadline, never a fixed sleep;
`close()` kills whatever is still running, so a fixture cleans up even when a test fails.
Each server's output goes to `DIR/<id>.log` (a file, not a pipe that could fill and block it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from scheduler.server.local_cluster import ClusterPlan, NodePlan, free_port, plan_cluster

__all__ = ["ProcessCluster", "poll"]


def poll(predicate: Any, *, timeout_s: float, interval_s: float = 0.05, what: str = "condition") -> Any:
    """Call `predicate` until it returns something truthy or the deadline passes."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s}s")
        time.sleep(interval_s)


class ProcessCluster:
    def __init__(self, directory: Path, count: int = 3, *, extra_args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None, secret: bool = True) -> None:
        args = ["--election-timeout-ms", "300", "--heartbeat-ms", "50", "--log-level", "info",
                *extra_args]
        self.plan: ClusterPlan = plan_cluster(directory, count, extra=args, secret=secret)
        self.env = {**os.environ, **(env or {})}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.agents: dict[str, tuple[NodePlan, list[str]]] = {}  # id -> plan, argv
        self._http = httpx.Client(timeout=2.0)

    @classmethod
    def started(cls, directory: Path, count: int = 3, *, attempts: int = 3,
                **kwargs: Any) -> ProcessCluster:
        """A cluster with a leader elected. Free ports are picked before the servers bind them,
        so another process on this machine may take one first; when a server exits at once,
        the cluster is planned again on fresh ports (at most `attempts` times)."""
        for attempt in range(attempts):
            cluster = cls(directory / f"try{attempt}", count, **kwargs)
            cluster.start()
            try:
                cluster.wait_leader()
                return cluster
            except TimeoutError:
                exited = [i for i, p in cluster.processes.items() if p.poll() is not None]
                print(cluster.log_tail())
                cluster.close()
                if not exited or attempt == attempts - 1:
                    raise
        raise AssertionError("unreachable: the loop returns or raises")

    # ---- lifecycle -----------------------------------------------------------------------------
    def __enter__(self) -> ProcessCluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def node(self, node_id: str) -> NodePlan:
        if node_id in self.agents:
            return self.agents[node_id][0]
        return next(n for n in self.plan.nodes if n.node_id == node_id)

    def add_agent(self, node_id: str, tags: str = "") -> None:
        """Plan (not start) a non-voting agent that joins the servers as a learner."""
        node = NodePlan(node_id, ("127.0.0.1", free_port()), ("127.0.0.1", free_port()),
                        self.plan.directory / node_id)
        argv = self.plan.argv(self.plan.nodes[0])  # the servers' flags, then this node's own
        argv[argv.index("server")] = "agent"
        own = {"--id": node_id, "--data-dir": str(node.data_dir), "--raft": f"127.0.0.1:{node.raft[1]}",
               "--http": f"127.0.0.1:{node.http[1]}"}
        for flag, value in own.items():
            argv[argv.index(flag) + 1] = value
        self.agents[node_id] = (node, argv + (["--tags", tags] if tags else []))

    @property
    def ids(self) -> list[str]:
        return [n.node_id for n in self.plan.nodes]

    def start(self, *node_ids: str) -> None:
        for node_id in node_ids or self.ids:
            node = self.node(node_id)
            assert node_id not in self.processes or self.processes[node_id].poll() is not None
            log = open(self.plan.directory / f"{node_id}.log", "ab")
            argv = self.agents[node_id][1] if node_id in self.agents else self.plan.argv(node)
            self.processes[node_id] = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, env=self.env, start_new_session=True)
            log.close()

    def kill(self, node_id: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[node_id]
        if process.poll() is None:
            process.send_signal(sig)
            process.wait(timeout=10)

    def alive(self) -> list[str]:
        return [i for i, p in self.processes.items() if p.poll() is None]

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self._http.close()

    # ---- observing -----------------------------------------------------------------------------
    def url(self, node_id: str) -> str:
        return self.node(node_id).http_url

    def status(self, node_id: str) -> dict[str, Any] | None:
        try:
            response = self._http.get(self.url(node_id) + "/v1/")
        except httpx.HTTPError:
            return None
        return response.json()["raft"] if response.status_code == 200 else None

    def leader(self) -> str | None:
        """The leader a majority of the live nodes agree on, in one term; None otherwise."""
        views = [s for s in (self.status(i) for i in self.alive() if i not in self.agents) if s is not None]
        leaders = [s["id"] for s in views if s["role"] == "leader"]
        if len(leaders) != 1:
            return None
        agreeing = [s for s in views if s["leader"] == leaders[0]]
        return leaders[0] if len(agreeing) > len(self.ids) // 2 else None

    def wait_leader(self, timeout_s: float = 15.0, *, not_: str | None = None) -> str:
        leader: str = poll(lambda: (l := self.leader()) is not None and l != not_ and l,
                           timeout_s=timeout_s, what="a leader")
        return leader

    def log_tail(self, lines: int = 40) -> str:
        parts = []
        for node_id in self.ids:
            path = self.plan.directory / f"{node_id}.log"
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {node_id} ---\n" + "\n".join(text))
        return "\n".join(parts)

    def endpoints(self) -> Iterator[str]:
        return (self.url(i) for i in self.ids)
