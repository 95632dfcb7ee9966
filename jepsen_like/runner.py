"""`raftcron jepsen run`: real servers, a concurrent workload, faults from outside, a store.

Jepsen's loop, on one machine: start N server processes (each in its own network namespace
when the machine allows it), wait for a leader, then run the workload's clients and the
nemesis side by side until the time limit; heal everything; stop the servers; write the
store; check it (`store.analyze`).

Rules of this module:

1. The runner owns every process it starts and nothing else: servers are children started
   in their own sessions, addressed by pid only, stopped (SIGCONT, then SIGKILL) in a
   `finally` that runs whatever happened; namespaces are torn down the same way.
2. Readiness and leadership are awaited by polling with deadlines, never by fixed sleeps;
   the whole run has a deadline (time limit + start-up + recovery bounds).
3. Every mode that is not the real thing is labelled in `run.json` and `results.json`: a
   partition without namespaces drops frames inside the transport (`--fault-drop-file`),
   which is said in so many words.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import httpx
import trio

from jepsen_like.clients import CronClient, RegisterOptions, RegisterWorkload, cron_job_spec
from jepsen_like.history import HistoryRecorder
from jepsen_like.nemesis import (
    FAMILIES, TARGETS, FakeTime, Nemesis, NemesisOptions, find_libfaketime, plan_faults,
)
from jepsen_like.netns import NamespaceNetwork, Probe, probe
from jepsen_like.run_options import NETWORKS, WORKLOADS, families
from jepsen_like.store import RUN_FILES, TimelineWriter, analyze, new_run_dir, write_json
from scheduler.server.local_cluster import ClusterPlan, NodePlan, free_port

__all__ = ["Cluster", "RunOptions", "choose_clock", "choose_network", "execute", "summary_lines"]

START_TIMEOUT_S: Final = 20.0  # a server process answering /health
LEADER_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 10.0
STATUS_TIMEOUT_S: Final = 1.0
NETNS_RAFT_PORT: Final = 7001
NETNS_HTTP_PORT: Final = 8080
CRON_JOB: Final = "jepsen-tick"
TRANSPORT_LABEL: Final = (
    "FALLBACK, not a real network fault: network namespaces are unavailable here, so a "
    "partition drops Raft frames inside each server's transport (--fault-drop-file); "
    "node-to-node HTTP (agent reports to the leader) is not cut")


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    nodes: int = 5
    time_limit_s: float = 60.0
    workload: str = "register"
    nemesis: tuple[str, ...] = FAMILIES
    targets: tuple[str, ...] = TARGETS
    rate: float = 30.0
    concurrency: int | None = None  # default: 2 per node
    seed: int | None = None
    store: Path = Path("store")
    network: str = "auto"
    op_timeout_s: float = 5.0
    fault_s: float = 3.0  # faults last 0.5x .. 1.5x this
    interval_s: float = 2.0  # quiet periods between faults last 0.5x .. 1.5x this
    skew_ms_max: float = 1_500.0
    skew_rate_max: float = 0.002
    election_timeout_ms: float = 300.0
    heartbeat_ms: float = 50.0
    schedule: str = "@every 1s"  # cron: the job's schedule
    recovery_s: float = 5.0  # cron: after healing, how long ticks are watched before judging
    liveness_slack_ms: float = 1_000.0  # added to the no-SPOF bound for real processes
    check_time_limit_s: float = 60.0
    keep_data: bool = False
    plot: bool = True
    echo: bool = True  # progress lines on stderr

    def __post_init__(self) -> None:
        if not 1 <= self.nodes <= 50:
            raise ValueError("--nodes must be between 1 and 50")
        if not 0 < self.time_limit_s <= 24 * 3600:
            raise ValueError("--time-limit must be between 0 and 86400 seconds")
        if self.workload not in WORKLOADS:
            raise ValueError(f"--workload must be one of {', '.join(WORKLOADS)}")
        if self.network not in NETWORKS:
            raise ValueError(f"--network must be one of {', '.join(NETWORKS)}")
        if not self.fault_s > 0 or not self.interval_s >= 0 or not self.recovery_s >= 0:
            raise ValueError("fault durations and intervals must be positive")
        self.nemesis_options()  # validates families and targets

    @property
    def worker_count(self) -> int:
        return self.concurrency if self.concurrency is not None else 2 * self.nodes

    def nemesis_options(self) -> NemesisOptions:
        return NemesisOptions(
            families=self.nemesis, targets=self.targets, first_s=min(1.0, self.time_limit_s / 4),
            fault_s_min=0.5 * self.fault_s, fault_s_max=1.5 * self.fault_s,
            quiet_s_min=0.5 * self.interval_s, quiet_s_max=1.5 * self.interval_s,
            skew_ms_min=min(200.0, self.skew_ms_max), skew_ms_max=self.skew_ms_max,
            skew_rate_max=self.skew_rate_max)

    def no_spof_bound_ms(self) -> float:
        """DESIGN.md's L = max election timeout + heartbeat + network delay + planner period,
        plus what the real server adds: a new leader listens to agents for `LISTEN_S_DEFAULT`
        before its first round (scheduler/server/leader.py, Rule 5); plus slack for real
        processes on a shared machine, plus the largest clock bump (a leader whose clock is
        ahead fires early by that much)."""
        from scheduler.server import leader

        listen_ms = 1000.0 * float(getattr(leader, "LISTEN_S_DEFAULT", 0.0))
        bound = 2 * self.election_timeout_ms + self.heartbeat_ms + 50.0 + 100.0 + listen_ms
        bound += self.liveness_slack_ms
        if "skew" in self.nemesis:
            bound += self.skew_ms_max
        return bound

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["store"] = str(self.store)
        document["nemesis"] = list(self.nemesis)
        document["targets"] = list(self.targets)
        document["concurrency"] = self.worker_count
        return document


# ---- the servers ---------------------------------------------------------------------------------

@dataclass(slots=True)
class _Node:
    plan: NodePlan
    process: subprocess.Popen[bytes] | None = None
    paused: bool = False
    starts: int = 0


class Cluster:
    """Real server processes under the nemesis: the `ClusterControl` of nemesis.py. Every
    action writes its timeline event, so the timeline says what was done, when."""

    def __init__(self, run_dir: Path, node_ids: list[str], options: RunOptions,
                 timeline: TimelineWriter, *, network: NamespaceNetwork | None, fault_mode: str,
                 fake_library: str | None, rng: random.Random) -> None:
        self.run_dir = run_dir
        self.node_ids = node_ids
        self.options = options
        self.timeline = timeline
        self.network = network
        self.rng = rng
        self.token = secrets.token_hex(16)
        self.fault_mode = fault_mode  # netns | transport | loopback (no partitions)
        (run_dir / "nodes").mkdir(exist_ok=True)
        self.secret_file = self._private_file("secret", secrets.token_hex(32))
        self.token_file = self._private_file("token", self.token)
        self.nodes = {node: _Node(self._plan(index, node)) for index, node in enumerate(node_ids)}
        plans = tuple(n.plan for n in self.nodes.values())
        self.plan = ClusterPlan(run_dir, plans, self.secret_file)
        self.clocks: dict[str, FakeTime] = {}
        if fake_library is not None:
            (run_dir / "clocks").mkdir(exist_ok=True)
            self.clocks = {node: FakeTime(fake_library, run_dir / "clocks" / node)
                           for node in node_ids}
        if fault_mode == "transport":
            (run_dir / "faults").mkdir(exist_ok=True)
        self.partitioned = False
        self._http = httpx.AsyncClient(timeout=STATUS_TIMEOUT_S,
                                       headers={"Authorization": f"Bearer {self.token}"})

    def _private_file(self, name: str, content: str) -> Path:
        path = self.run_dir / name
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(content + "\n")
        return path

    def _plan(self, index: int, node: str) -> NodePlan:
        data_dir = self.run_dir / "data" / node
        if self.network is not None:
            host = self.network.address(node)
            return NodePlan(node, (host, NETNS_RAFT_PORT), (host, NETNS_HTTP_PORT), data_dir)
        return NodePlan(node, ("127.0.0.1", free_port()), ("127.0.0.1", free_port()), data_dir)

    def url(self, node: str) -> str:
        return self.nodes[node].plan.http_url

    def urls(self) -> list[str]:
        return [self.url(node) for node in self.node_ids]

    def argv(self, node: str) -> list[str]:
        options = self.options
        extra = ["--token-file", str(self.token_file), "--log-level", "info",
                 "--election-timeout-ms", f"{options.election_timeout_ms:g}",
                 "--heartbeat-ms", f"{options.heartbeat_ms:g}",
                 "--trace", str(self.run_dir / "nodes" / f"{node}.trace.jsonl")]
        if self.fault_mode == "transport":
            extra += ["--fault-drop-file", str(self._drop_file(node))]
        prefix = self.network.exec_prefix(node) if self.network is not None else []
        return [*prefix, *self.plan.argv(self.nodes[node].plan, extra=tuple(extra))]

    def _drop_file(self, node: str) -> Path:
        return self.run_dir / "faults" / f"{node}.drop"

    def _environment(self, node: str) -> tuple[dict[str, str], dict[str, Any]]:
        environment = dict(os.environ)
        fields: dict[str, Any] = {}
        clock = self.clocks.get(node)
        if clock is not None:
            rate_max = self.options.skew_rate_max
            clock.rate = 1.0 + self.rng.uniform(-rate_max, rate_max)
            clock.write()
            environment.update(clock.environment())
            fields = {"clock_rate": round(clock.rate, 6), "offset_ms": round(clock.offset_ms, 3)}
        return environment, fields

    # ---- process life cycle ----------------------------------------------------------------------
    async def start(self, node: str) -> None:
        state = self.nodes[node]
        if state.process is not None and state.process.poll() is None:
            return
        environment, fields = self._environment(node)
        with open(self.run_dir / "nodes" / f"{node}.log", "ab") as log:
            state.process = subprocess.Popen(self.argv(node), stdout=log, stderr=subprocess.STDOUT,
                                             env=environment, start_new_session=True)
        state.paused, state.starts = False, state.starts + 1
        self.timeline.write(node, "start", local_offset_ms=self._offset(node),
                            pid=state.process.pid,
                            lifetime=state.starts, **fields)
        await self._wait_healthy(node)

    async def _wait_healthy(self, node: str) -> None:
        process = self.nodes[node].process
        assert process is not None
        with trio.move_on_after(START_TIMEOUT_S):
            while process.poll() is None:
                try:
                    response = await self._http.get(self.url(node) + "/health")
                    if response.status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await trio.sleep(0.05)
        code = process.poll()
        why = f"exited with code {code}" if code is not None else \
            f"did not answer /health within {START_TIMEOUT_S:g} s"
        raise RuntimeError(f"{node} {why}; see nodes/{node}.log")

    async def kill(self, node: str) -> None:
        process = self.nodes[node].process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL)
        try:
            await trio.to_thread.run_sync(process.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{node} (pid {process.pid}) still runs {STOP_TIMEOUT_S:g} s "
                               "after SIGKILL") from None
        self.nodes[node].paused = False
        self.timeline.write(node, "crash", local_offset_ms=self._offset(node), signal="SIGKILL")

    async def pause(self, node: str) -> None:
        process = self.nodes[node].process
        if process is None or process.poll() is not None or self.nodes[node].paused:
            return
        process.send_signal(signal.SIGSTOP)
        self.nodes[node].paused = True
        self.timeline.write(node, "pause", local_offset_ms=self._offset(node), signal="SIGSTOP")

    async def resume(self, node: str) -> None:
        process = self.nodes[node].process
        if process is None or process.poll() is not None or not self.nodes[node].paused:
            return
        process.send_signal(signal.SIGCONT)
        self.nodes[node].paused = False
        self.timeline.write(node, "resume", local_offset_ms=self._offset(node), signal="SIGCONT")

    async def partition(self, sides: list[list[str]]) -> None:
        if self.network is not None:
            await trio.to_thread.run_sync(self.network.partition, sides)
        elif self.fault_mode != "transport":
            raise RuntimeError("partitions need --network netns or transport")
        else:
            side_of = {node: index for index, side in enumerate(sides) for node in side}
            for node in self.node_ids:
                blocked = [peer for peer in self.node_ids
                           if peer != node and side_of.get(peer) != side_of.get(node)]
                _write_atomically(self._drop_file(node), " ".join(blocked) + "\n")
        self.partitioned = True
        self.timeline.write("net", "partition", sides=sides, via=self.fault_mode)

    async def heal(self) -> None:
        if self.network is not None:
            await trio.to_thread.run_sync(self.network.heal)
        elif self.fault_mode == "transport":
            for node in self.node_ids:
                _write_atomically(self._drop_file(node), "")
        self.partitioned = False
        self.timeline.write("net", "heal", via=self.fault_mode)

    async def set_clock(self, node: str, offset_ms: float) -> None:
        clock = self.clocks.get(node)
        if clock is None:
            raise RuntimeError("clock skew needs libfaketime (apt-get install faketime)")
        delta_ms = offset_ms - clock.offset_ms
        clock.offset_ms = offset_ms
        clock.write()
        clock.history.append((self.timeline.now_ms(), offset_ms))
        self.timeline.write(node, "clock_jump", local_offset_ms=offset_ms, offset_ms=offset_ms,
                            delta_ms=round(delta_ms, 3),
                            rate=round(clock.rate, 6))

    def _offset(self, node: str) -> float:
        clock = self.clocks.get(node)
        return clock.offset_ms if clock is not None else 0.0

    async def heal_everything(self) -> None:
        """Undo every fault: reconnect, reset clocks, resume, restart. Idempotent."""
        if self.partitioned:
            await self.heal()
        for node in self.node_ids:
            if self.clocks.get(node) is not None and self.clocks[node].offset_ms != 0.0:
                await self.set_clock(node, 0.0)
            if self.nodes[node].paused:
                await self.resume(node)
        for node in self.node_ids:
            process = self.nodes[node].process
            if process is None or process.poll() is not None:
                await self.start(node)

    async def stop_all(self) -> None:
        """SIGCONT then SIGKILL every server we started; wait for each (bounded)."""
        for node, state in self.nodes.items():
            process = state.process
            if process is None or process.poll() is not None:
                continue
            process.send_signal(signal.SIGCONT)
            process.send_signal(signal.SIGKILL)
            try:
                await trio.to_thread.run_sync(process.wait, STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                print(f"jepsen: {node} (pid {process.pid}) did not exit after SIGKILL",
                      file=sys.stderr)
            self.timeline.write(node, "stop", local_offset_ms=self._offset(node), signal="SIGKILL")
        await self._http.aclose()

    # ---- observing -------------------------------------------------------------------------------
    async def status(self, node: str) -> dict[str, Any] | None:
        state = self.nodes[node]
        if state.process is None or state.process.poll() is not None or state.paused:
            return None
        try:
            response = await self._http.get(self.url(node) + "/v1/")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        raft: dict[str, Any] = response.json()["raft"]
        return raft

    async def leader(self) -> str | None:
        """The leader a majority of all nodes agree on (one term); None otherwise."""
        views: list[dict[str, Any]] = []

        async def look(node: str) -> None:
            view = await self.status(node)
            if view is not None:
                views.append(view)

        async with trio.open_nursery() as nursery:
            for node in self.node_ids:
                nursery.start_soon(look, node)
        leaders: set[str] = {str(view["id"]) for view in views if view["role"] == "leader"}
        for leader in leaders:
            agreeing = [view for view in views if view.get("leader") == leader]
            if len(agreeing) > len(self.node_ids) // 2:
                return leader
        return None

    async def wait_leader(self, timeout_s: float = LEADER_TIMEOUT_S) -> str:
        with trio.move_on_after(timeout_s):
            while True:
                leader = await self.leader()
                if leader is not None:
                    return leader
                await trio.sleep(0.1)
        raise RuntimeError(f"no leader within {timeout_s:g} s; see the node logs in "
                           f"{self.run_dir / 'nodes'}")


def _write_atomically(path: Path, text: str) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text(text)
    os.replace(partial, path)


# ---- one run -------------------------------------------------------------------------------------

@dataclass(slots=True)
class _Run:
    options: RunOptions
    seed: int
    run_dir: Path
    network_info: dict[str, Any]
    clock_info: dict[str, Any]
    meta: dict[str, Any] = field(default_factory=dict)


def choose_network(options: RunOptions) -> tuple[NamespaceNetwork | None, dict[str, Any]]:
    """Namespaces when partitions are wanted and the machine allows them; the labelled
    transport fallback otherwise (or when asked for)."""
    node_ids = [f"n{index + 1}" for index in range(options.nodes)]
    wants_cut = "partition" in options.nemesis
    if options.network == "transport" or (not wants_cut and options.network == "auto"):
        mode = "transport" if "partition" in options.nemesis else "loopback"
        info: dict[str, Any] = {"mode": mode, "label": TRANSPORT_LABEL if mode == "transport"
                                else "no partitions asked for: servers on 127.0.0.1"}
        return None, info
    found: Probe = probe()
    if found.available:
        network = NamespaceNetwork(node_ids)
        return network, {"mode": "netns", "probe": found.to_json(),
                         "label": "each server in its own network namespace on a bridge; "
                                  "partitions are iptables DROP rules inside the namespaces"}
    if options.network == "netns":
        raise RuntimeError(f"--network netns: namespaces are unavailable here: {found.reason}")
    return None, {"mode": "transport", "probe": found.to_json(), "label": TRANSPORT_LABEL}


def choose_clock(options: RunOptions) -> tuple[str | None, dict[str, Any]]:
    if "skew" not in options.nemesis:
        return None, {"mode": "real", "label": "no clock faults asked for"}
    library = find_libfaketime()
    if library is None:
        raise RuntimeError("the skew nemesis needs libfaketime: apt-get install faketime")
    return library, {"mode": "libfaketime", "library": library,
                     "label": "wall clock only (FAKETIME_DONT_FAKE_MONOTONIC); offsets set by the "
                              "nemesis, a rate per server process",
                     "skew_ms_max": options.skew_ms_max, "rate_max": options.skew_rate_max}


def execute(options: RunOptions) -> tuple[Path, dict[str, Any]]:
    """Run one test and check it: the run directory and its results."""
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**31)
    fake_library, clock_info = choose_clock(options)
    network, network_info = choose_network(options)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    run_dir = new_run_dir(options.store, f"{options.workload}-{stamp}-s{seed}")
    state = _Run(options, seed, run_dir, network_info, clock_info)
    if options.echo:
        print(f"jepsen: run {run_dir} (seed {seed}), network: {network_info['mode']}, "
              f"clock: {clock_info['mode']}", file=sys.stderr)
    interrupted = False
    try:
        trio.run(_execute, state, network, fake_library)
    except KeyboardInterrupt:
        interrupted = True  # the servers are stopped; check what was recorded, as Jepsen does
        print("jepsen: interrupted; checking what was recorded", file=sys.stderr)
    except (RuntimeError, OSError, BaseExceptionGroup) as error:  # nurseries may group them
        first = _first_leaf(error)
        if isinstance(first, (RuntimeError, OSError)):
            raise RuntimeError(f"{first} (run directory {run_dir})") from error
        raise
    finally:
        if not options.keep_data:
            shutil.rmtree(run_dir / "data", ignore_errors=True)
    results = analyze(run_dir, check_time_limit_s=options.check_time_limit_s, plot=options.plot)
    if interrupted:
        results["interrupted"] = True
        write_json(run_dir / RUN_FILES["results"], results)
    return run_dir, results


def _first_leaf(error: BaseException) -> BaseException:
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


async def _execute(state: _Run, network: NamespaceNetwork | None, fake_library: str | None) -> None:
    options, run_dir = state.options, state.run_dir
    rng = random.Random(state.seed)
    nemesis_rng, workload_rng, clock_rng = (random.Random(rng.random()) for _ in range(3))
    steps = plan_faults(options.nemesis_options(), options.time_limit_s, nemesis_rng)
    write_json(run_dir / RUN_FILES["plan"], {"options": options.nemesis_options().to_json(),
                                             "steps": [step.to_json() for step in steps]})
    origin_ns, origin_unix_ms = time.monotonic_ns(), time.time_ns() / 1e6
    history = HistoryRecorder(time.monotonic_ns)
    node_ids = [f"n{index + 1}" for index in range(options.nodes)]
    state.meta = {"t0_monotonic_ns": origin_ns, "t0_unix_ms": origin_unix_ms}
    _write_run(state, node_ids, None)
    with open(run_dir / RUN_FILES["timeline"], "w") as sink:
        timeline = TimelineWriter(sink, origin_ns, echo=_echo if options.echo else None)
        if network is not None:
            await trio.to_thread.run_sync(network.setup)
        try:
            cluster = Cluster(run_dir, node_ids, options, timeline, network=network,
                              fault_mode=state.network_info["mode"], fake_library=fake_library,
                              rng=clock_rng)
            total_s = (options.time_limit_s + 2 * START_TIMEOUT_S + 2 * LEADER_TIMEOUT_S
                       + options.recovery_s + 60)
            with trio.fail_after(total_s):
                try:
                    await _drive(state, cluster, history, steps, workload_rng)
                finally:
                    with trio.CancelScope(shield=True):
                        await cluster.stop_all()
        finally:
            history.dump(run_dir / RUN_FILES["history"])
            if network is not None:
                network.teardown()
    state.meta["duration_s"] = round((time.monotonic_ns() - origin_ns) / 1e9, 3)
    _write_run(state, node_ids, state.meta.get("cron"))


def _echo(record: dict[str, Any]) -> None:
    shown = {k: v for k, v in record.items() if k in ("sides", "offset_ms", "signal") and v}
    print(f"jepsen: [{record['t'] / 1000:7.2f} s] {record['kind']} {record['node']} "
          f"{json.dumps(shown) if shown else ''}".rstrip(), file=sys.stderr)


def _write_run(state: _Run, node_ids: list[str], cron: dict[str, Any] | None) -> None:
    document = {"workload": state.options.workload, "options": {**state.options.to_json(),
                                                                "seed": state.seed},
                "nodes": node_ids, "network": state.network_info, "clock": state.clock_info,
                "python": sys.version.split()[0], **state.meta}
    if cron is not None:
        document["cron"] = cron
    write_json(state.run_dir / RUN_FILES["run"], document)


async def _drive(state: _Run, cluster: Cluster, history: HistoryRecorder, steps: list[Any],
                 rng: random.Random) -> None:
    options = state.options
    async with trio.open_nursery() as nursery:
        for node in cluster.node_ids:
            nursery.start_soon(cluster.start, node)
    await cluster.wait_leader()
    nemesis = Nemesis(cluster, steps, history)
    try:
        if options.workload == "register":
            await _register(options, cluster, history, nemesis, rng)
        else:
            await _cron(state, cluster, history, nemesis)
    finally:
        plan_path = state.run_dir / RUN_FILES["plan"]
        plan = json.loads(plan_path.read_text())
        plan.update({"done": nemesis.done, "errors": nemesis.errors})
        write_json(plan_path, plan)


async def _register(options: RunOptions, cluster: Cluster, history: HistoryRecorder,
                    nemesis: Nemesis, rng: random.Random) -> None:
    workload = RegisterWorkload(
        RegisterOptions(concurrency=options.worker_count, rate=options.rate,
                        op_timeout_s=options.op_timeout_s, token=cluster.token,
                        workers_per_key=min(options.worker_count, max(3, options.nodes))),
        cluster.urls(), history, rng)
    began = trio.current_time()
    deadline = began + options.time_limit_s
    async with trio.open_nursery() as nursery:
        nursery.start_soon(nemesis.run, began, deadline)
        nursery.start_soon(workload.run, deadline)


async def _cron(state: _Run, cluster: Cluster, history: HistoryRecorder, nemesis: Nemesis) -> None:
    options = state.options
    client = CronClient(cluster.urls(), history, name=CRON_JOB, token=cluster.token,
                        op_timeout_s=options.op_timeout_s)
    cron: dict[str, Any] = {"job": CRON_JOB, "schedule": options.schedule,
                            "bound_ms": options.no_spof_bound_ms()}
    state.meta["cron"] = cron
    try:
        spec = cron_job_spec(CRON_JOB, options.schedule, state.run_dir / RUN_FILES["ledger"])
        created = await client.create(spec, trio.current_time() + LEADER_TIMEOUT_S)
        cron["anchor_ms"] = created.get("anchor_ms")
        began = trio.current_time()
        deadline = began + options.time_limit_s
        async with trio.open_nursery() as nursery:
            nursery.start_soon(nemesis.run, began, deadline)
            nursery.start_soon(client.poll, deadline)
        await cluster.wait_leader()
        await client.poll(trio.current_time() + options.recovery_s)
        final = None
        with trio.move_on_after(LEADER_TIMEOUT_S):
            while final is None:
                final = await client.view()
        cron["final_view"] = final
    finally:
        _write_outcomes(state.run_dir, client)
        await client.aclose()


def _write_outcomes(run_dir: Path, client: CronClient) -> None:
    log = client.log
    write_json(run_dir / RUN_FILES["outcomes"], {
        "outcomes": log.to_json(),
        "gaps": [list(gap) for gap in log.gaps], "polls": log.polls,
        "poll_failures": client.poll_failures, "final_view": client.last_view,
        "last_poll_ms": client.last_ok_ms,
    })


def summary_lines(run_dir: Path, results: dict[str, Any]) -> list[str]:
    """One screen: what ran, what the nemesis did, each checker's verdict and evidence."""
    ops = results["ops"]
    network = results["network"]
    lines = [f"run: {run_dir}",
             f"network: {network['mode']} - {network.get('label', '')}",
             f"clock: {results['clock']['mode']}",
             f"ops: {ops['invoked']} invoked: {ops['ok']} ok, {ops['fail']} fail, "
             f"{ops['info']} info"
             + (f", {ops['open']} open" if ops["open"] else ""),
             f"nemesis: {json.dumps(results['nemesis'].get('events', {}))}"]
    for error in results["nemesis"].get("errors", []):
        lines.append(f"  nemesis error: {error}")
    for name, checker in results["checkers"].items():
        verdict = {True: "valid", False: "INVALID"}.get(checker["valid"], "unknown")
        detail = ""
        if name == "linearizability":
            detail = f" ({checker.get('op_count', 0)} ops, {checker.get('info_count', 0)} info, " \
                     f"{checker.get('partition_count', 0)} keys)"
        elif name == "liveness":
            detail = f" (due {checker.get('due')}, fired {checker.get('fired')}, missed " \
                     f"{checker.get('missed')}, lost {checker.get('lost')})"
        elif name == "exactly_once":
            detail = f" ({checker.get('ticks_started', 0)} ticks started, " \
                     f"{checker.get('violation_count', 0)} violations)"
        elif name == "no_spof":
            detail = f" (bound {checker.get('bound_ms', 0):.0f} ms)"
        lines.append(f"{name}: {verdict}{detail}")
        for line in checker.get("explanation", [])[:12]:
            lines.append(f"  {line}")
        for violation in checker.get("violations", [])[:5]:
            lines.append(f"  {violation.get('kind')}: {violation.get('job', '')} "
                         f"{violation.get('tick_ms', '')} {violation.get('detail', '')}")
        if checker.get("error"):
            lines.append(f"  {checker['error']}")
    plot = results.get("plot") or {}
    if plot:
        lines.append(f"plot: {run_dir / plot['file']}" if plot.get("drawn")
                     else f"plot: not drawn ({plot.get('reason')})")
    overall = {True: "VALID", False: "INVALID"}.get(results["valid"], "UNKNOWN")
    lines.append(f"{overall}: results in {run_dir / RUN_FILES['results']}")
    return lines


# ---- the command line (jepsen_like/run_options.py has the options) ---------------------------------
def options_from_args(args: Any) -> RunOptions:
    return RunOptions(
        nodes=args.nodes, time_limit_s=args.time_limit, workload=args.workload,
        nemesis=families(args.nemesis), targets=families(args.targets), rate=args.rate,
        concurrency=args.concurrency, seed=args.seed, store=Path(args.store),
        network=args.network, op_timeout_s=args.op_timeout, fault_s=args.fault_duration,
        interval_s=args.nemesis_interval, skew_ms_max=args.skew_ms, schedule=args.schedule,
        recovery_s=args.recovery, keep_data=args.keep_data, plot=not args.no_plot,
        echo=not args.json)
