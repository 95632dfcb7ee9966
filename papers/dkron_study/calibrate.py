"""Measure the cost model's constants from the real code on this machine.

    python -m papers.dkron_study.calibrate [--real] [--out papers/dkron_study/costs.json]

1. *Code paths*: run the uncosted simulator (3 servers, the scheduler, closed-loop run-now
   clients) with the safety observer switched off, and time with `perf_counter` every
   message handled (`SimCluster._deliver`, minus the applies inside it), every entry applied
   (`SchedulerStateMachine.apply`), every planner round and every agent request handled by
   the leader. Least squares then splits each into a fixed part and per-entry / per-command /
   per-effect / per-byte parts. These are the same functions `raftcron server` runs.
2. *Disk*: with `--real`, a one-server KV write's response time minus its CPU time (one
   synced save); without, the median time of a synced one-entry `LmdbStorage.save` in a
   temporary directory (also kept as a cross-check).
3. *HTTP* (`--real`): a real one-server cluster on loopback; sequential
   `POST /v1/jobs/{job}/run` requests; the server process's CPU time (utime + stime from
   /proc) per request, minus the Raft and apply share measured in step 1, is the jobs API's
   own cost. Without `--real` the previous value in costs.json (or the default) is kept.

Python is noisy on a shared machine: each constant is the median over several rounds.
"""

from __future__ import annotations

import argparse
import json
from functools import partial
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from papers.perf.harness import process_cpu_s
from papers.dkron_study.costed import COSTS_FILE, CostModel, load_costs, message_bytes

ROUNDS = 3


def _fit(rows: list[tuple[list[float], float]], names: list[str]) -> dict[str, float]:
    """Weighted least squares on the *median* time of each distinct feature vector (a shared
    machine preempts and collects garbage at random; medians ignore that), µs per feature,
    clipped at zero."""
    groups: dict[tuple[float, ...], list[float]] = {}
    for features, elapsed in rows:
        groups.setdefault(tuple(features), []).append(elapsed)
    x = np.array([list(k) for k in groups], dtype=float)
    y = np.array([statistics.median(v) for v in groups.values()], dtype=float)
    w = np.sqrt(np.array([len(v) for v in groups.values()], dtype=float))
    coef, *_ = np.linalg.lstsq(x * w[:, None], y * w, rcond=None)
    return {n: max(0.0, float(c)) for n, c in zip(names, coef)}


