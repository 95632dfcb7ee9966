"""`raftcron job add|ls|show|run|toggle|rm` and `raftcron exec ls`: the HTTP API from a shell.

Every command finds the cluster the same way (`--endpoints`, RAFTCRON_ENDPOINTS, or the
`cluster up` directory's cluster.json), follows the leader by itself, and prints JSON with
`--json`. Exit codes: 0 done, 1 the cluster said no (404, 409, 412, ...), 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from raftcron.cli import UsageError

JOB_FILE_BYTES_MAX = 256 * 1024


def register(subparsers: Any) -> None:
    job = subparsers.add_parser("job", help="add, list, run, toggle and remove jobs on a cluster")
    commands = job.add_subparsers(dest="job_command", metavar="{add,ls,show,run,toggle,rm}")
    job.set_defaults(func=lambda args: _help(job))

    add = commands.add_parser("add", help="create or update jobs from a JSON file (one job or a list)")
    add.add_argument("-f", "--file", required=True, help="job JSON file, or - for standard input")
    add.add_argument("--if-version", type=int, help="update only if the job is at this version")
    add.add_argument("--run", action="store_true", help="also run it once now (?runoncreate)")
    _common(add)
    add.set_defaults(func=run_add)

    ls = commands.add_parser("ls", help="list jobs")
    ls.add_argument("-q", "--query", help="only names containing this")
    _common(ls)
    ls.set_defaults(func=run_ls)

    show = commands.add_parser("show", help="show one job")
    show.add_argument("name")
    _common(show)
    show.set_defaults(func=run_show)

    run = commands.add_parser("run", help="run a job once now")
    run.add_argument("name")
    run.add_argument("--idempotency-key", help="repeat it to retry safely (default: a new one)")
    _common(run)
    run.set_defaults(func=run_run)

    toggle = commands.add_parser("toggle", help="enable or disable a job")
    toggle.add_argument("name")
    toggle.add_argument("--disabled", choices=["true", "false"], help="set instead of flipping")
    _common(toggle)
    toggle.set_defaults(func=run_toggle)

    rm = commands.add_parser("rm", help="delete a job")
    rm.add_argument("name")
    _common(rm)
    rm.set_defaults(func=run_rm)

    exec_parser = subparsers.add_parser("exec", help="list a job's executions")
    exec_commands = exec_parser.add_subparsers(dest="exec_command", metavar="{ls}")
    exec_parser.set_defaults(func=lambda args: _help(exec_parser))
    exec_ls = exec_commands.add_parser("ls", help="live and recent executions of a job")
    exec_ls.add_argument("name")
    _common(exec_ls)
    exec_ls.set_defaults(func=run_exec_ls)


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoints", metavar="URL,...", help="HTTP endpoints (or RAFTCRON_ENDPOINTS)")
    parser.add_argument("--dir", default="raftcron-cluster", help="a `cluster up` directory")
    parser.add_argument("--token-file", help="bearer token file (or RAFTCRON_TOKEN)")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds, redirects and retries included")
    parser.add_argument("--stale", action="store_true", help="reads: accept a follower's possibly stale view")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _call(args: argparse.Namespace, method: str, path: str, **kwargs: Any) -> Any:
    """One API call; a refusal by the cluster prints its message and exits 1."""
    from scheduler.server.client import ApiClient, ClientError, endpoints_from

    try:
        client = ApiClient(endpoints_from(args.endpoints, Path(args.dir)), token_file=args.token_file,
                           timeout_s=args.timeout)
    except ClientError as error:
        raise UsageError(str(error)) from None
    try:
        if method == "GET" and getattr(args, "stale", False):
            kwargs.setdefault("params", {})["stale"] = "true"
        return client.request(method, path, **kwargs)
    except ClientError as error:
        print(f"raftcron {args.command}: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        client.close()


def _read_jobs(path: str) -> list[dict[str, Any]]:
    try:
        text = sys.stdin.read(JOB_FILE_BYTES_MAX + 1) if path == "-" else Path(path).read_text()
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    if len(text) > JOB_FILE_BYTES_MAX:
        raise UsageError(f"{path} is larger than {JOB_FILE_BYTES_MAX} bytes")
    try:
        document = json.loads(text)
    except ValueError as error:
        raise UsageError(f"{path}: not JSON: {error}") from None
    jobs = document if isinstance(document, list) else [document]
    if not all(isinstance(job, dict) for job in jobs):
        raise UsageError(f"{path}: expected a job object or a list of them")
    return jobs


def run_add(args: argparse.Namespace) -> int:
    jobs = _read_jobs(args.file)
    if args.if_version is not None and len(jobs) != 1:
        raise UsageError("--if-version needs exactly one job in the file")
    results = []
    for job in jobs:
        headers = {"If-Match": f'"{args.if_version}"'} if args.if_version is not None else None
        params = {"runoncreate": "true"} if args.run else None
        view = _call(args, "POST", "/v1/jobs", body=job, headers=headers, params=params)
        results.append(view)
        if not args.json:
            print(f"{view['name']}: version {view['version']}, next {view.get('next') or '-'}")
    if args.json:
        print(json.dumps(results, indent=2))
    return 0


def run_ls(args: argparse.Namespace) -> int:
    params = {"q": args.query} if args.query else {}
    jobs = _call(args, "GET", "/v1/jobs", params=params)
    if args.json:
        print(json.dumps(jobs, indent=2))
        return 0
    print(f"{'NAME':<24} {'SCHEDULE':<22} {'STATE':<9} {'STATUS':<11} {'FIRED':>6} {'MISSED':>6}  NEXT")
    for job in jobs:
        state = "disabled" if job["disabled"] else "enabled"
        print(f"{job['name']:<24} {str(job['schedule'] or '-'):<22} {state:<9} {job['status']:<11} "
              f"{job['fired']:>6} {job['missed']:>6}  {job.get('next') or '-'}")
    return 0


def run_show(args: argparse.Namespace) -> int:
    print(json.dumps(_call(args, "GET", f"/v1/jobs/{args.name}"), indent=2))
    return 0


def run_run(args: argparse.Namespace) -> int:
    key = args.idempotency_key or f"cli:{uuid.uuid4()}"
    answer = _call(args, "POST", f"/v1/jobs/{args.name}/run", headers={"Idempotency-Key": key})
    if args.json:
        print(json.dumps(answer, indent=2))
    else:
        again = " (already started by this key)" if answer.get("duplicate") else ""
        print(f"{args.name}: run {answer['run_ms']} started{again}; idempotency key {key}")
    return 0


def run_toggle(args: argparse.Namespace) -> int:
    params = {"disabled": args.disabled} if args.disabled else None
    view = _call(args, "POST", f"/v1/jobs/{args.name}/toggle", params=params)
    print(json.dumps(view, indent=2) if args.json
          else f"{view['name']}: {'disabled' if view['disabled'] else 'enabled'}")
    return 0


def run_rm(args: argparse.Namespace) -> int:
    view = _call(args, "DELETE", f"/v1/jobs/{args.name}")
    print(json.dumps(view, indent=2) if args.json else f"{view['name']}: deleted")
    return 0


def run_exec_ls(args: argparse.Namespace) -> int:
    executions = _call(args, "GET", f"/v1/jobs/{args.name}/executions")
    if args.json:
        print(json.dumps(executions, indent=2))
        return 0
    print(f"{'TICK':<26} {'SLOT':>4} {'STATE':<12} {'ATTEMPTS':>8}  NODES (every attempt's, in order)")
    for item in executions:
        print(f"{item['tick']:<26} {item['slot']:>4} {item['state']:<12} {item['attempts']:>8}  "
              f"{_nodes(item)}")
    return 0


def _nodes(item: dict[str, object]) -> str:
    """Where the attempts ran: a retried execution names every node it tried, not only the last."""
    listed = item.get("nodes_tried")
    tried = [str(node) for node in listed] if isinstance(listed, list) else []
    last = item.get("node_name")
    if last and (not tried or tried[-1] != last):
        tried.append(str(last))
    return " > ".join(tried) or "-"
