"""Golden-file interaction tests for raft/ (etcd-io/raft's `interaction_test.go`, in our own code).

A file in testdata/ is a list of blocks: a command, a `----` line, the expected output, then a
blank line; lines starting with `#` are comments (cockroachdb/datadriven's simple form). `t/i`
always means "term t, index i", as in etcd. Time is one number, `now` (ms), moved only by the
tick commands: `tick 1 50` moves it and runs n1's timers alone (the others' timers are late, as
a slow process's would be, but what they receive carries the new `now`). Each node draws from
its own seeded `random.Random`, so a file replays byte for byte.

`pytest tests/raft --rewrite` (or RAFTCRON_REWRITE=1 pytest) regenerates the expected outputs.
Commit the diff only if you understand what caused it: a changed trace is a changed protocol.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable

from raft.config import RaftConfig
from raft.driver import handle_ready
from raft.errors import RaftError
from raft.messages import (AppendEntries, AppendEntriesResponse, Entry, EntryKind,
                           InstallSnapshot, InstallSnapshotResponse, Message, RequestVote,
                           RequestVoteResponse, Snapshot)
from raft.node import ConfChange, RaftNode, decode_config
from raft.progress import Role
from raft.ready import Ready, TraceEvent
from raft.storage import MemoryStorage

# add-nodes option -> RaftConfig field (`election=150-300`, `prevote`, `checkquorum`, `bugs=(a,b)`
# are apart).
CONFIG_OPTIONS = {"heartbeat": "heartbeat_interval_ms", "max-entries": "entries_per_message_max",
                  "max-inflight": "inflight_messages_max", "chunk-bytes": "snapshot_chunk_bytes"}
Machine = list[tuple[int, str]]  # the toy state machine: (index, command) of every applied entry


class Args:
    def __init__(self, words: list[str]) -> None:
        self.positional = [word for word in words if "=" not in word]
        self.options = dict(word.split("=", 1) for word in words if "=" in word)

    def node(self, position: int = 0) -> str:
        return node_id(self.positional[position])


def node_id(text: str) -> str:
    return text if text.startswith("n") else f"n{text}"


def id_list(text: str) -> list[str]:
    return [node_id(part) for part in text.strip("()").split(",") if part]


class Env:
    def __init__(self) -> None:
        self.nodes: dict[str, RaftNode] = {}  # live nodes only; a crashed one keeps its storage
        self.configs: dict[str, RaftConfig] = {}
        self.storages: dict[str, MemoryStorage] = {}
        self.machines: dict[str, Machine] = {}
        self.queue: list[Message] = []  # sent, neither delivered nor dropped, in send order
        self.cut: set[frozenset[str]] = set()
        self.options: dict[str, str] = {}  # add-nodes settings, kept for nodes added later
        self.now = 0.0
        self.boots = 0  # every (re)start draws a fresh random.Random, still fixed by the file

    def boot(self, nid: str) -> RaftNode:
        self.boots += 1
        rng = random.Random(f"{self.options.get('seed', 0)}-{nid}-{self.boots}")
        self.nodes[nid] = RaftNode(self.configs[nid], self.storages[nid], rng, self.now)
        return self.nodes[nid]

    def tick(self, nid: str, ms: float) -> list[str]:
        self.now += ms
        self.nodes[nid].tick(self.now)
        return []

    def process_ready(self, nid: str) -> list[str]:
        """The real driver's Ready loop against this node's MemoryStorage and state machine."""
        machine = self.machines[nid]

        def apply(entry: Entry) -> None:
            if entry.kind is EntryKind.NORMAL:
                machine.append((entry.index, entry.data.decode()))

        def restore(snapshot: Snapshot) -> None:
            machine[:] = load_machine(snapshot)

        ready = handle_ready(self.nodes[nid], self.storages[nid], self.queue.append, apply, restore)
        return [f"> {nid} handling Ready", *(f"  {line}" for line in format_ready(nid, ready))]

    def deliver(self, nid: str, types: set[str] | None = None) -> list[str]:
        chosen = [m for m in self.queue if m.dst == nid and matches(m, types)]
        self.queue = [m for m in self.queue if not any(m is c for c in chosen)]
        lines = [f"> {nid} receiving messages"] if chosen else []
        for message in chosen:
            lost = (f"{nid} is down" if nid not in self.nodes else
                    "partition" if frozenset((message.src, nid)) in self.cut else "")
            lines.append(f"  {format_message(message)}" + (f" (dropped: {lost})" if lost else ""))
            if not lost:
                self.nodes[nid].step(message, self.now)
        return lines

    def drop(self, nid: str, types: set[str] | None = None) -> list[str]:
        lost = [m for m in self.queue if m.dst == nid and matches(m, types)]
        self.queue = [m for m in self.queue if not any(m is x for x in lost)]
        return [f"dropped: {format_message(m)}" for m in lost]


def matches(m: Message, types: set[str] | None) -> bool:
    """`type=` takes class names, and `Heartbeat`: an AppendEntries that numbers a round."""
    heartbeat = isinstance(m, AppendEntries) and m.read_context > 0
    return types is None or type(m).__name__ in types or (heartbeat and "Heartbeat" in types)


def load_machine(snapshot: Snapshot | None) -> Machine:
    return [(index, data) for index, data in json.loads(snapshot.data)] if snapshot else []


# ---- command handlers: one small function each -------------------------------------------------
def cmd_add_nodes(env: Env, args: Args) -> list[str]:
    first = len(env.configs) + 1
    new = [f"n{i}" for i in range(first, first + int(args.positional[0]))]
    # The first nodes bootstrap together; later ones join with no configuration of their own.
    voters = id_list(args.options.pop("voters", ",".join(new) if first == 1 else ""))
    options = env.options = {**env.options, **args.options}
    low, _, high = options.get("election", "150-300").partition("-")
    extra: dict[str, object] = {field: int(options[key]) for key, field in CONFIG_OPTIONS.items() if key in options}
    if options.get("bugs"):  # `bugs=(commit-old-term)`: a planted bug (raft/config.py KNOWN_BUGS), for teaching
        extra["bugs"] = frozenset(part for part in options["bugs"].strip("()").split(",") if part)
    for nid in new:
        env.configs[nid] = RaftConfig(
            node_id=nid, peers=frozenset(voters), election_timeout_ms_min=float(low),
            election_timeout_ms_max=float(high or low), pre_vote=options.get("prevote") == "true",
            check_quorum=options.get("checkquorum") == "true", **extra)  # type: ignore[arg-type]
        env.storages[nid], env.machines[nid] = MemoryStorage(), []
        node = env.boot(nid)
        ready = node.ready()  # a fresh start's "became follower" event and nothing else
        assert not (ready.messages or ready.entries or ready.hard_state), ready
        node.advance(ready)
    return [f"{nid}: follower term=0 voters=({','.join(sorted(voters))})" for nid in new]


def cmd_campaign(env: Env, args: Args) -> list[str]:
    """Move time to the node's election deadline and run its timers: it campaigns."""
    return env.tick(args.node(), max(0.0, env.nodes[args.node()].next_deadline() - env.now))