def measure_code_paths(seconds: float = 6.0, seed: int = 1) -> dict[str, Any]:
    from raft.messages import AppendEntries, EntryKind
    from sim.cluster import SimCluster
    from sim.scheduler_world import SchedulerWorld

    from papers.dkron_study.world import Scenario, ScenarioRun

    perf = time.perf_counter
    rows_msg: list[tuple[list[float], float]] = []
    rows_apply: list[tuple[list[float], float]] = []
    rows_round: list[tuple[list[float], float]] = []
    requests: list[float] = []
    nested = [0.0]

    from papers.dkron_study.costed import CostedCluster

    orig_deliver, orig_apply = SimCluster._deliver, CostedCluster._apply
    orig_round, orig_arrive, orig_propose = SchedulerWorld._round, SchedulerWorld._arrive, SchedulerWorld._propose

    def deliver(self: Any, message: Any) -> None:
        nested[0] = 0.0
        start = perf()
        orig_deliver(self, message)
        elapsed = (perf() - start) * 1e6 - nested[0]
        entries = len(message.entries) if isinstance(message, AppendEntries) else 0
        rows_msg.append(([1.0, entries, message_bytes(message)], elapsed))

    def apply(self: Any, node: Any, entry: Any) -> None:
        """The state machine's apply and the scheduler's reaction to it (planner, agent)."""
        start = perf()
        orig_apply(self, node, entry)
        elapsed = (perf() - start) * 1e6
        nested[0] += elapsed
        if entry.kind is EntryKind.NORMAL:
            commands, effects = _last_shape[0]
            rows_apply.append(([1.0, commands, effects], elapsed))

    _last_shape = [(1, 0)]
    from scheduler.machine import SchedulerStateMachine

    orig_sm_apply = SchedulerStateMachine.apply

    def sm_apply(self: Any, index: int, data: bytes) -> Any:
        result = orig_sm_apply(self, index, data)
        children = result.children or ()
        _last_shape[0] = (max(1, len(children)), len(result.effects) + sum(len(c.effects) for c in children))
        return result

    proposed = [0]

    def propose(self: Any, loop: Any, entries: Any, now_ms: int) -> None:
        proposed[0] += sum(len(e.commands) for e in entries)
        orig_propose(self, loop, entries, now_ms)

    def round_(self: Any, loop: Any) -> None:
        proposed[0] = 0
        start = perf()
        orig_round(self, loop)
        rows_round.append(([1.0, proposed[0]], (perf() - start) * 1e6))

    def arrive(self: Any, target: str, deliver_: Any) -> None:
        start = perf()
        orig_arrive(self, target, deliver_)
        requests.append((perf() - start) * 1e6)

    # The study world routes these through the costed CPU; here we call the plain ones.
    from papers.dkron_study import world as study_world

    class _Plain(study_world.StudyWorld):
        def _arrive(self, target: str, deliver_: Any) -> None:
            arrive(self, target, deliver_)

        def _round(self, loop: Any) -> None:
            round_(self, loop)

    SimCluster._deliver = deliver  # type: ignore[method-assign]
    CostedCluster._apply = apply  # type: ignore[method-assign]
    SchedulerStateMachine.apply = sm_apply  # type: ignore[method-assign]
    SchedulerWorld._propose = propose  # type: ignore[method-assign]
    saved_world = study_world.StudyWorld
    study_world.StudyWorld = _Plain  # type: ignore[misc]
    try:
        scenario = Scenario(servers=3, clients=30, seconds=seconds, run_ms=5.0, seed=seed,
                            payload_bytes=2048, costs=CostModel(recv_us=0, recv_entry_us=0, send_us=0,
                                                               byte_ns=0, save_us=0, save_entry_us=0, apply_us=0,
                                                               apply_command_us=0, apply_effect_us=0,
                                                               agent_request_us=0, client_request_us=0,
                                                               planner_round_us=0, planner_command_us=0,
                                                               timer_us=0))
        run = ScenarioRun(scenario)

        class _NoObserver:
            violations: list[Any] = []

            def on_ready(self, *args: Any) -> None:
                return None

        run.cluster.observer = _NoObserver()  # type: ignore[assignment]
        # Plain (uncosted) message handling: bypass the CPU queue.
        run.cluster._deliver = partial(deliver, run.cluster)  # type: ignore[method-assign]
        run.cluster.run_until(run.end_ms)
    finally:
        SimCluster._deliver = orig_deliver  # type: ignore[method-assign]
        CostedCluster._apply = orig_apply  # type: ignore[method-assign]
        SchedulerStateMachine.apply = orig_sm_apply  # type: ignore[method-assign]
        SchedulerWorld._propose = orig_propose  # type: ignore[method-assign]
        study_world.StudyWorld = saved_world  # type: ignore[misc]
    msg = _fit([([f[0], f[1]], t) for f, t in rows_msg], ["recv_us", "recv_entry_us"])
    app = _fit(rows_apply, ["apply_us", "apply_command_us", "apply_effect_us"])
    rnd = _fit(rows_round, ["planner_round_us", "planner_command_us"])
    return {
        "recv_us": msg["recv_us"], "recv_entry_us": msg["recv_entry_us"],
        "apply_us": app["apply_us"], "apply_command_us": app["apply_command_us"],
        "apply_effect_us": app["apply_effect_us"],
        "planner_round_us": rnd["planner_round_us"], "planner_command_us": rnd["planner_command_us"],
        "agent_request_us": statistics.median(requests) if requests else 0.0,
        "samples": {"messages": len(rows_msg), "applies": len(rows_apply), "rounds": len(rows_round),
                    "agent_requests": len(requests)},
    }


def measure_bytes(size: int = 64 * 1024, repeats: int = 200) -> float:
    """ns per byte to encode and decode an AppendEntries (the real transport's codec), from
    the difference between a 64 KiB entry and an empty one."""
    from raft.codec import decode_message, encode_message
    from raft.messages import AppendEntries, Entry

    def cost(data: bytes) -> float:
        message = AppendEntries(src="n1", dst="n2", term=1, prev_log_index=0, prev_log_term=0,
                                entries=(Entry(term=1, index=1, data=data),), commit=0)
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            decode_message(encode_message(message))
            samples.append(time.perf_counter() - start)
        return statistics.median(samples)

    return max(0.0, (cost(b"x" * size) - cost(b"")) * 1e9 / size)


