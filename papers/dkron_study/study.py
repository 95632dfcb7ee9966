"""The Dkron study's experiments, run on raftcron in the costed simulator.

    raftcron paper dkron-study [--quick] [--json] [--out DIR] [--seed N] [--workers N]

Four experiments (README.md explains each and shows the results):

1. `stages`: an on-demand run's pipeline, stage by stage, at light and at heavy load;
2. `usl`: throughput versus servers and versus agents, with Universal Scalability Law fits;
3. `factorial`: the study's 2^(6-3) design (D = AB, E = AC, F = BC), replicated;
4. `load_shape`: k6-style virtual users ramping 0 → 20 → 60 → 0, response-time percentiles
   and error rate.

Every scenario is one seeded simulation, so the same seed gives the same numbers, whatever
`--workers` is. Only `wall_seconds` differs from run to run.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from papers.dkron_study.costed import CostModel, load_costs
from papers.dkron_study.factorial import DKRON_DESIGN, analyse
from papers.dkron_study.usl import fit_usl, usl
from papers.dkron_study.world import STAGES, Scenario, ScenarioRun, percentile

__all__ = ["StudyOptions", "run_study", "FACTORS"]

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "out")
CLIENTS_PER_NODE = 16  # one per executor token: every slot could be busy if dispatch were free

# The 2^(6-3) factors: name, what −1 and +1 mean, and how they set a scenario.
FACTORS: dict[str, dict[str, Any]] = {
    "A": {"name": "on-demand jobs", "low": "no: each request creates a scheduled job (@every 10s)",
          "high": "yes: each request creates a job and runs it now (?runoncreate)"},
    "B": {"name": "executor CPU cost", "low": "10 ms echo", "high": "200 ms CPU-bound (shares the node's 2 cores)"},
    "C": {"name": "payload size", "low": "256 B", "high": "32 KiB in the job definition"},
    "D": {"name": "servers", "low": "3", "high": "5"},
    "E": {"name": "agents", "low": "0", "high": "3"},
    "F": {"name": "concurrency", "low": "allow", "high": "forbid"},
}
RESPONSES = {
    "response_mean_ms": "mean response time (ms)",
    "response_p95_ms": "p95 response time (ms)",
    "executions_s": "executions finished per s",
    "error_rate": "error rate",
}
LOAD_STAGES = ((60.0, 20), (60.0, 60), (60.0, 0))
# The load shape is run on nodes with these CPU limits (Kubernetes millicores, as the Dkron
# study's "CPU limit" factor): the raftcron process's CPU costs scale by 1000 / millicores.
LOAD_MILLICORES = (1000.0, 250.0, 100.0)
FACTORIAL_VUS = 60  # the load shape's peak, constant


@dataclass(slots=True)
class StudyOptions:
    quick: bool = False
    seed: int = 0
    workers: int = 1
    costs: CostModel | None = None
    only: tuple[str, ...] = ("stages", "usl", "factorial", "load_shape", "validation")


# ---- the scenarios ---------------------------------------------------------------------------------
def stage_scenarios(opts: StudyOptions) -> dict[str, Scenario]:
    seconds = 10.0 if opts.quick else 20.0
    base = Scenario(seed=opts.seed, seconds=seconds, run_ms=100.0, costs=opts.costs)
    return {
        "light: 3 servers, 2 runs/s": replace(base, servers=3, rate_per_s=2.0, clients=4,
                                              seconds=seconds if opts.quick else 60.0),
        "heavy: 3 servers, 48 clients": replace(base, servers=3, clients=3 * CLIENTS_PER_NODE),
        "heavy: 3 servers + 6 agents, 96 clients": replace(base, servers=3, agents=6, where="agents",
                                                           clients=6 * CLIENTS_PER_NODE),
    }


def usl_scenarios(opts: StudyOptions) -> dict[str, list[tuple[int, Scenario]]]:
    """(N, scenario) pairs; each N once per seed (two seeds in the full study)."""
    seconds = 8.0 if opts.quick else 12.0
    seeds = [opts.seed] if opts.quick else [opts.seed, opts.seed + 1]
    servers = (1, 3, 5, 7) if opts.quick else tuple(range(1, 10))
    agents = (1, 2, 4, 6) if opts.quick else tuple(range(1, 11))
    out: dict[str, list[tuple[int, Scenario]]] = {"servers": [], "agents": []}
    for seed in seeds:
        base = Scenario(seed=seed, seconds=seconds, run_ms=100.0, costs=opts.costs)
        out["servers"] += [(n, replace(base, servers=n, agents=0, where="any", clients=CLIENTS_PER_NODE * n))
                           for n in servers]
        out["agents"] += [(n, replace(base, servers=3, agents=n, where="agents", clients=CLIENTS_PER_NODE * n))
                          for n in agents]
    return out


def factorial_scenario(levels: dict[str, int], seed: int, opts: StudyOptions) -> Scenario:
    load_s = 15.0 if opts.quick else 30.0
    on_demand = levels["A"] > 0
    return Scenario(
        seed=seed, seconds=3.0 + load_s + 10.0, clients=FACTORIAL_VUS, think_ms=1000.0, wait_for="response",
        request="create", run_on_create=on_demand,
        schedule="@manually" if on_demand else "@every 10s",
        run_ms=200.0 if levels["B"] > 0 else 10.0, cpu_bound=levels["B"] > 0,
        payload_bytes=32 * 1024 if levels["C"] > 0 else 256,
        servers=5 if levels["D"] > 0 else 3, agents=3 if levels["E"] > 0 else 0,
        concurrency="forbid" if levels["F"] > 0 else "allow",
        window=(3.0, 3.0 + load_s), costs=opts.costs)


def load_shape_scenario(opts: StudyOptions) -> Scenario:
    scale = 1.0 / 6.0 if opts.quick else 1.0
    stages = tuple((d * scale, t) for d, t in LOAD_STAGES)
    load_s = sum(d for d, _t in stages)
    return Scenario(
        seed=opts.seed, servers=3, agents=0, stages=stages, think_ms=1000.0, wait_for="response",
        request="create", run_on_create=True, schedule="@manually", first_schedule="@every 2s",
        run_ms=10.0, payload_bytes=256, seconds=3.0 + load_s + 12.0, window=(3.0, 3.0 + load_s),
        costs=opts.costs)


# ---- running ----------------------------------------------------------------------------------------
def _run(scenario: Scenario) -> dict[str, Any]:
    run = ScenarioRun(scenario)
    summary = run.run()
    return {"summary": summary, "requests": _request_rows(run), "runs": _run_rows(run)}


def _request_rows(run: ScenarioRun) -> list[list[Any]]:
    """[t_send_s, response_ms or None, status, kind] for every request judged."""
    end = run.end_ms - run.sc.timeout_ms
    return [[round(q.t_send / 1000.0, 4),
             round(q.t_response - q.t_send, 3) if q.status == "ok" and q.t_response is not None else None,
             q.status, q.kind] for q in run.requests if q.t_send <= end]


def _run_rows(run: ScenarioRun) -> list[list[float]]:
    """Per completed on-demand run: the stage durations (ms) in STAGES order."""
    from papers.dkron_study.world import _time

    rows = []
    for record in run.world.runs.values():
        times = [_time(record, a) for _n, a, _b in STAGES] + [_time(record, STAGES[-1][2])]
        if record.state == "succeeded" and all(t is not None for t in times):
            rows.append([round(times[i + 1] - times[i], 3) for i in range(len(STAGES))])  # type: ignore[operator]
    return rows


def _map(opts: StudyOptions, scenarios: list[Scenario], progress: Callable[[str], None] | None,
         label: str) -> list[dict[str, Any]]:
    if progress is not None:
        progress(f"{label}: {len(scenarios)} simulations")
    if opts.workers > 1 and len(scenarios) > 1:
        with ProcessPoolExecutor(max_workers=opts.workers) as pool:
            return list(pool.map(_run, scenarios))
    return [_run(s) for s in scenarios]


def run_study(opts: StudyOptions, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    if opts.costs is None:
        opts.costs = load_costs()
    result: dict[str, Any] = {"quick": opts.quick, "seed": opts.seed, "cost_model": opts.costs.to_json()}
    if "stages" in opts.only:
        result["stages"] = _stages(opts, progress)
    if "usl" in opts.only:
        result["usl"] = _usl(opts, progress)
    if "factorial" in opts.only:
        result["factorial"] = _factorial(opts, progress)
    if "load_shape" in opts.only:
        result["load_shape"] = _load_shape(opts, progress)
    if "validation" in opts.only:
        result["validation"] = _validation(opts, progress)
    result["wall_seconds"] = round(time.perf_counter() - started, 1)
    return result


def _stages(opts: StudyOptions, progress: Any) -> dict[str, Any]:
    scenarios = stage_scenarios(opts)
    outs = _map(opts, list(scenarios.values()), progress, "stages")
    table = {}
    for name, out in zip(scenarios, outs):
        summary = out["summary"]
        table[name] = {"stages_ms": summary["stages_ms"], "throughput_runs_s": summary["throughput_runs_s"],
                       "cpu_utilisation": summary["cpu_utilisation"], "leader": summary["leader"],
                       "max_term": summary["max_term"], "scenario": _scenario_json(scenarios[name])}
    return table


def _usl(opts: StudyOptions, progress: Any) -> dict[str, Any]:
    sweeps = usl_scenarios(opts)
    out: dict[str, Any] = {"clients_per_node": CLIENTS_PER_NODE,
                           "definition": ("on-demand runs whose successful Finish was committed per simulated "
                                          "second, over the window, with a closed loop of 16 clients per "
                                          "executing node (each POSTs a run, waits until its result is "
                                          "committed, and posts the next)")}
    for name, points in sweeps.items():
        results = _map(opts, [s for _n, s in points], progress, f"usl {name}")
        by_n: dict[int, list[dict[str, Any]]] = {}
        for (n, _s), r in zip(points, results):
            by_n.setdefault(n, []).append(r["summary"])
        ns = sorted(by_n)
        samples = [[s["throughput_runs_s"] for s in by_n[n]] for n in ns]
        xs = [round(sum(v) / len(v), 3) for v in samples]
        fit = fit_usl([n for n in ns for _ in by_n[n]], [x for v in samples for x in v])
        out[name] = {
            "n": ns, "throughput": xs, "samples": samples, "fit": fit.to_json(),
            "fitted": [round(float(usl(n, fit.lam, fit.a, fit.b)), 3) for n in ns],
            "efficiency": [round(x / (n * fit.lam), 4) for n, x in zip(ns, xs)],
            "total_p50_ms": [_mean(s["stages_ms"]["total"]["p50"] for s in by_n[n]) for n in ns],
            "leader_utilisation": [_mean(s["cpu_utilisation"].get(s["leader"] or "", 0.0) for s in by_n[n])
                                   for n in ns],
            "leader_changes": [sum(s["max_term"] - 1 for s in by_n[n]) for n in ns],
            "window_s": results[0]["summary"]["window_s"],
            "seeds": sorted({s.seed for _n, s in points}),
            "scenario": _scenario_json(points[0][1]),
        }
    return out


def _factorial(opts: StudyOptions, progress: Any) -> dict[str, Any]:
    design = DKRON_DESIGN
    signs = design.factor_signs()
    replications = 1 if opts.quick else 3
    seeds = [opts.seed + 1000 * k for k in range(replications)]
    cells = []
    for run in range(design.runs):
        levels = {f: signs[f][run] for f in design.factors}
        for seed in seeds:
            cells.append((run, levels, factorial_scenario(levels, seed, opts)))
    outs = _map(opts, [c[2] for c in cells], progress, "factorial")
    measures: dict[str, list[list[float]]] = {k: [[] for _ in range(design.runs)] for k in RESPONSES}
    rows = []
    for (run, levels, scenario), out in zip(cells, outs):
        s = out["summary"]
        values = {"response_mean_ms": s["response_ms"]["mean"] or 0.0,
                  "response_p95_ms": s["response_ms"]["p95"] or 0.0,
                  "executions_s": s["executions_finished_s"], "error_rate": s["error_rate"] or 0.0}
        for key, value in values.items():
            measures[key][run].append(value)
        rows.append({"run": run + 1, "seed": scenario.seed, "levels": levels, **values,
                     "requests": s["requests"], "errors": s["error_kinds"], "max_term": s["max_term"],
                     "dispatch": s["dispatch"]})
    analyses = {key: analyse(design, measures[key]) for key in RESPONSES}
    # A follow-up that the aliasing calls for: run 7 (long CPU-bound runs on the smallest
    # cluster) with F flipped alone, to see whether F or one of its aliases moves executions/s.
    follow_levels = {f: signs[f][6] for f in design.factors}
    follow_levels["F"] = -follow_levels["F"]
    follow = _map(opts, [factorial_scenario(follow_levels, seeds[0], opts)], None, "follow-up")[0]["summary"]
    follow_up = {"run": 7, "levels": follow_levels, "executions_s": follow["executions_finished_s"],
                 "response_mean_ms": follow["response_ms"]["mean"], "dispatch": follow["dispatch"],
                 "seed": seeds[0]}
    return {"factors": FACTORS, "generators": {f: w for f, w in design.generators},
            "defining_relation": design.defining_relation(), "replications": replications,
            "sign_table": {design.label(c): v for c, v in design.sign_table().items()},
            "runs": rows, "analysis": analyses, "responses": RESPONSES, "follow_up": follow_up,
            "scenario": _scenario_json(cells[0][2])}


def _load_shape(opts: StudyOptions, progress: Any) -> dict[str, Any]:
    base = load_shape_scenario(opts)
    scenarios = [replace(base, millicores=m) for m in LOAD_MILLICORES]
    outs = _map(opts, scenarios, progress, "load shape")
    variants = {}
    for scenario, out in zip(scenarios, outs):
        variants[f"{scenario.millicores:g}m"] = _load_shape_one(scenario, out, opts)
    return {"stages": [list(s) for s in base.stages], "think_ms": base.think_ms,
            "millicores": list(LOAD_MILLICORES), "variants": variants, "scenario": _scenario_json(base)}


def _load_shape_one(scenario: Scenario, out: dict[str, Any], opts: StudyOptions) -> dict[str, Any]:
    summary = out["summary"]
    rows = out["requests"]
    ok = [r[1] for r in rows if r[2] == "ok"]
    by_kind = {kind: _pcts([r[1] for r in rows if r[2] == "ok" and r[3] == kind]) for kind in ("schedule", "run")}
    bins = []
    bin_s = 5.0 if opts.quick else 10.0
    load_end = scenario.start_s + sum(d for d, _t in scenario.stages)
    t = scenario.start_s
    while t < load_end - 1e-9:
        inside = [r for r in rows if t <= r[0] < t + bin_s]
        good = [r[1] for r in inside if r[2] == "ok"]
        bins.append({"t_s": round(t - scenario.start_s, 1), "vus": scenario.target_clients((t + bin_s / 2) * 1000.0),
                     "requests": len(inside), "errors": sum(1 for r in inside if r[2] != "ok"),
                     **{k: v for k, v in _pcts(good).items() if k in ("p50", "p95", "p99")}})
        t += bin_s
    return {"requests": len(rows), "errors": len(rows) - len(ok),
            "error_rate": round((len(rows) - len(ok)) / len(rows), 5) if rows else None,
            "error_kinds": summary["error_kinds"], "response_ms": _pcts(ok), "by_kind": by_kind,
            "executions_finished_s": summary["executions_finished_s"], "runs": summary["runs"],
            "stages_ms": summary["stages_ms"], "cpu_utilisation": summary["cpu_utilisation"],
            "leader_changes": summary["max_term"] - 1, "bins": bins}


def _validation(opts: StudyOptions, progress: Any) -> dict[str, Any]:
    """The real-cluster measurements `calibrate.py --real` made (costs.json notes) beside the
    same requests in the simulator: one client, sequential, straight to the leader."""
    from papers.dkron_study.costed import COSTS_FILE

    notes: dict[str, Any] = {}
    if os.path.exists(COSTS_FILE):
        with open(COSTS_FILE, encoding="utf-8") as handle:
            notes = json.load(handle).get("notes", {})
    base = Scenario(seed=opts.seed, seconds=10.0 if opts.quick else 20.0, clients=1, wait_for="response",
                    direct_to_leader=True, run_ms=5.0, timeout_ms=2_000.0, costs=opts.costs)
    sims = {"1 server": replace(base, servers=1), "3 servers": replace(base, servers=3)}
    outs = _map(opts, list(sims.values()), progress, "validation")
    simulated = {name: out["summary"]["response_ms"] for name, out in zip(sims, outs)}
    one = notes.get("real_one_server", {}).get("run_now", {})
    three = notes.get("real_three_servers", {})
    return {
        "what": "POST /v1/jobs/echo/run, one client, sequential, sent to the leader: response time (ms)",
        "real": {"1 server": {"p50": one.get("response_ms_p50"), "mean": one.get("response_ms_mean")},
                 "3 servers": {"p50": three.get("run_now_response_ms_p50"), "p95": three.get("run_now_response_ms_p95")}},
        "simulated": {name: {"p50": v["p50"], "mean": v["mean"], "p95": v["p95"]} for name, v in simulated.items()},
        "fsync_wall_us_at_calibration": notes.get("fsync_wall_us"),
        "real_cpu_us_per_kv_write": notes.get("derived"),
    }


def _mean(values: Any) -> float | None:
    items = [v for v in values if v is not None]
    return round(sum(items) / len(items), 4) if items else None


def _pcts(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    return {"n": len(values), "mean": round(sum(values) / len(values), 2), "min": round(min(values), 2),
            **{f"p{q}": round(percentile(values, q), 2) for q in (50, 90, 95, 99)},
            "max": round(max(values), 2)}


def _scenario_json(scenario: Scenario) -> dict[str, Any]:
    out = {}
    for spec in dataclasses.fields(scenario):
        if spec.name == "costs":
            continue
        value = getattr(scenario, spec.name)
        out[spec.name] = [list(v) if isinstance(v, tuple) else v for v in value] if isinstance(value, tuple) else value
    return out


def deterministic_view(result: dict[str, Any]) -> dict[str, Any]:
    """The result without what depends on the machine's speed (for reproducibility checks)."""
    return {k: v for k, v in result.items() if k != "wall_seconds"}


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return "–"
    return f"{value:,.{digits}f}"


def write_json(result: dict[str, Any], out_dir: str) -> str:
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "dkron_study.json")
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1, sort_keys=False)
        handle.write("\n")
    return path
