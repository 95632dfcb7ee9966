"""`raftcron server`, `raftcron agent` and `raftcron cluster up|status`.

`server` runs one Raft voter that also runs jobs, in the foreground, until SIGINT or SIGTERM.
`cluster up` starts N servers on this machine as child processes with prefixed output (the
quickest way to see the system), writes `DIR/cluster.json` for the other commands, and stops
them all on Ctrl-C. `cluster status` asks every member for its Raft view and prints a table.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from raftcron.cli import UsageError

DEFAULT_HTTP = "127.0.0.1:8080"
log = logging.getLogger("raftcron.server")


def register(subparsers: Any) -> None:
    server = subparsers.add_parser(
        "server", help="run one raftcron server (a Raft voter that also runs jobs)",
        description="Run one server in the foreground until SIGINT/SIGTERM. The cluster "
                    "secret comes from --secret-file or RAFTCRON_SECRET, never the command line.")
    _add_node_arguments(server, voter=True)
    server.set_defaults(func=run_server)

    agent = subparsers.add_parser(
        "agent", help="run a non-voting node that only runs jobs (joins as a Raft learner)",
        description="Run an agent: it replicates the log as a learner and runs the jobs "
                    "assigned to it, but never votes. --peers lists the servers.")
    _add_node_arguments(agent, voter=False)
    agent.set_defaults(func=run_agent)

    cluster = subparsers.add_parser("cluster", help="start a local cluster; show a cluster's state")
    commands = cluster.add_subparsers(dest="cluster_command", metavar="{up,status}")
    cluster.set_defaults(func=lambda args: _print_help(cluster))
    up = commands.add_parser(
        "up", help="start N local servers in the foreground (Ctrl-C stops them)",
        description="Start --nodes servers on 127.0.0.1 with prefixed logs, a fresh cluster "
                    "secret in DIR/secret, and DIR/cluster.json for `cluster status` and `job`.")
    up.add_argument("--nodes", type=int, default=3, help="number of servers (default 3)")
    up.add_argument("--dir", default="raftcron-cluster", help="data directory (default ./raftcron-cluster)")
    up.add_argument("--http-base", type=int, default=8080,
                    help="HTTP port of n1; n2 gets the next one, ... (0: pick free ports)")
    up.add_argument("--raft-base", type=int, default=7001, help="Raft port of n1 (0: free ports)")
    up.add_argument("--election-timeout-ms", type=float, default=300.0)
    up.add_argument("--heartbeat-ms", type=float, default=50.0)
    up.add_argument("--log-level", default="info")
    up.set_defaults(func=run_cluster_up)

    status = commands.add_parser(
        "status", help="print members, roles, terms, leader, commit/applied indexes",
        description="Ask each member for its view. Endpoints come from --endpoints, else "
                    "RAFTCRON_ENDPOINTS, else DIR/cluster.json.")
    _add_client_arguments(status)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(func=run_cluster_status)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _add_node_arguments(parser: argparse.ArgumentParser, *, voter: bool) -> None:
    parser.add_argument("--id", required=True, help="this node's id, e.g. n1")
    parser.add_argument("--data-dir", required=True, help="directory for the Raft log (LMDB)")
    parser.add_argument("--raft", required=True, metavar="HOST:PORT", help="Raft listen address")
    parser.add_argument("--http", default=DEFAULT_HTTP, metavar="HOST:PORT",
                        help=f"HTTP API listen address (default {DEFAULT_HTTP})")
    parser.add_argument("--peers", required=True, metavar="ID=HOST:PORT,...",
                        help="Raft addresses of all servers" + (", this one included" if voter else ""))
    parser.add_argument("--peers-http", default="", metavar="ID=HOST:PORT,...",
                        help="HTTP addresses of the servers, for redirects to the leader")
    parser.add_argument("--tags", default="", metavar="K=V,...", help="node tags for job targeting")
    parser.add_argument("--cluster-id", default="raftcron", help="frames from other clusters are refused")
    parser.add_argument("--secret-file", help="file holding the cluster secret (or RAFTCRON_SECRET)")
    parser.add_argument("--token-file", help="file holding the HTTP bearer token (or RAFTCRON_TOKEN)")
    parser.add_argument("--insecure-http", action="store_true",
                        help="allow a non-loopback HTTP bind without a token")
    parser.add_argument("--election-timeout-ms", type=float, default=300.0,
                        help="minimum election timeout; the maximum is twice it (default 300)")
    parser.add_argument("--heartbeat-ms", type=float, default=50.0, help="heartbeat interval (default 50)")
    parser.add_argument("--snapshot-entries", type=int, default=10_000,
                        help="compact the log after this many applied entries, plus up to a quarter more "
                             "drawn per node, so the nodes' compaction pauses do not coincide; a leader whose "
                             "last compaction paused it for over half the minimum election timeout hands "
                             "leadership to a follower first (docs/operations.md)")
    parser.add_argument("--wal", action=argparse.BooleanOptionalAction, default=True,
                        help="save Raft state through a write-ahead log: one flush per save "
                             "instead of LMDB's two (docs/storage.md; default on; --no-wal folds "
                             "an existing log into LMDB and runs on LMDB alone)")
    parser.add_argument("--tokens", type=int, default=16, help="job weight this node can run at once")
    parser.add_argument("--reserved-tokens", type=int, default=0, help="tokens kept for priority-1 jobs")
    parser.add_argument("--lease-ms", type=int, default=12_000,
                        help="an attempt's lease; renewed every sixth of it (default 12000)")
    parser.add_argument("--clock-offset-ms", type=int, default=2_000,
                        help="assumed bound on clock offset between servers (default 2000)")
    parser.add_argument("--trace", metavar="FILE",
                        help="append Raft events to FILE as JSON lines (the simulator's schema)")
    parser.add_argument("--fault-drop-file", metavar="FILE",
                        help="testing only (raftcron jepsen): drop Raft messages to and from the "
                             "peer ids listed in FILE, re-read every 50 ms")
    parser.add_argument("--log-level", default="info", help="debug, info, warning, error")


def _add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoints", metavar="URL,...",
                        help="HTTP endpoints, e.g. http://127.0.0.1:8080 (or RAFTCRON_ENDPOINTS)")
    parser.add_argument("--dir", default="raftcron-cluster",
                        help="a `cluster up` directory to read cluster.json from")
    parser.add_argument("--token-file", help="file holding the bearer token (or RAFTCRON_TOKEN)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")


# ---- server / agent --------------------------------------------------------------------------------

def _options(args: argparse.Namespace, *, voter: bool) -> Any:
    from scheduler.server.options import (
        OptionsError,
        ServerOptions,
        load_secret,
        load_token,
        parse_address,
        parse_peers,
        parse_tags_option,
    )

    try:
        return ServerOptions(
            node_id=args.id, data_dir=Path(args.data_dir),
            raft_address=parse_address(args.raft, "--raft"),
            http_address=parse_address(args.http, "--http"),
            peers=parse_peers(args.peers), peers_http=parse_peers(args.peers_http, "--peers-http"),
            tags=parse_tags_option(args.tags), cluster_id=args.cluster_id,
            secret=load_secret(args.secret_file), token=load_token(args.token_file),
            insecure_http=args.insecure_http, voter=voter,
            election_timeout_ms=args.election_timeout_ms, heartbeat_interval_ms=args.heartbeat_ms,
            snapshot_entries=args.snapshot_entries, wal=args.wal, tokens=args.tokens,
            reserved_tokens=args.reserved_tokens, lease_ms=args.lease_ms,
            clock_offset_ms_max=args.clock_offset_ms,
            trace_path=Path(args.trace) if args.trace else None,
            fault_drop_file=Path(args.fault_drop_file) if args.fault_drop_file else None)
    except OptionsError as error:
        raise UsageError(str(error)) from None


def configure_logging(level: str) -> None:
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise UsageError(f"--log-level: unknown level {level!r}")
    logging.basicConfig(level=numeric, stream=sys.stderr,
                        format="%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("httpx", "httpcore"):  # a line per request drowns the cluster's story
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


def run_server(args: argparse.Namespace) -> int:
    return _run_node(args, voter=True)


def run_agent(args: argparse.Namespace) -> int:
    return _run_node(args, voter=False)


def _run_node(args: argparse.Namespace, *, voter: bool) -> int:
    import trio  # here, not at the top: every `raftcron` command builds this module's parser

    from raft import gc_policy
    from raft.errors import StorageError
    from scheduler.server.node import Server

    options = _options(args, voter=voter)
    configure_logging(args.log_level)
    if options.secret is None:
        log.warning("no cluster secret: Raft frames are NOT authenticated (allowed only because "
                    "the Raft port is bound to loopback); set RAFTCRON_SECRET or --secret-file")
    server = Server(options)
    gc_policy.tune()
    try:
        trio.run(_serve_until_signal, server)
    except (StorageError, OSError, BaseExceptionGroup) as error:
        cause = _operating_error(error)
        if cause is None:
            raise
        where = "" if isinstance(cause, StorageError) else f" (--raft {args.raft}, --http {args.http})"
        print(f"raftcron {args.command}: error: {cause}{where}", file=sys.stderr)
        return 1
    return 0


def _operating_error(error: BaseException) -> BaseException | None:
    """The storage or socket error behind a failed start, also when trio wrapped it in an
    exception group (newer trio always does for errors leaving a nursery); None for a bug."""
    from raft.errors import StorageError

    if isinstance(error, (StorageError, OSError)):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _operating_error(inner)
            if found is not None:
                return found
    return None


async def _serve_until_signal(server: Any) -> None:
    """Run until SIGINT or SIGTERM, then cancel everything: an orderly stop, storage closed."""
    import trio

    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server.run)
            async for signum in signals:
                log.info("%s stopping on %s", server.options.node_id, signal.Signals(signum).name)
                await server.hand_over()
                nursery.cancel_scope.cancel()
                break


# ---- cluster up ------------------------------------------------------------------------------------

def run_cluster_up(args: argparse.Namespace) -> int:
    import trio

    from scheduler.server.local_cluster import LocalCluster, plan_cluster

    if not 1 <= args.nodes <= 9:
        raise UsageError("--nodes must be between 1 and 9")
    plan = plan_cluster(Path(args.dir), args.nodes, http_base=args.http_base, raft_base=args.raft_base,
                        extra=["--election-timeout-ms", str(args.election_timeout_ms),
                               "--heartbeat-ms", str(args.heartbeat_ms), "--log-level", args.log_level])
    print(f"starting {args.nodes} servers in {args.dir} (Ctrl-C stops them)", file=sys.stderr)
    for node in plan.nodes:
        print(f"  {node.node_id}: http://{node.http[0]}:{node.http[1]}  raft {node.raft[0]}:{node.raft[1]}",
              file=sys.stderr)
    code: int = trio.run(LocalCluster(plan).run_foreground)
    return code


# ---- cluster status --------------------------------------------------------------------------------

def run_cluster_status(args: argparse.Namespace) -> int:
    from scheduler.server.client import ClientError, endpoints_from

    try:
        endpoints = endpoints_from(args.endpoints, Path(args.dir))
    except ClientError as error:
        raise UsageError(str(error)) from None
    rows = [_member_row(url, args) for url in endpoints]
    if args.json:
        print(json.dumps({"members": rows}, indent=2))
    else:
        _print_status_table(rows)
    return 0 if any(row.get("role") == "leader" for row in rows) else 1


def _member_row(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from scheduler.server.client import ApiClient, ClientError

    client = ApiClient([url], token_file=args.token_file, timeout_s=args.timeout, follow_leader=False)
    try:
        status = client.get("/v1/")
    except ClientError as error:
        return {"endpoint": url, "error": str(error)}
    raft = status["raft"]
    return {"endpoint": url, "id": raft["id"], "role": raft["role"], "term": raft["term"],
            "leader": raft["leader"], "commit_index": raft["commit_index"],
            "applied_index": raft["applied_index"], "last_index": raft["last_index"],
            "voters": raft["voters"]}


def _print_status_table(rows: list[dict[str, Any]]) -> None:
    header = f"{'ID':<6} {'ROLE':<14} {'TERM':>6} {'LEADER':<8} {'COMMIT':>8} {'APPLIED':>8}  ENDPOINT"
    print(header)
    for row in rows:
        if "error" in row:
            print(f"{'?':<6} {'unreachable':<14} {'-':>6} {'-':<8} {'-':>8} {'-':>8}  {row['endpoint']}"
                  f"  ({row['error']})")
            continue
        print(f"{row['id']:<6} {row['role']:<14} {row['term']:>6} {row['leader'] or '-':<8} "
              f"{row['commit_index']:>8} {row['applied_index']:>8}  {row['endpoint']}")
    leaders: set[str] = {row["leader"] for row in rows if row.get("leader")}
    print(f"leader: {', '.join(sorted(leaders)) if leaders else 'none'}"
          + ("  (members disagree)" if len(leaders) > 1 else ""))