def measure_fsync(samples: int = 40) -> float:
    from raft.lmdb_storage import LmdbStorage
    from raft.messages import Entry, HardState

    times = []
    with tempfile.TemporaryDirectory(prefix="dkron-study-fsync-") as root:
        storage = LmdbStorage.open(os.path.join(root, "n1"), cluster_id="c", node_id="n1",
                                   map_size=1 << 26, sync=True)
        try:
            for index in range(1, samples + 1):
                entry = Entry(term=1, index=index, data=b"x" * 100)
                start = time.perf_counter()
                storage.save(HardState(term=1, vote=None, commit=index - 1), [entry], None)
                times.append((time.perf_counter() - start) * 1e6)
        finally:
            storage.close()
    return statistics.median(times)


def measure_http_real(requests: int = 200) -> dict[str, Any]:
    """A real one-server cluster on loopback: the server process's CPU time (utime + stime)
    per sequential `PUT /v1/kv/{key}` (HTTP, one proposal, one synced save, one apply) and per
    `POST /v1/jobs/echo/run` (the same plus the run: dispatch, a `true` process, its report)."""
    import pathlib

    import httpx

    from scheduler.server.testing import ProcessCluster

    out: dict[str, Any] = {"requests": requests}
    with tempfile.TemporaryDirectory(prefix="dkron-study-real-") as root:
        cluster = ProcessCluster.started(pathlib.Path(root), 1, secret=False)
        try:
            url = cluster.url(cluster.ids[0])
            pid = cluster.processes[cluster.ids[0]].pid
            with httpx.Client(timeout=10.0) as http:
                job = {"name": "echo", "schedule": "@manually", "executor": "shell",
                       "executor_config": {"command": "true"}}
                http.post(f"{url}/v1/jobs", json=job).raise_for_status()
                calls: tuple[tuple[str, Callable[[int], Any]], ...] = (
                    ("kv_put", lambda i: http.put(f"{url}/v1/kv/k", json={"value": i})),
                    ("run_now", lambda i: http.post(f"{url}/v1/jobs/echo/run")))
                for name, call in calls:
                    for i in range(20):  # warm up
                        call(i).raise_for_status()
                    time.sleep(1.5)
                    cpu0 = process_cpu_s(pid)
                    latencies = []
                    for i in range(requests):
                        start = time.perf_counter()
                        call(i).raise_for_status()
                        latencies.append((time.perf_counter() - start) * 1000.0)
                    time.sleep(1.5)  # runs finish and report; a few idle heartbeats cost little
                    cpu1 = process_cpu_s(pid)
                    out[name] = {"server_cpu_us": round((cpu1 - cpu0) * 1e6 / requests, 1),
                                 "response_ms_p50": round(statistics.median(latencies), 3),
                                 "response_ms_mean": round(statistics.fmean(latencies), 3)}
        finally:
            cluster.close()
    return out


