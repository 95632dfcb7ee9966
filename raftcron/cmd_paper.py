"""`raftcron paper`: regenerate the tables and figures of the experiments under papers/.

`raftcron paper fig16` reproduces Figure 16 of the Raft paper (leader failover time against the
election-timeout range) in the simulator; papers/raft_election/README.md explains the setup.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from raftcron.builds import add_build_arguments, build_name, chosen_build, run_on_build
from raftcron.cli import UsageError

FIG16_HELP = """\
Reproduce Figure 16 of "In Search of an Understandable Consensus Algorithm": crash the leader of
a 5-server cluster (2 of the 4 survivors with a shorter log, follower timers just synchronised
by a heartbeat) and measure how long until the new leader's first heartbeat reached the others,
for each election-timeout range. Every trial is an independent seeded simulation; the same
--seed gives the same numbers whatever --workers is.

Writes fig16.png/.svg (the paper's two panels), fig16.json and fig16_table.md to --out, and
prints the table beside the paper's numbers.

examples:
  raftcron paper fig16                          # the full reproduction (~15 s; ~5 s on the compiled build)
  raftcron paper fig16 --extras                 # plus pre-vote, 5% loss and the timer ablation
  raftcron paper fig16 --trials 100 --configs 150-155,150-300 --json
  raftcron paper fig16 --configs 150-300 --trace worst.jsonl && raftcron plot timeline worst.jsonl
"""


def _default_out_dir() -> str:
    from papers import raft_election

    return os.path.join(os.path.dirname(os.path.abspath(raft_election.__file__)), "out")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("paper", help="regenerate a paper reproduction (figures and tables)",
                                   description="Regenerate the experiments under papers/.")
    papers = parser.add_subparsers(dest="paper", metavar="PAPER")
    fig16 = papers.add_parser("fig16", help="Raft paper Figure 16: time to elect a new leader",
                              description=FIG16_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    fig16.add_argument("--trials", type=int, default=None, metavar="N",
                       help="trials per configuration (default 1000; 100 for 150-150, as the paper)")
    fig16.add_argument("--configs", default=None, metavar="LIST",
                       help="comma-separated timeout ranges in ms, optionally with variants, e.g. "
                            "150-300,150-300+prevote,12-24+loss5,150-155+fig2timer (default: the paper's 11 "
                            "lines; 150-300 belongs to both series and runs once)")
    fig16.add_argument("--extras", action="store_true",
                       help="also run pre-vote, 5%% loss and the Figure 2 timer ablation on five ranges")
    fig16.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    fig16.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    fig16.add_argument("--latency", default=None, metavar="MIN-MAX",
                       help="one-way network latency in ms (default 7-8: a 15 ms round trip)")
    fig16.add_argument("--max-sim-seconds", type=float, default=None, metavar="S",
                       help="cap on simulated time per trial (default 300); capped trials are counted")
    fig16.add_argument("--out", default=None, metavar="DIR",
                       help="where to write figures and results (default papers/raft_election/out)")
    fig16.add_argument("--no-plot", action="store_true", help="skip the figures (write the table and JSON only)")
    fig16.add_argument("--trace", metavar="FILE",
                       help="replay one trial of the first configuration with a JSON-lines trace "
                            "(the slowest, or --trace-trial)")
    fig16.add_argument("--trace-trial", type=int, default=None, metavar="N",
                       help="with --trace: which trial to replay (default: the slowest)")
    fig16.add_argument("--json", action="store_true", help="print the results as one JSON object")
    add_build_arguments(fig16)
    fig16.set_defaults(func=run_fig16)
    from papers.dkron_study.command import add_parser as add_dkron_study

    add_dkron_study(papers)  # `raftcron paper dkron-study` (papers/dkron_study/command.py)
    parser.set_defaults(func=lambda args: _missing_paper(parser))


def _missing_paper(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def build_fig16_options(args: argparse.Namespace) -> Any:
    from papers.raft_election import fig16
    from raftcron.cmd_sim import parse_range

    if args.configs:
        try:
            configs = [fig16.Fig16Config.parse(text) for text in args.configs.split(",") if text.strip()]
        except ValueError as error:
            raise UsageError(str(error)) from None
        if not configs:
            raise UsageError("--configs names no configuration")
    else:
        configs = list(fig16.BASE_CONFIGS)
    if args.extras:
        configs += [c for c in fig16.EXTRA_CONFIGS if c not in configs]
        for low, high in fig16.EXTRA_RANGES:  # each variant is compared with its baseline
            base = fig16.Fig16Config(low, high)
            if base not in configs:
                configs.append(base)
    names = [c.name for c in configs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UsageError(f"--configs repeats {', '.join(duplicates)}")
    if args.trials is not None and not 1 <= args.trials <= 100_000:
        raise UsageError(f"--trials must be between 1 and 100000, got {args.trials}")
    if not 1 <= args.workers <= 64:
        raise UsageError(f"--workers must be between 1 and 64, got {args.workers}")
    latency = parse_range(args.latency, "latency") if args.latency else fig16.LATENCY_MS_DEFAULT
    sim_ms_max = fig16.SIM_MS_MAX_DEFAULT if args.max_sim_seconds is None else args.max_sim_seconds * 1000.0
    if not 1_000.0 <= sim_ms_max <= 86_400_000.0:
        raise UsageError("--max-sim-seconds must be between 1 and 86400")
    trial = fig16.TrialOptions(latency_ms_min=latency[0], latency_ms_max=latency[1], sim_ms_max=sim_ms_max)
    return fig16.Fig16Options(configs=configs, trials=args.trials, seed=args.seed, workers=args.workers,
                              trial=trial)


def run_fig16(args: argparse.Namespace) -> int:
    from papers.raft_election import report

    options = build_fig16_options(args)
    if args.trace_trial is not None and not 0 <= args.trace_trial < options.trials_for(options.configs[0]):
        raise UsageError(f"--trace-trial must name one of the {options.trials_for(options.configs[0])} trials")
    wanted = chosen_build(args)
    if any(config.figure2_timer for config in options.configs):
        # The ablation replaces a method on one RaftNode (fig16.py), which compiled classes refuse.
        if wanted == "native":
            raise UsageError("the +fig2timer ablation patches the Raft core, which the compiled build does not "
                             "allow: run it with --build interpreted")
        wanted = "interpreted"
    code = run_on_build(wanted, ["paper", *args.argv])
    if code is not None:
        return code
    out_dir = args.out or _default_out_dir()
    total = sum(options.trials_for(c) for c in options.configs)
    with _Progress(not args.json, total) as progress:
        result, downtimes = _run(options, progress)
    result["build"] = build_name()
    try:
        paths = report.write_outputs(result, downtimes, out_dir, plot=not args.no_plot)
    except OSError as error:
        raise UsageError(f"cannot write to {out_dir}: {error}") from None
    if args.trace:
        result["traced_trial"] = _write_trace(options, downtimes, args.trace, args.trace_trial)
    if args.json:
        print(json.dumps(result))
        return 0
    print(report.table_text(result))
    capped = {name: s["capped"] for name, s in result["configs"].items() if s["capped"]}
    if capped:
        print(f"capped at {options.trial.sim_ms_max / 1000:g} simulated s (lower bounds): {capped}")
    print(f"{total} trials in {result['wall_seconds']} s wall with {options.workers} worker(s), "
          f"{result['build']} build; "
          "cells are ours / paper (ms; s where marked); paper trials in parentheses")
    for path in paths:
        print(f"  wrote {path}")
    if args.trace:
        traced = result["traced_trial"]
        print(f"  wrote {args.trace}: trial {traced['trial']} of {traced['config']} "
              f"({traced['downtime_ms']:.0f} ms without a leader); draw it with "
              f"`raftcron plot timeline {args.trace}`")
    return 0


def _run(options: Any, progress: Any) -> tuple[dict[str, Any], dict[str, list[float]]]:
    from papers.raft_election import fig16

    try:
        return fig16.run(options, progress)
    except ValueError as error:  # e.g. a latency the simulator's network rejects
        raise UsageError(str(error)) from None


def _write_trace(options: Any, downtimes: dict[str, list[float]], path: str, index: int | None) -> dict[str, Any]:
    from papers.raft_election import fig16
    from sim.trace import TraceWriter

    config = options.configs[0]
    if index is None:
        index, seed = fig16.slowest_trial(options, config, downtimes[config.name])
    else:
        seed = fig16.trial_seed(options.seed, config, index)
    try:
        with open(path, "w", encoding="utf-8") as sink:
            trial = fig16.run_trial(config, seed, options.trial, TraceWriter(sink))
    except OSError as error:
        raise UsageError(f"cannot write the trace: {error}") from None
    assert trial.downtime_ms == downtimes[config.name][index], "a replayed trial must repeat itself"
    return {"config": config.name, "trial": index, "seed": seed, "downtime_ms": trial.downtime_ms, "path": path}


class _Progress:
    """A rich progress bar on stderr, for terminals only."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self.total = total
        self._progress: Any = None

    def __enter__(self) -> Any:
        if not self.enabled:
            return None
        from rich.progress import Progress

        self._progress = Progress(transient=True)
        self._progress.start()
        task = self._progress.add_task("fig16 trials", total=self.total)
        return lambda done, _total: self._progress.update(task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
