"""Tables (markdown) and figures (small PNGs) for the Dkron study's results."""

from __future__ import annotations

import os
from typing import Any

from papers.dkron_study.study import FACTORS, fmt, write_json

__all__ = ["tables_markdown", "write_outputs"]


# ---- tables -------------------------------------------------------------------------------------------
def stage_table(result: dict[str, Any]) -> str:
    scenarios = result["stages"]
    names = list(scenarios)
    lines = ["| stage | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    stage_names = list(next(iter(scenarios.values()))["stages_ms"]["stages"])
    for stage in stage_names:
        cells = []
        for name in names:
            table = scenarios[name]["stages_ms"]
            s = table["stages"][stage]
            share = 100.0 * s["mean"] / table["total"]["mean"] if s["mean"] is not None and table["total"]["mean"] else None
            cells.append(f"{fmt(s['mean'])} ({fmt(s['p99'])}) {fmt(share, 0)}%")
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")
    totals = [f"**{fmt(scenarios[n]['stages_ms']['total']['mean'])}** ({fmt(scenarios[n]['stages_ms']['total']['p99'])})"
              for n in names]
    lines.append("| **total, client send → result committed** | " + " | ".join(totals) + " |")
    lines.append("| runs measured / throughput (runs/s) | " + " | ".join(
        f"{scenarios[n]['stages_ms']['runs']} / {fmt(scenarios[n]['throughput_runs_s'])}" for n in names) + " |")
    lines.append("| leader CPU+disk busy | " + " | ".join(
        fmt(100.0 * scenarios[n]["cpu_utilisation"].get(scenarios[n]["leader"], 0.0), 0) + "%" for n in names) + " |")
    return "\n".join(lines)


def usl_tables(result: dict[str, Any]) -> str:
    usl = result["usl"]
    out = ["| sweep | λ = X(1) (runs/s) | a (contention) | b (coherency) | R² | RMSE (runs/s) | peak N* | X(N*) |",
           "|---|---|---|---|---|---|---|---|"]
    for name in ("servers", "agents"):
        fit = usl[name]["fit"]
        out.append(f"| {name} | {fmt(fit['lam'])} | {fit['a']:.4f} | {fit['b']:.5f} | {fit['r2']:.4f} | "
                   f"{fmt(fit['rmse'])} | {fmt(fit['n_peak'])} | {fmt(fit['x_peak'])} |")
    for name in ("servers", "agents"):
        sweep = usl[name]
        out.append("")
        label = "servers (no agents; every server executes)" if name == "servers" else \
            "agents (3 servers that do not execute; runs go to agents)"
        out.append(f"N = {label}:")
        out.append("")
        out.append("| N | X (runs/s) | USL fit | X / (N λ) | run p50, send → committed (ms) | leader busy | leader changes |")
        out.append("|---|---|---|---|---|---|---|")
        for i, n in enumerate(sweep["n"]):
            out.append(f"| {n} | {fmt(sweep['throughput'][i])} | {fmt(sweep['fitted'][i])} | "
                       f"{fmt(100 * sweep['efficiency'][i], 0)}% | {fmt(sweep['total_p50_ms'][i], 0)} | "
                       f"{fmt(100 * (sweep['leader_utilisation'][i] or 0), 0)}% | {sweep['leader_changes'][i]} |")
    return "\n".join(out)


def factorial_tables(result: dict[str, Any]) -> str:
    fac = result["factorial"]
    out = ["| factor | −1 | +1 |", "|---|---|---|"]
    for letter, spec in FACTORS.items():
        gen = fac["generators"].get(letter)
        name = spec["name"] + (f" (= {gen})" if gen else "")
        out.append(f"| {letter}: {name} | {spec['low']} | {spec['high']} |")
    out.append("")
    out.append("| run | A | B | C | D | E | F | mean response (ms) | p95 (ms) | executions/s | error rate |")
    out.append("|---|---|---|---|---|---|---|---|---|---|---|")
    runs: dict[int, list[dict[str, Any]]] = {}
    for row in fac["runs"]:
        runs.setdefault(row["run"], []).append(row)
    for run, rows in sorted(runs.items()):
        levels = rows[0]["levels"]
        signs = " | ".join("+" if levels[f] > 0 else "−" for f in "ABCDEF")

        def avg(key: str) -> float:
            return float(sum(r[key] for r in rows)) / len(rows)

        out.append(f"| {run} | {signs} | {fmt(avg('response_mean_ms'))} | {fmt(avg('response_p95_ms'))} | "
                   f"{fmt(avg('executions_s'))} | {avg('error_rate'):.4f} |")
    out.append("")
    analyses = fac["analysis"]
    keys = list(fac["responses"])
    reps = fac["replications"]
    header = "| effect (aliases) | " + " | ".join(fac["responses"][k] for k in keys) + " |"
    out.append(header)
    out.append("|---" * (len(keys) + 1) + "|")
    columns = [e["column"] for e in analyses[keys[0]]["effects"]]
    for i, column in enumerate(columns):
        label = analyses[keys[0]]["effects"][i]["label"]
        label = "mean (q0)" if column == "I" else label
        cells = []
        for key in keys:
            e = analyses[key]["effects"][i]
            digits = 4 if key == "error_rate" else 1
            if column == "I":
                cells.append(fmt(e["effect"], digits))
                continue
            star = "*" if e.get("significant") else ""
            cells.append(f"{fmt(e['effect'], digits)}{star} ({fmt(100 * e['variation'], 1)}%)")
        out.append(f"| {label} | " + " | ".join(cells) + " |")
    if reps > 1:
        out.append("| error (replications) | " + " | ".join(
            f"({fmt(100 * analyses[k]['error_variation'], 1)}%)" for k in keys) + " |")
    follow = fac.get("follow_up")
    if follow:
        original = next(r for r in fac["runs"] if r["run"] == follow["run"] and r["seed"] == follow["seed"])
        flipped = "forbid" if follow["levels"]["F"] > 0 else "allow"
        out.append("")
        out.append(f"Follow-up (aliasing): run {follow['run']} (seed {follow['seed']}) with only F flipped to "
                   f"{flipped}: {fmt(follow['executions_s'])} executions/s against {fmt(original['executions_s'])}; "
                   f"dispatch {_dispatch(follow['dispatch'])} against {_dispatch(original['dispatch'])}.")
    return "\n".join(out)


def _dispatch(counts: dict[str, int]) -> str:
    keys = ("leased_by_fire", "leased_by_assign", "queued", "leased_by_claim", "ended_unclaimed")
    return "(" + ", ".join(f"{k.replace('leased_by_', 'leased at ').replace('ended_', '')} {counts.get(k, 0)}"
                           for k in keys) + ")"


def load_shape_tables(result: dict[str, Any]) -> str:
    ls = result["load_shape"]
    out = ["| CPU limit | requests | error rate | errors | mean | p50 | p90 | p95 | p99 | max (ms) | "
           "runs/s executed | leader changes |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, v in ls["variants"].items():
        r = v["response_ms"]
        errors = ", ".join(f"{k} {n}" for k, n in v["error_kinds"].items()) or "–"
        out.append(f"| {name} | {v['requests']} | {100 * (v['error_rate'] or 0):.2f}% | {errors} | {fmt(r.get('mean'))} | "
                   f"{fmt(r.get('p50'))} | {fmt(r.get('p90'))} | {fmt(r.get('p95'))} | {fmt(r.get('p99'))} | "
                   f"{fmt(r.get('max'))} | {fmt(v['executions_finished_s'])} | {v['leader_changes']} |")
    return "\n".join(out)


def validation_table(result: dict[str, Any]) -> str:
    v = result["validation"]
    out = ["| cluster | real p50 | simulated p50 | simulated mean | simulated p95 |", "|---|---|---|---|---|"]
    for name in ("1 server", "3 servers"):
        real, sim = v["real"].get(name, {}), v["simulated"][name]
        out.append(f"| {name} | {fmt(real.get('p50'))} | {fmt(sim['p50'])} | {fmt(sim['mean'])} | {fmt(sim['p95'])} |")
    fsync = v.get("fsync_wall_us_at_calibration")
    out.append("")
    out.append(f"{v['what']}. The model's synced save waits {fmt(result['cost_model']['save_us'] / 1000.0)} ms "
               f"(the real one-server write's response minus its CPU); an in-process LMDB fsync took "
               f"{fmt((fsync or 0) / 1000.0)} ms (median) during the same calibration.")
    return "\n".join(out)


def tables_markdown(result: dict[str, Any]) -> str:
    parts = [f"<!-- generated by `raftcron paper dkron-study{' --quick' if result['quick'] else ''}` "
             f"(seed {result['seed']}); wall {result.get('wall_seconds')} s -->"]
    if "stages" in result:
        parts += ["### Stage decomposition of an on-demand run (ms: mean (p99) share of the mean total)", "",
                  stage_table(result)]
    if "usl" in result:
        parts += ["", "### Universal Scalability Law", "", usl_tables(result)]
    if "factorial" in result:
        parts += ["", f"### 2^(6-3) fractional factorial, {result['factorial']['replications']} replication(s) per run",
                  "", factorial_tables(result),
                  "", "Cells: effect q (allocation of variation). * : the 90% confidence interval excludes 0."]
    if "load_shape" in result:
        ls = result["load_shape"]
        shape = " → ".join(["0"] + [f"{t} ({d:g} s)" for d, t in ls["stages"]])
        parts += ["", f"### Load shape: VUs {shape}, {ls['think_ms'] / 1000:g} s think time", "",
                  load_shape_tables(result)]
    if "validation" in result:
        parts += ["", "### Simulator against the real cluster (light load)", "", validation_table(result)]
    return "\n".join(parts) + "\n"


# ---- figures ------------------------------------------------------------------------------------------
def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_usl(result: dict[str, Any], path: str) -> None:
    import numpy as np

    from papers.dkron_study.usl import usl as usl_curve

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), dpi=80)
    for ax, name in zip(axes, ("servers", "agents")):
        sweep = result["usl"][name]
        fit = sweep["fit"]
        ns = sweep["n"]
        grid = np.linspace(1, max(ns) * 1.5, 200)
        for n, samples in zip(ns, sweep["samples"]):
            ax.plot([n] * len(samples), samples, "o", color="tab:blue", ms=4, alpha=0.7)
        ax.plot(grid, usl_curve(grid, fit["lam"], fit["a"], fit["b"]), "-", color="tab:orange",
                label=f"USL a={fit['a']:.3f} b={fit['b']:.4f} R²={fit['r2']:.3f}")
        ax.plot(grid, fit["lam"] * grid, ":", color="grey", label="linear (a=b=0)")
        ax.set_ylim(0, max(max(max(s) for s in sweep["samples"]) * 1.6, 1))
        ax.set_xlabel("servers" if name == "servers" else "agents (3 servers)")
        ax.set_ylabel("runs/s")
        ax.set_title(f"throughput vs {name}")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_stages(result: dict[str, Any], path: str) -> None:
    plt = _plt()
    scenarios = result["stages"]
    names = list(scenarios)
    stage_names = list(next(iter(scenarios.values()))["stages_ms"]["stages"])
    fig, ax = plt.subplots(figsize=(9, 2.8), dpi=80)
    colors = plt.cm.tab10.colors
    for row, name in enumerate(names):
        left = 0.0
        for i, stage in enumerate(stage_names):
            width = scenarios[name]["stages_ms"]["stages"][stage]["mean"] or 0.0
            ax.barh(row, width, left=left, color=colors[i % 10], label=stage if row == 0 else None)
            left += width
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms (mean per stage)")
    ax.legend(fontsize=6, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.3))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_factorial(result: dict[str, Any], path: str) -> None:
    plt = _plt()
    fac = result["factorial"]
    keys = list(fac["responses"])
    analyses = fac["analysis"]
    effects = [e for e in analyses[keys[0]]["effects"] if e["column"] != "I"]
    labels = [e["label"].replace(" = ", "=") for e in effects]
    labels.append("error")
    fig, ax = plt.subplots(figsize=(9, 3.0), dpi=80)
    width = 0.8 / len(keys)
    for k, key in enumerate(keys):
        shares = [100 * e["variation"] for e in analyses[key]["effects"] if e["column"] != "I"]
        shares.append(100 * analyses[key]["error_variation"])
        ax.bar([i + k * width for i in range(len(shares))], shares, width, label=fac["responses"][key])
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels, fontsize=8)
    ax.set_ylabel("% of variation")
    ax.set_title("2^(6-3) design: allocation of variation")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_load_shape(result: dict[str, Any], path: str) -> None:
    plt = _plt()
    ls = result["load_shape"]
    fig, ax = plt.subplots(figsize=(9, 3.4), dpi=80)
    twin = ax.twinx()
    first = True
    for (name, v), color in zip(ls["variants"].items(), ("tab:blue", "tab:orange", "tab:red")):
        bins = v["bins"]
        ts = [b["t_s"] for b in bins]
        ax.plot(ts, [b.get("p50") for b in bins], "-", color=color, label=f"{name} p50")
        ax.plot(ts, [b.get("p95") for b in bins], "--", color=color, label=f"{name} p95")
        errs = [b["t_s"] for b in bins if b["errors"]]
        if errs:
            ax.plot(errs, [b.get("p95") or b.get("p50") or 1.0 for b in bins if b["errors"]], "x", color=color,
                    ms=8, label=f"{name}: errors in the bin")
        if first:
            twin.fill_between(ts, [b["vus"] for b in bins], step="mid", color="grey", alpha=0.15)
            first = False
    twin.set_ylabel("VUs (shaded)")
    ax.set_xlabel("s since the test began")
    ax.set_ylabel("response time (ms)")
    ax.set_yscale("log")
    ax.legend(fontsize=6, ncol=3, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_outputs(result: dict[str, Any], out_dir: str, *, plot: bool = True) -> list[str]:
    os.makedirs(out_dir, exist_ok=True)
    paths = [write_json(result, out_dir)]
    tables = os.path.join(out_dir, "tables.md")
    with open(tables, "w", encoding="utf-8") as handle:
        handle.write(tables_markdown(result))
    paths.append(tables)
    if plot:
        for key, plotter in (("usl", plot_usl), ("stages", plot_stages), ("factorial", plot_factorial),
                             ("load_shape", plot_load_shape)):
            if key in result:
                path = os.path.join(out_dir, f"{key}.png")
                plotter(result, path)
                paths.append(path)
    return paths
