"""`raftcron plot`: figures from traces. `raftcron plot timeline TRACE` draws one run as swimlanes."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Any

from raftcron.cli import UsageError

TIMELINE_HELP = """\
Draw a trace (JSON lines from `raftcron sim --trace`, `raftcron paper fig16 --trace`, or real
nodes) as a timeline: one lane per node with its role over time, coloured by term; crashes,
pauses and partitions shaded; campaigns, votes and new leaders marked; every period without a
leader in red with its duration; scheduler events (fire, skip, miss, exec_start, exec_finish,
duplicate) on a lane of their own, misses and duplicates in a warning colour.

examples:
  raftcron sim --trace run.jsonl && raftcron plot timeline run.jsonl          # writes run.png
  raftcron plot timeline run.jsonl -o failover.svg --from 19.9 --to 20.5      # zoom on the crash
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("plot", help="draw figures from traces",
                                   description="Draw figures from traces.")
    plots = parser.add_subparsers(dest="plot", metavar="PLOT")
    timeline = plots.add_parser("timeline", help="swimlane timeline of one trace", description=TIMELINE_HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    timeline.add_argument("trace", metavar="TRACE", help="a JSON-lines trace file")
    timeline.add_argument("-o", "--output", metavar="FILE",
                          help="the figure, .png or .svg (default: TRACE with .png)")
    timeline.add_argument("--from", dest="from_s", type=float, default=None, metavar="S",
                          help="start of the window, in seconds")
    timeline.add_argument("--to", dest="to_s", type=float, default=None, metavar="S",
                          help="end of the window, in seconds")
    timeline.add_argument("--title", default=None, help="the figure's title")
    timeline.add_argument("--json", action="store_true", help="print what was drawn as JSON")
    timeline.set_defaults(func=run_timeline)
    parser.set_defaults(func=lambda args: _missing_plot(parser))


def _missing_plot(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def default_output(trace_path: str) -> str:
    stem, extension = os.path.splitext(trace_path)
    return (stem if extension in (".jsonl", ".json", ".ndjson", ".trace") else trace_path) + ".png"


def check_window(from_s: float | None, to_s: float | None) -> None:
    for name, value in (("--from", from_s), ("--to", to_s)):
        if value is not None and not math.isfinite(value):
            raise UsageError(f"{name} must be a number of seconds, got {value}")
    if from_s is not None and to_s is not None and to_s <= from_s:
        raise UsageError(f"--to ({to_s:g} s) must be after --from ({from_s:g} s)")


def check_output(path: str) -> None:
    if os.path.splitext(path)[1].lower() not in (".png", ".svg"):
        raise UsageError(f"the output must end in .png or .svg, got {path!r}")


def draw(records: list[dict[str, Any]], out_path: str, *, from_s: float | None = None, to_s: float | None = None,
         title: str | None = None, failovers: list[tuple[float, float | None]] | None = None) -> dict[str, Any]:
    """Build and draw a timeline; bad traces and windows become UsageError (exit 2)."""
    from papers.plots.timeline import TraceError, build_timeline, plot_timeline

    try:
        timeline = build_timeline(records, failovers=failovers)
        return plot_timeline(timeline, out_path, from_s=from_s, to_s=to_s, title=title)
    except TraceError as error:
        raise UsageError(str(error)) from None
    except ValueError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"cannot write {out_path}: {error.strerror or error}") from None


def run_timeline(args: argparse.Namespace) -> int:
    from papers.plots.timeline import TraceError, load_trace

    out_path = args.output or default_output(args.trace)
    check_output(out_path)
    check_window(args.from_s, args.to_s)
    try:
        records = load_trace(args.trace)
    except TraceError as error:
        raise UsageError(str(error)) from None
    summary = draw(records, out_path, from_s=args.from_s, to_s=args.to_s, title=args.title)
    summary["output"] = out_path
    if args.json:
        print(json.dumps(summary))
        return 0
    print(describe(summary))
    return 0


def describe(summary: dict[str, Any]) -> str:
    from papers.plots.timeline import format_duration

    windows = summary["leaderless"]
    lines = [f"wrote {summary['output']}: {len(summary['nodes'])} nodes, "
             f"{summary['from_s']:g}–{summary['to_s']:g} s, {len(summary['leaders'])} leader elections"]
    for window in windows[:8]:
        lines.append(f"  no leader from {window['from_s']:.3f} s for {format_duration(window['duration_ms'])}"
                     + ("" if window["closed"] else " (still none at the end)") + f" — {window['cause']}")
    if len(windows) > 8:
        lines.append(f"  ... {len(windows) - 8} more periods without a leader")
    if summary["scheduler"]:
        counts = ", ".join(f"{kind} {count}" for kind, count in sorted(summary["scheduler"].items()))
        lines.append(f"  scheduler: {counts}" + (f"; {summary['warnings']} warnings" if summary["warnings"] else ""))
    return "\n".join(lines)


# ---- `raftcron sim --plot` --------------------------------------------------------------------------
def watch_failovers(runner: Any) -> list[tuple[float, float | None]]:
    """Record the (start, end) ms of every outage `runner.meter` (FailoverMeter) measures, so the
    timeline shows exactly the durations the summary prints. Wraps the cluster's delivery hook
    from outside; the meter itself is untouched. Call before `runner.run()`."""
    meter, cluster = runner.meter, runner.cluster
    windows: list[tuple[float, float | None]] = []
    inner = cluster.on_deliver

    def on_deliver(message: Any) -> None:
        before = meter.outage_start
        if inner is not None:
            inner(message)
        if before is not None and meter.outage_start is None:
            windows.append((before, cluster.now))

    cluster.on_deliver = on_deliver
    return windows


def plot_run(path: str, runner: Any, windows: list[tuple[float, float | None]]) -> dict[str, Any]:
    """Draw a finished `Runner`'s kept trace, with the meter's outages (one still open at the end
    runs to the end of the trace)."""
    records = runner.trace.kept
    assert records is not None, "plot_run needs SimOptions.keep_trace"
    if runner.meter.outage_start is not None:
        windows = windows + [(runner.meter.outage_start, None)]
    options = runner.options
    title = (f"raftcron sim --seed {options.seed}: {options.nodes} nodes, {options.seconds:g} simulated s")
    summary = draw(records, path, title=title, failovers=windows)
    print(f"timeline: wrote {path}", file=sys.stderr)
    return summary