def cmd_propose(env: Env, args: Args) -> list[str]:
    index, term = env.nodes[args.node()].propose(args.positional[1].encode())
    return [f"proposed {term}/{index}"]


def cmd_propose_conf_change(env: Env, args: Args) -> list[str]:
    change = ConfChange(args.positional[1].replace("-", "_"), args.node(2))
    index, term = env.nodes[args.node()].propose_config_change(change)
    return [f"proposed {term}/{index}"]


def cmd_read_index(env: Env, args: Args) -> list[str]:
    lease = args.options.get("lease") == "true"
    env.nodes[args.node()].read_index(int(args.positional[1]), lease=lease)
    return []


def cmd_transfer_leadership(env: Env, args: Args) -> list[str]:
    env.nodes[args.node()].transfer_leadership(args.node(1))
    return []


def cmd_tick(env: Env, args: Args) -> list[str]:
    return env.tick(args.node(), float(args.positional[1]))


def cmd_tick_election(env: Env, args: Args) -> list[str]:
    """The longest randomized timeout: a follower's election timer, a leader's quorum check."""
    return env.tick(args.node(), env.configs[args.node()].election_timeout_ms_max)


def cmd_tick_heartbeat(env: Env, args: Args) -> list[str]:
    return env.tick(args.node(), env.configs[args.node()].heartbeat_interval_ms)


