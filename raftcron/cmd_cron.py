"""`raftcron cron`: try schedules and validate job files without a cluster.

`cron next` prints the next fire times of a spec; `cron validate` checks job JSON the way the
cluster will. Both use exactly the code the state machine uses (scheduler.schedule and
scheduler.job), so what you see here is what the cluster will do.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import TYPE_CHECKING, Any

from raftcron.cli import UsageError

if TYPE_CHECKING:
    from scheduler.job import JobSpec

# The scheduler's modules are imported by the commands that use them: building `raftcron`'s
# parser (every command does) should not pay for croniter and the job model.

COUNT_MAX = 10_000
JOB_FILE_BYTES_MAX = 16 * 1024 * 1024

SYNTAX_HELP = """\
schedule syntax:
  m h dom mon dow          5-field cron: minute hour day-of-month month day-of-week
  s m h dom mon dow        6-field cron with seconds first (Dkron/robfig style)
      each field: *  a  a-b  */n  a-b/n  a/n  lists a,b,c; names jan..dec, sun..sat;
      ? = * in dom/dow; day-of-week 0 and 7 are Sunday. If dom AND dow are both
      restricted a day matches when EITHER matches (0 0 13 * 5 = the 13th and Fridays).
  @yearly @annually @monthly @weekly @daily @midnight @hourly @minutely
  @every <Go duration>     e.g. @every 90s, @every 1h30m, @every 1.5h, @every 500ms;
                           ticks at anchor + k*d (k >= 1); here the anchor is --from
  @at <RFC 3339 time>      one shot, e.g. @at 2026-11-24T10:00:00Z (no offset = --tz)
  @manually                never fires on its own

Cron is read as wall-clock time in --tz. Across DST changes raftcron follows Vixie cron:
a fixed time skipped by the jump runs once right after it, a repeated time runs once;
specs with * in the second, minute or hour field follow the clock instead.

examples:
  raftcron cron next "30 2 * * *" --tz America/New_York --from 2026-03-07T00:00:00 --count 3
  raftcron cron next "0 */15 * * * *" --count 4 --json
  raftcron cron next "@every 1h30m" --from 2026-01-01T00:00:00Z
  raftcron cron validate -f job.json
"""


def register(subparsers: Any) -> None:
    """Add `cron next` and `cron validate` to the top-level parser."""
    parser = subparsers.add_parser(
        "cron", help="show a schedule's next fire times; validate job files",
        description="Try schedule specs and validate job definitions offline.",
        epilog=SYNTAX_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="cron_command", metavar="{next,validate}")
    parser.set_defaults(func=lambda args: _missing_command(parser))

    next_parser = commands.add_parser(
        "next", help="print the next fire times of a schedule",
        description="Print the next fire times of SPEC, one ISO 8601 time per line, in --tz.",
        epilog=SYNTAX_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    next_parser.add_argument("spec", help="schedule spec; quote it, e.g. \"*/5 * * * *\"")
    next_parser.add_argument(
        "--from", dest="from_time", metavar="TIME",
        help="start after this RFC 3339 time (no offset = wall time in --tz); also the anchor "
             "of @every. Default: now (the only place a clock is read)")
    next_parser.add_argument("--tz", default="UTC", help="IANA time zone (default UTC)")
    next_parser.add_argument("--count", type=int, default=5, help="how many times (default 5)")
    next_parser.add_argument("--json", action="store_true", help="print one JSON object")
    next_parser.set_defaults(func=run_next)

    validate_parser = commands.add_parser(
        "validate", help="validate a job JSON file (one job or a list)",
        description="Validate a job definition (or a JSON list of them) and print the "
                    "normalised form; exit 2 with the field error if invalid.")
    validate_parser.add_argument("-f", "--file", required=True,
                                 help="job JSON file, or - for standard input")
    validate_parser.set_defaults(func=run_validate)


def _missing_command(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def run_next(args: argparse.Namespace) -> int:
    """`raftcron cron next`: print the next --count fire times of a spec."""
    from scheduler.schedule import (ScheduleError, format_instant, load_timezone, parse_rfc3339_ms,
                                    parse_schedule, ticks_between)

    if not 1 <= args.count <= COUNT_MAX:
        raise UsageError(f"--count must be between 1 and {COUNT_MAX}")
    try:
        zone = load_timezone(args.tz)
    except ScheduleError as error:
        raise UsageError(f"--tz: {error}") from None
    if args.from_time is None:
        from_ms = time.time_ns() // 1_000_000  # a user tool; the library never does this
    else:
        try:
            from_ms = parse_rfc3339_ms(args.from_time, zone)
        except ValueError as error:
            raise UsageError(f"--from: {error}") from None
    try:
        schedule = parse_schedule(args.spec, timezone=args.tz, anchor_ms=from_ms)
    except ScheduleError as error:
        raise UsageError(str(error)) from None
    ticks = ticks_between(schedule, from_ms, 2**62, args.count)
    if args.json:
        print(json.dumps({
            "spec": schedule.spec, "kind": schedule.kind, "timezone": args.tz,
            "from": format_instant(from_ms, zone),
            "times": [format_instant(tick, zone) for tick in ticks], "times_ms": ticks}))
        return 0
    for tick in ticks:
        print(format_instant(tick, zone))
    if len(ticks) < args.count:
        print(f"({schedule.spec}: no further fire times)", file=sys.stderr)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    """`raftcron cron validate`: print the normalised job(s), or the first field error."""
    document = _load_json(args.file)
    if isinstance(document, list):
        jobs = [_validate_one(item, f"jobs[{index}]: ") for index, item in enumerate(document)]
        names = [job.name for job in jobs]
        for index, name in enumerate(names):
            if name in names[:index]:
                raise UsageError(f"jobs[{index}]: duplicate job name {name!r}")
        output: Any = [job.to_json() for job in jobs]
    else:
        output = _validate_one(document, "").to_json()
    print(json.dumps(output, indent=2, ensure_ascii=False))
    return 0


def _validate_one(item: object, where: str) -> JobSpec:
    from scheduler.job import JobSpec, JobValidationError

    try:
        return JobSpec.from_json(item)
    except JobValidationError as error:
        raise UsageError(f"{where}{error}") from None


def _load_json(path: str) -> object:
    try:
        if path == "-":
            text = sys.stdin.read(JOB_FILE_BYTES_MAX + 1)
        else:
            with open(path, encoding="utf-8") as handle:
                text = handle.read(JOB_FILE_BYTES_MAX + 1)
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    if len(text) > JOB_FILE_BYTES_MAX:
        raise UsageError(f"{path}: larger than {JOB_FILE_BYTES_MAX} bytes")
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as error:
        raise UsageError(f"{path}: invalid JSON: {error}") from None
    except ValueError as error:  # from the hook, or a number too long to convert
        raise UsageError(f"{path}: {error}") from None


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A key given twice would be read differently by different JSON parsers: refuse it."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r} in a JSON object")
        result[key] = value
    return result
