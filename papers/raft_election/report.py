"""Figures and tables for the Figure 16 reproduction (`raftcron paper fig16`).

The figure has the paper's form: cumulative percent of trials against the time without a
leader, the randomness series on a log axis above and the scale series on a linear axis below.
The paper's median, p90 and p99 are drawn as hollow markers in each line's colour, so the gap
between the paper and the simulator can be read off the figure itself.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from papers.raft_election.fig16 import (
    EXTRA_RANGES,
    PAPER_MS,
    RANDOMNESS_SERIES,
    SCALE_SERIES,
    Fig16Config,
)

CDF_POINTS_MAX = 200  # points per CDF line: smooth to the eye at this size, and keeps the SVG small
STAT_KEYS = ("median", "mean", "p90", "p99", "max")
PAPER_MARKERS = ((0.5, "median"), (0.9, "p90"), (0.99, "p99"))


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only; never a window
    # SVG text stays text (small files, searchable), and ids are stable (same data, same bytes).
    matplotlib.rcParams["svg.fonttype"] = "none"
    matplotlib.rcParams["svg.hashsalt"] = "raftcron"
    import matplotlib.pyplot as plt

    return plt


def _cdf_points(values: Sequence[float]) -> tuple[list[float], list[float]]:
    """The empirical CDF as a step line (x, cumulative percent), thinned to CDF_POINTS_MAX."""
    ordered = sorted(values)
    count = len(ordered)
    stride = max(1, count // CDF_POINTS_MAX)
    xs, ys = [], []
    for rank in list(range(0, count, stride)) + [count - 1]:
        xs.append(ordered[rank])
        ys.append(100.0 * (rank + 1) / count)
    return xs, ys


def _draw_series(ax: Any, configs: Sequence[Fig16Config], downtimes: dict[str, list[float]],
                 colours: Sequence[Any], *, paper: bool) -> None:
    """One CDF per configuration that ran; a configuration keeps its colour whatever else ran."""
    for config, colour in zip(configs, colours):
        values = downtimes.get(config.name)
        if not values:
            continue
        xs, ys = _cdf_points(values)
        ax.step(xs, ys, where="post", color=colour, linewidth=1.8, label=f"{config.name} ms")
        reference = PAPER_MS.get(config.name)
        if paper and reference is not None:
            for fraction, key in PAPER_MARKERS:
                value = reference.get(key)
                if value is not None:
                    ax.plot([value], [100 * fraction], marker="o", markersize=6, markerfacecolor="none",
                            markeredgecolor=colour, markeredgewidth=1.5, linestyle="none")
    ax.set_ylim(0, 100)
    ax.set_ylabel("cumulative percent of trials")
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)


def _paper_legend_handle(plt: Any) -> Any:
    from matplotlib.lines import Line2D

    return Line2D([], [], marker="o", markersize=6, markerfacecolor="none", markeredgecolor="0.3",
                  linestyle="none", label="paper: median, p90, p99")


def plot_fig16(result: dict[str, Any], downtimes: dict[str, list[float]], stem: str) -> list[str]:
    """The two-panel figure; writes `stem.png` and `stem.svg` and returns their paths."""
    plt = _pyplot()
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 9.5))
    scale = [c for c in SCALE_SERIES if c.name in downtimes]
    _draw_series(top, RANDOMNESS_SERIES, downtimes, plt.cm.plasma([0.0, 0.18, 0.36, 0.54, 0.7, 0.84]), paper=True)
    top.set_xscale("log")
    top.set_xlabel("time without a leader (ms, log scale)")
    top.set_title("Randomness: 150 ms minimum, growing random range")
    _draw_series(bottom, SCALE_SERIES, downtimes, plt.cm.viridis([0.0, 0.25, 0.5, 0.7, 0.84]), paper=True)
    bottom.set_xlabel("time without a leader (ms)")
    bottom.set_title("Scale: range = [T, 2T] for growing T")
    scale_values = [v for c in scale for v in downtimes[c.name]]
    if scale_values:
        bottom.set_xlim(0, _axis_limit(scale, downtimes))
    for ax in (top, bottom):
        handles, _labels = ax.get_legend_handles_labels()
        if handles:
            ax.legend(handles=handles + [_paper_legend_handle(plt)], loc="center left", bbox_to_anchor=(1.01, 0.5),
                      fontsize=9, frameon=False, title="election timeout", title_fontsize=9.5,
                      alignment="left")
    latency = result["latency_ms"]
    figure.suptitle(
        "Raft Figure 16, reproduced in the raftcron simulator: leader crash → new leader heard by all survivors\n"
        f"5 servers, one-way latency U[{latency[0]:g}, {latency[1]:g}] ms, heartbeat = min timeout / 2, "
        "2 of 4 survivors ineligible, no pre-vote; circles: the paper", fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 0.97))
    return _save(plt, figure, stem)


def _axis_limit(configs: Sequence[Fig16Config], downtimes: dict[str, list[float]]) -> float:
    """Show every line up to its 99th percentile; the longest tails run off the right edge."""
    limit = 0.0
    for config in configs:
        ordered = sorted(downtimes[config.name])
        limit = max(limit, ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))])
    return limit * 1.08


def plot_extras(downtimes: dict[str, list[float]], stem: str) -> list[str]:
    """One small panel per range: the baseline against each `--extras` variant."""
    plt = _pyplot()
    suffixes = ("+prevote", "+loss5", "+fig2timer")
    ranges = [f"{low:g}-{high:g}" for low, high in EXTRA_RANGES
              if any(f"{low:g}-{high:g}{suffix}" in downtimes for suffix in suffixes)]
    if not ranges:
        return []  # no variant ran: nothing to compare
    columns = min(3, len(ranges))
    rows = -(-len(ranges) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.8 * rows), squeeze=False)
    variants = (("", "baseline (paper setup)", "black", "-"), ("+prevote", "+ pre-vote", "tab:blue", "-"),
                ("+loss5", "+ 5% message loss", "tab:red", "--"),
                ("+fig2timer", "Figure 2 timer (ablation)", "tab:green", "-."))
    for ax, range_name in zip(axes.flat, ranges):
        names = [range_name + suffix for suffix, *_ in variants if range_name + suffix in downtimes]
        for suffix, label, colour, style in variants:
            values = downtimes.get(range_name + suffix)
            if values:
                xs, ys = _cdf_points(values)
                ax.step(xs, ys, where="post", color=colour, linestyle=style, linewidth=1.6, label=label)
        limit = max(sorted(downtimes[n])[int(0.99 * (len(downtimes[n]) - 1))] for n in names)
        ax.set_xlim(0, limit * 1.08)
        ax.set_ylim(0, 100)
        ax.set_title(f"{range_name} ms", fontsize=10)
        ax.set_xlabel("time without a leader (ms)", fontsize=9)
        ax.set_ylabel("cumulative %", fontsize=9)
        ax.grid(True, alpha=0.3)
    for ax in list(axes.flat)[len(ranges):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower right" if len(ranges) % columns else "upper center",
                  bbox_to_anchor=(0.97, 0.12) if len(ranges) % columns else (0.5, 1.0), fontsize=10)
    figure.suptitle("Beyond the paper: pre-vote, 5% message loss, and the Figure 2 timer ablation "
                    "(same setup and seeds as the baseline)", fontsize=11)
    figure.tight_layout(rect=(0, 0, 1, 0.96))
    return _save(plt, figure, stem)


def _save(plt: Any, figure: Any, stem: str) -> list[str]:
    paths = []
    for extension in ("png", "svg"):
        path = f"{stem}.{extension}"
        kwargs: dict[str, Any] = {"dpi": 110} if extension == "png" else {"metadata": {"Date": None}}
        figure.savefig(path, **kwargs)
        paths.append(path)
    plt.close(figure)
    return paths


# ---- tables ------------------------------------------------------------------------------------
def _format_ms(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= 10_000:
        return f"{value / 1000:.1f} s"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    """Per configuration: name, trials, then `ours / paper` for each statistic."""
    rows = []
    for name, summary in result["configs"].items():
        paper = summary.get("paper")
        row = [name, str(summary["trials"]) + (f" ({paper['trials']})" if paper else "")]
        for key in STAT_KEYS:
            ours = _format_ms(summary[f"{key}_ms"])
            row.append(f"{ours} / {_format_ms(paper[f'{key}_ms'])}" if paper else ours)
        rows.append(row)
    return rows


TABLE_HEADER = ["timeout (ms)", "trials (paper)", "median", "mean", "p90", "p99", "max"]


def table_text(result: dict[str, Any]) -> str:
    rows = [TABLE_HEADER] + table_rows(result)
    widths = [max(len(row[i]) for row in rows) for i in range(len(TABLE_HEADER))]
    lines = ["  ".join(cell.rjust(width) if i else cell.ljust(width) for i, (cell, width) in
                       enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def table_markdown(result: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(TABLE_HEADER) + " |", "|" + "---|" * len(TABLE_HEADER)]
    for row in table_rows(result):
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_outputs(result: dict[str, Any], downtimes: dict[str, list[float]], out_dir: str, *,
                  plot: bool = True) -> list[str]:
    """fig16.png/svg, fig16_extras.png/svg (when extras ran), fig16.json and fig16_table.md."""
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    if plot:
        paths += plot_fig16(result, downtimes, os.path.join(out_dir, "fig16"))
        paths += plot_extras(downtimes, os.path.join(out_dir, "fig16_extras"))
    json_path = os.path.join(out_dir, "fig16.json")
    with open(json_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)
        handle.write("\n")
    table_path = os.path.join(out_dir, "fig16_table.md")
    with open(table_path, "w", encoding="utf-8") as handle:
        handle.write("Each cell: ours / paper, in ms unless marked s. Ours: time until all 3 other "
                     "survivors heard the new leader.\n\n")
        handle.write(table_markdown(result) + "\n")
    return paths + [json_path, table_path]