def cmd_process_ready(env: Env, args: Args) -> list[str]:
    return [line for nid in map(node_id, args.positional) for line in env.process_ready(nid)]


def cmd_deliver_msgs(env: Env, args: Args) -> list[str]:
    """`deliver-msgs [ID...] [drop=(ID,...)] [type=T]`: no ID and no drop delivers to everyone."""
    types = set(args.options["type"].strip("()").split(",")) if "type" in args.options else None
    lines = [line for nid in id_list(args.options.get("drop", "")) for line in env.drop(nid, types)]
    targets = list(map(node_id, args.positional))
    if not targets and "drop" not in args.options:
        targets = sorted({m.dst for m in env.queue})
    return lines + [line for nid in targets for line in env.deliver(nid, types)]


def cmd_stabilize(env: Env, args: Args) -> list[str]:
    """Handle Readys, then deliver, until nothing is left (of the given nodes, if any)."""
    chosen = set(map(node_id, args.positional)) or set(env.configs)
    lines: list[str] = []
    for _ in range(1000):  # bounded: a cluster that never goes quiet is a bug worth seeing
        before = len(lines)
        for nid in sorted(chosen & set(env.nodes)):
            lines += env.process_ready(nid) if env.nodes[nid].has_ready() else []
        for nid in sorted(chosen & {m.dst for m in env.queue}):
            lines += env.deliver(nid)
        if len(lines) == before:
            return lines
    raise AssertionError("stabilize: the cluster never went quiet")


def cmd_isolate(env: Env, args: Args) -> list[str]:
    env.cut |= {frozenset((args.node(), other)) for other in env.configs if other != args.node()}
    return []


def cmd_recover(env: Env, args: Args) -> list[str]:
    env.cut.clear()
    return []


def cmd_crash(env: Env, args: Args) -> list[str]:
    del env.nodes[args.node()]  # memory is gone; the MemoryStorage plays the disk and survives
    return env.drop(args.node())  # in flight to a dead process: lost


def cmd_restart(env: Env, args: Args) -> list[str]:
    nid, storage = args.node(), env.storages[args.node()]
    lines = env.drop(nid)  # sent while it was down: nobody was listening
    # The state machine is volatile: it restarts from the snapshot; the log replays the rest.
    env.machines[nid] = load_machine(storage.snapshot())
    node, hard = env.boot(nid), storage.initial_state()
    return lines + [
        f"{nid} restarted: term={hard.term} vote={hard.vote or 'none'} commit={hard.commit} "
        f"snapshot={node.log_term(node.snapshot_index)}/{node.snapshot_index} "
        f"last={node.last_term}/{node.last_index}",
        f"{nid} state machine restored from snapshot: {format_machine(env.machines[nid])}"]


def cmd_compact(env: Env, args: Args) -> list[str]:
    nid, index = args.node(), int(args.positional[1])
    state = [pair for pair in env.machines[nid] if pair[0] <= index]
    snapshot = env.nodes[nid].compact(index, json.dumps(state).encode())
    env.storages[nid].compact(snapshot)
    return [f"{nid} compacted through {snapshot.meta.term}/{index}: {format_machine(state)}"]


def cmd_raft_log(env: Env, args: Args) -> list[str]:
    node = env.nodes[args.node()]
    first = node.snapshot_index
    lines = [f"snapshot {node.log_term(first)}/{first}"] if first else []
    lines += [format_entry(node.log_entry(i)) for i in range(first + 1, node.last_index + 1)]
    return lines or ["log is empty"]


def cmd_state_machine(env: Env, args: Args) -> list[str]:
    return [f"{args.node()}: {format_machine(env.machines[args.node()])}"]