def measure_three_real(requests: int = 200) -> dict[str, Any]:
    """A real three-server cluster on loopback: CPU time per sequential KV write on the
    leader and on a follower (idle CPU over the same time subtracted), and the response time
    of KV writes and of run-now requests sent to the leader."""
    import pathlib

    import httpx

    from scheduler.server.testing import ProcessCluster

    out: dict[str, Any] = {"requests": requests}
    with tempfile.TemporaryDirectory(prefix="dkron-study-real3-") as root:
        cluster = ProcessCluster.started(pathlib.Path(root), 3, secret=False)
        try:
            leader = cluster.wait_leader()
            follower = next(n for n in cluster.ids if n != leader)
            pids = {"leader": cluster.processes[leader].pid, "follower": cluster.processes[follower].pid}
            url = cluster.url(leader)
            with httpx.Client(timeout=10.0) as http:
                job = {"name": "echo", "schedule": "@manually", "executor": "shell",
                       "executor_config": {"command": "true"}, "tags": {"role": "none:1"}}
                http.post(f"{url}/v1/jobs", json=job).raise_for_status()
                for i in range(20):
                    http.put(f"{url}/v1/kv/k", json={"value": i}).raise_for_status()
                time.sleep(1.0)
                idle0 = {k: process_cpu_s(p) for k, p in pids.items()}
                t0 = time.perf_counter()
                time.sleep(3.0)
                idle_rate = {k: (process_cpu_s(p) - idle0[k]) / (time.perf_counter() - t0) for k, p in pids.items()}
                cpu0 = {k: process_cpu_s(p) for k, p in pids.items()}
                t0 = time.perf_counter()
                latencies = []
                for i in range(requests):
                    start = time.perf_counter()
                    http.put(f"{url}/v1/kv/k", json={"value": i}).raise_for_status()
                    latencies.append((time.perf_counter() - start) * 1000.0)
                elapsed = time.perf_counter() - t0
                for key, pid in pids.items():
                    busy = process_cpu_s(pid) - cpu0[key] - idle_rate[key] * elapsed
                    out[f"{key}_cpu_us_per_write"] = round(max(0.0, busy) * 1e6 / requests, 1)
                out["idle_cpu_share"] = {k: round(v, 4) for k, v in idle_rate.items()}
                out["kv_put_response_ms_p50"] = round(statistics.median(latencies), 3)
                run_latencies = []
                for _ in range(requests // 2):
                    start = time.perf_counter()
                    http.post(f"{url}/v1/jobs/echo/run").raise_for_status()
                    run_latencies.append((time.perf_counter() - start) * 1000.0)
                out["run_now_response_ms_p50"] = round(statistics.median(run_latencies), 3)
                out["run_now_response_ms_p95"] = round(sorted(run_latencies)[int(0.95 * len(run_latencies))], 3)
        finally:
            cluster.close()
    return out


def calibrate(real: bool = False) -> dict[str, Any]:
    rounds = [measure_code_paths(seconds=12.0, seed=seed) for seed in range(1, ROUNDS + 1)]
    keys = [k for k in rounds[0] if k != "samples"]
    code = {k: round(statistics.median(r[k] for r in rounds), 3) for k in keys}
    fsync_us = round(measure_fsync(), 1)
    previous = load_costs()
    model: dict[str, Any] = previous.to_json()
    for name in ("apply_us", "apply_command_us", "apply_effect_us", "planner_round_us", "planner_command_us"):
        model[name] = code[name]
    model["byte_ns"] = round(measure_bytes(), 4)
    model["recv_entry_us"] = code["recv_entry_us"]
    model["save_entry_us"] = code["recv_entry_us"]
    model["timer_us"] = code["recv_us"]  # a tick is a step without a message to decode
    notes: dict[str, Any] = {"in_process": code, "fsync_wall_us": fsync_us,
                             "samples": rounds[0]["samples"]}
    if real:
        one = measure_http_real()
        three = measure_three_real()
        # Per KV write, with H the HTTP stack, S a synced save's CPU, A an apply, m one
        # message sent or received by the real transport:
        #   one-server leader  L1 = H + S + A
        #   three-server leader L3 = H + S + A + 4m   (2 appends out, 2 acknowledgements in)
        #   follower           F3 = S + A + 2m        (1 append in, 1 acknowledgement out)
        l1, l3, f3 = (one["kv_put"]["server_cpu_us"], three["leader_cpu_us_per_write"],
                      three["follower_cpu_us_per_write"])
        apply_one = code["apply_us"] + code["apply_command_us"]
        m = max(code["recv_us"], (l3 - l1) / 4.0)
        save_and_apply = max(apply_one, f3 - 2.0 * m)
        model["recv_us"] = model["send_us"] = round(m, 1)
        model["save_cpu_us"] = round(max(0.0, save_and_apply - apply_one), 1)
        # The disk wait, from the same real run: a one-server write waits for one synced save,
        # so its response time minus the CPU it cost is that save's wait (fsync latency on a
        # shared machine swings widely from minute to minute; the in-process median
        # `fsync_wall_us` is kept in the notes as a cross-check).
        model["save_us"] = round(max(0.0, one["kv_put"]["response_ms_p50"] * 1000.0 - l1), 1)
        model["client_request_us"] = model["agent_request_us"] = round(max(100.0, l1 - save_and_apply), 1)
        notes["real_one_server"] = one
        notes["real_three_servers"] = three
        notes["derived"] = {"L1": l1, "L3": l3, "F3": f3, "m": round(m, 1), "S+A": round(save_and_apply, 1)}
    else:
        model["save_us"] = round(max(0.0, fsync_us - model.get("save_cpu_us", 0.0)), 1)
    model["source"] = (f"calibrate.py{' --real' if real else ''} on {platform.node()} "
                       f"({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}), "
                       f"{time.strftime('%Y-%m-%d')}")
    return {"model": CostModel.from_json(model).to_json(), "notes": notes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="also measure a real one-server cluster (HTTP cost)")
    parser.add_argument("--out", default=COSTS_FILE)
    args = parser.parse_args()
    result = calibrate(real=args.real)
    with open(args.out, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")
    print(json.dumps(result["model"], indent=1))


if __name__ == "__main__":
    main()
