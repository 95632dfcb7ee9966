"""`raftcron paper dkron-study`: the parser and the command (registered by raftcron/cmd_paper.py)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

HELP = """\
The Dkron system study (Albuquerque) designed these experiments and left their results empty;
here they run on raftcron in the simulator, whose nodes get a CPU, a synced disk and a network
card priced from measurements of the real server on this machine (costs.json):

  stages      an on-demand run's pipeline, stage by stage, light and heavy load
  usl         throughput versus servers and versus agents, Universal Scalability Law fits
  factorial   the study's 2^(6-3) design (D = AB, E = AC, F = BC), effects and allocation
              of variation, 3 replications
  load_shape  k6-style VUs 0 -> 20 -> 60 -> 0 over 3 minutes at 1000m, 250m and 100m CPU
  validation  the simulated response time beside the real cluster's (measured by calibrate.py)

Writes dkron_study.json, tables.md and four PNGs to --out (default papers/dkron_study/out).
Same --seed, same numbers, whatever --workers is (only the wall time differs).

examples:
  raftcron paper dkron-study                    # the full study (a few minutes)
  raftcron paper dkron-study --quick --json     # a smaller version in about 15 s
  raftcron paper dkron-study --only usl,stages --workers 2
"""

EXPERIMENTS = ("stages", "usl", "factorial", "load_shape", "validation")


def add_parser(papers: Any) -> None:
    parser = papers.add_parser("dkron-study", help="the Dkron study's experiments: stages, USL, 2^(6-3), load shape",
                               description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer points, shorter runs, one replication")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    parser.add_argument("--out", default=None, metavar="DIR", help="where to write (default papers/dkron_study/out)")
    parser.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--only", default=None, metavar="LIST",
                        help=f"comma-separated subset of {','.join(EXPERIMENTS)}")
    parser.add_argument("--costs", default=None, metavar="FILE",
                        help="a cost model JSON (default papers/dkron_study/costs.json; "
                             "`python -m papers.dkron_study.calibrate --real` measures one)")
    parser.add_argument("--no-plot", action="store_true", help="skip the figures")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from papers.dkron_study.costed import load_costs
    from papers.dkron_study.report import tables_markdown, write_outputs
    from papers.dkron_study.study import OUT_DIR, StudyOptions, run_study
    from raftcron.cli import UsageError

    only = tuple(EXPERIMENTS)
    if args.only:
        only = tuple(x.strip() for x in args.only.split(",") if x.strip())
        unknown = [x for x in only if x not in EXPERIMENTS]
        if unknown or not only:
            raise UsageError(f"--only takes {', '.join(EXPERIMENTS)}; got {args.only!r}")
    if not 1 <= args.workers <= 64:
        raise UsageError(f"--workers must be between 1 and 64, got {args.workers}")
    try:
        costs = load_costs(args.costs)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(f"cannot read the cost model {args.costs}: {error}") from None
    options = StudyOptions(quick=args.quick, seed=args.seed, workers=args.workers, costs=costs, only=only)
    say = None if args.json else (lambda text: print(f"  {text}", file=sys.stderr))
    result = run_study(options, progress=say)
    out_dir = args.out or OUT_DIR
    try:
        paths = write_outputs(result, out_dir, plot=not args.no_plot)
    except OSError as error:
        raise UsageError(f"cannot write to {out_dir}: {error}") from None
    if args.json:
        print(json.dumps(result))
        return 0
    print(tables_markdown(result))
    print(f"wall time {result['wall_seconds']} s with {args.workers} worker(s)")
    for path in paths:
        print(f"  wrote {path}")
    return 0