def cmd_raft_state(env: Env, args: Args) -> list[str]:
    lines = []
    for nid in sorted(env.configs):
        node = env.nodes.get(nid)
        if node is None:
            lines.append(f"{nid}: crashed")
            continue
        config = node.config
        member = "voter" if nid in config.voters else "learner" if nid in config.learners else None
        others = set(env.configs) - {nid}
        cut_off = others and all(frozenset((nid, other)) in env.cut for other in others)
        lines.append(f"{nid}: {node.role.value} ({member or 'not a member'}) term={node.term} "
                     f"leader={node.leader or 'none'} commit={node.commit_index} "
                     f"applied={node.applied_index}" + " isolated" * bool(cut_off))
    return lines


def cmd_status(env: Env, args: Args) -> list[str]:
    node = env.nodes[args.node()]
    if node.role is not Role.LEADER:
        return [f"{node.id} is not the leader"]
    lines = [f"config: {format_config(node.config.voters, node.config.learners)}"]
    for peer in sorted(node.config.members - {node.id}):
        p = node.progress(peer)
        assert p is not None, peer
        meta = p.snapshot_meta
        snap = f" index={meta.index} offset={p.snapshot_offset}" if meta else ""
        lines.append(f"{peer}: {p.state.value} match={p.match} next={p.next} "
                     f"inflight={len(p.inflight)}{snap}")
    return lines


HANDLERS: dict[str, Callable[[Env, Args], list[str]]] = {
    name.removeprefix("cmd_").replace("_", "-"): handler
    for name, handler in globals().items() if name.startswith("cmd_")
}


# ---- formatting ----------------------------------------------------------------------------------
def format_config(voters: frozenset[str], learners: frozenset[str]) -> str:
    text = f"voters=({','.join(sorted(voters))})"
    return text + (f" learners=({','.join(sorted(learners))})" if learners else "")


def format_entry(entry: Entry) -> str:
    head = f"{entry.term}/{entry.index}"
    if entry.kind is EntryKind.CONFIG:
        config = decode_config(entry.data)
        return f"{head} CONFIG {format_config(config.voters, config.learners)}"
    text = entry.data.decode(errors="replace")
    data = f"'{text}'" if text.isprintable() else entry.data.hex()
    return f"{head} NOOP" if entry.kind is EntryKind.NOOP else f"{head} {data}"


def format_machine(machine: Machine) -> str:
    return "[" + ", ".join(f"{index}:{data}" for index, data in machine) + "]"


def format_message(m: Message) -> str:
    head = f"{m.src}->{m.dst} {type(m).__name__} term={m.term}"
    context = m.read_context if isinstance(m, (AppendEntries, AppendEntriesResponse)) else 0
    round_ = f" round={context}" if context else ""
    match m:
        case RequestVote():
            flags = " pre-vote" * m.pre_vote + " transfer" * m.transfer
            return f"{head} last={m.last_log_term}/{m.last_log_index}{flags}"
        case RequestVoteResponse():
            return f"{head} {'granted' if m.granted else 'rejected'}" + " pre-vote" * m.pre_vote
        case AppendEntries():
            entries = f" entries=[{', '.join(map(format_entry, m.entries))}]" if m.entries else ""
            prev = f"{m.prev_log_term}/{m.prev_log_index}"
            return f"{head} prev={prev}{entries} commit={m.commit}{round_}"
        case AppendEntriesResponse() if m.success:
            return f"{head} ok match={m.match_index}{round_}"
        case AppendEntriesResponse() if m.reject_index < 0:
            return f"{head} rejected (stale term)"
        case AppendEntriesResponse():
            hint = f"{m.conflict_term or 'end'}/{m.conflict_index}"
            return f"{head} rejected prev={m.reject_index} hint={hint}{round_}"
        case InstallSnapshot():
            return (f"{head} snap={m.meta.term}/{m.meta.index} offset={m.offset} "
                    f"bytes={len(m.data)}" + " done" * m.done)
        case InstallSnapshotResponse():
            done = m.next_offset < 0
            return f"{head} snap={m.index} " + ("installed" if done else f"next={m.next_offset}")
    return head  # TimeoutNow carries nothing else


