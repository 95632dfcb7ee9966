"""`/metrics` in the Prometheus text format (version 0.0.4), written by hand.

Why by hand: a dozen gauges and counters do not justify a client library, and building the
text from the live objects at scrape time means no metric can drift from the state it shows.
Label values are only node ids, roles, kinds and statuses: bounded sets, so the number of
series is bounded too (per-address transport errors are summed by kind here).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from raft.progress import Role

if TYPE_CHECKING:
    from scheduler.server.node import Server

__all__ = ["render_metrics"]

Sample = tuple[dict[str, str], float]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        label_text = ",".join(f'{key}="{_escape(val)}"' for key, val in sorted(labels.items()))
        number = int(value) if float(value).is_integer() else value
        lines.append(f"{name}{{{label_text}}} {number}" if label_text else f"{name} {number}")
    return lines


def render_metrics(server: Server) -> str:
    runtime = server.raft
    node = runtime.node
    stats = runtime.stats
    me = {"node": server.options.node_id}
    lines: list[str] = []
    lines += _family("raftcron_raft_term", "gauge", "Current Raft term.", [(me, node.term)])
    lines += _family("raftcron_raft_role", "gauge", "1 for the role this node has now.",
                     [({**me, "role": role.value}, 1 if node.role is role else 0) for role in Role])
    lines += _family("raftcron_raft_commit_index", "gauge", "Highest log index known committed.",
                     [(me, node.commit_index)])
    lines += _family("raftcron_raft_applied_index", "gauge", "Highest log index applied here.",
                     [(me, node.applied_index)])
    lines += _family("raftcron_raft_last_index", "gauge", "Last log index.", [(me, node.last_index)])
    lines += _family("raftcron_raft_snapshot_index", "gauge", "Index of the latest snapshot.",
                     [(me, node.snapshot_index)])
    lines += _family("raftcron_raft_elections_total", "counter",
                     "Elections this node started (pre-votes not counted).", [(me, stats.elections)])
    lines += _family("raftcron_raft_leader_changes_total", "counter",
                     "Times this node saw a new leader.", [(me, stats.leader_changes)])
    lines += _family("raftcron_proposals_total", "counter", "Proposals by outcome.", [
        ({**me, "outcome": "committed"}, stats.proposals_committed),
        ({**me, "outcome": "dropped"}, stats.proposals_dropped),
        ({**me, "outcome": "timeout"}, stats.proposals_timed_out),
        ({**me, "outcome": "rejected"}, stats.proposals_rejected),
    ])
    lines += _family("raftcron_reads_total", "counter", "Linearizable reads (ReadIndex).",
                     [(me, stats.reads)])
    lines += _family("raftcron_raft_inbox_dropped_total", "counter",
                     "Peer messages dropped because the node's inbox was full.",
                     [(me, stats.inbox_dropped)])
    lines += _family("raftcron_snapshots_total", "counter", "Snapshots taken or installed.", [
        ({**me, "kind": "taken"}, stats.snapshots_taken),
        ({**me, "kind": "installed"}, stats.snapshots_installed)])
    lines += _transport_lines(server, me)
    lines += _scheduler_lines(server, me)
    for extra in server.metric_sources:
        lines += extra()
    return "\n".join(lines) + "\n"


def _transport_lines(server: Server, me: dict[str, str]) -> list[str]:
    transport = server.transport
    if transport is None:
        return []
    tstats = transport.stats
    lines = _family("raftcron_peer_errors_total", "counter",
                    "Frames from peers that were dropped, by reason.",
                    [({**me, "kind": kind}, count)
                     for kind, count in sorted(transport.peer_error_totals().items())])
    lines += _family("raftcron_transport_frames_total", "counter", "Raft frames by direction.", [
        ({**me, "direction": "sent"}, tstats.frames_sent),
        ({**me, "direction": "received"}, tstats.frames_received)])
    lines += _family("raftcron_transport_send_dropped_total", "counter",
                     "Messages dropped before sending (queue full, peer unreachable).",
                     [({**me, "peer": peer}, count) for peer, count in sorted(tstats.send_dropped.items())])
    return lines


def _scheduler_lines(server: Server, me: dict[str, str]) -> list[str]:
    state = server.scheduler.state
    totals = state.totals
    lines = _family("raftcron_ticks_total", "counter",
                    "Ticks by outcome in the replicated state (fired, skipped, missed).",
                    [({**me, "outcome": kind}, totals.get(kind, 0)) for kind in ("fired", "skipped", "missed")])
    lines += _family("raftcron_missed_ticks_total", "counter", "Ticks recorded as missed.",
                     [(me, totals.get("missed", 0))])
    lines += _family("raftcron_commands_rejected_total", "counter",
                     "Scheduler commands the state machine rejected.", [(me, totals.get("rejected", 0))])
    by_state: dict[str, int] = {}
    for execution in state.executions.values():
        by_state[execution.state] = by_state.get(execution.state, 0) + 1
    lines += _family("raftcron_executions", "gauge", "Live executions by state.",
                     [({**me, "state": name}, count) for name, count in sorted(by_state.items())])
    lines += _family("raftcron_jobs", "gauge", "Jobs defined.", [(me, len(state.jobs))])
    lines += _family("raftcron_attempts_ended_total", "counter",
                     "Attempts that ended, cluster-wide, by end state (as applied by this process).",
                     [({**me, "state": name}, count) for name, count in sorted(server.attempt_ends.items())])
    agent = server.agent_service
    if agent is not None:
        stats = agent.stats
        lines += _family("raftcron_attempts_run_total", "counter", "Attempts run on this node by result.", [
            ({**me, "result": "succeeded"}, stats.succeeded), ({**me, "result": "failed"}, stats.failed),
            ({**me, "result": "abandoned"}, stats.abandoned),
            ({**me, "result": "stale_lease"}, stats.skipped_stale)])
        lines += _family("raftcron_attempts_running", "gauge", "Attempts running on this node now.",
                         [(me, len(agent.runs))])
    leader = server.leader_service
    if leader is not None:
        planner = leader.planner
        lines += _family("raftcron_planner_fires_proposed_total", "counter",
                         "Fire items proposed by this node's planner in its current term.",
                         [(me, planner.proposed_fires if planner is not None else 0)])
    return lines