def format_event(nid: str, event: TraceEvent) -> str:
    f = event.fields
    match event.kind:
        case "role":
            why = "" if f["role"] == "leader" else f" ({f['reason']})"
            return f"{nid} became {f['role']} at term {f['term']}{why}"
        case "campaign":
            return f"{nid} campaigns for term {f['term']}" + " (pre-vote)" * bool(f["pre_vote"])
        case "vote":
            verb, what = "grants" if f["granted"] else "rejects", "pre-vote" * bool(f["pre_vote"])
            return f"{nid} {verb} {what or 'vote'} for {f['candidate']} at term {f['term']}"
        case "commit":
            return f"{nid} commit index -> {f['index']}"
        case "config":
            config = format_config(frozenset(f["voters"]), frozenset(f["learners"]))
            return f"{nid} uses config {config} from index {f['index']}"
        case "snapshot_taken" | "snapshot_installed":
            verb = "took" if event.kind == "snapshot_taken" else "installed"
            return f"{nid} {verb} snapshot {f['term']}/{f['index']} ({f['bytes']} bytes)"
        case "snapshot_send":
            return f"{nid} starts sending snapshot at index {f['index']} to {f['peer']}"
        case "transfer" | "transfer_aborted":
            verb = "transfers" if event.kind == "transfer" else "gives up transferring"
            return f"{nid} {verb} leadership to {f['target']} at term {f['term']}"
        case "timeout_now":
            return f"{nid} got TimeoutNow from {f['src']}: campaigns at once"
        case "reads_dropped":
            return f"{nid} drops {f['count']} pending reads"
    return f"{nid} {event.kind} " + " ".join(f"{key}={f[key]}" for key in sorted(f))


def format_ready(nid: str, ready: Ready) -> list[str]:
    lines = [format_event(nid, event) for event in ready.events]
    if (hs := ready.hard_state) is not None:
        lines.append(f"HardState term={hs.term} vote={hs.vote or 'none'} commit={hs.commit}")
    if ready.entries:
        lines.append("Entries: " + ", ".join(map(format_entry, ready.entries)))
    if (snapshot := ready.snapshot) is not None:
        config = format_config(snapshot.meta.config.voters, snapshot.meta.config.learners)
        lines.append(f"Snapshot: {snapshot.meta.term}/{snapshot.meta.index} {config}")
    if ready.committed_entries:
        lines.append("CommittedEntries: " + ", ".join(map(format_entry, ready.committed_entries)))
    lines += [f"ReadStates: ctx={rs.context} index={rs.index}" for rs in ready.read_states]
    if ready.messages:
        lines += ["Messages:", *(f"  {format_message(m)}" for m in ready.messages)]
    return lines or ["(empty)"]


# ---- the file format -----------------------------------------------------------------------------
def run_command(env: Env, line: str) -> str:
    name, *words = line.split()
    if name not in HANDLERS:
        raise ValueError(f"unknown command {name!r}; known: {sorted(HANDLERS)}")
    try:
        lines = HANDLERS[name](env, Args(words))
    except RaftError as error:  # an operating error is output; anything else fails the test
        lines = [f"error: {type(error).__name__}: {error}"]
    return "\n".join(lines) if lines else "ok"


def run_file(text: str) -> str:
    """Run every block; return the file as it should read (`text` itself when all pass)."""
    env, out, lines, i = Env(), [], text.splitlines(), 0
    while i < len(lines):
        line, number = lines[i], i + 1
        i += 1
        if not line.strip() or line.startswith("#"):
            out.append(line)
            continue
        assert i < len(lines) and lines[i] == "----", f"line {number}: {line!r} needs '----' next"
        while i + 1 < len(lines) and lines[i + 1].strip():
            i += 1  # skip the old expected output: a block ends at a blank line
        i += 1
        try:
            out += [line, "----", run_command(env, line)]
        except Exception as error:
            error.add_note(f"while running {line!r} (line {number})")
            raise
    return "\n".join(out) + "\n"
