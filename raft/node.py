"""`RaftNode`: the whole Raft protocol as a pure state machine (sans-IO).

Rules (h11 style):
  1. Nothing here reads a clock, sleeps, opens a socket, touches a disk or draws randomness of
     its own. Time arrives as `now` (milliseconds of this node's clock); randomness comes from
     the `random.Random` the owner hands in; output leaves through `ready()`.
  2. The term is handled once, in `step()`, before any role-specific logic (etcd's `Step`).
  3. Only `_become_*` change the role, and each asserts the transition is legal.
  4. The log is truncated only through `RaftLog.find_conflict` (never `log[i:] = entries`).
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from raft.config import RaftConfig
from raft.errors import NotLeader, ProposalDropped
from raft.log import RaftLog
from raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Configuration,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    Snapshot,
    SnapshotMeta,
    TimeoutNow,
)
from raft.progress import Progress, ReplicationState, Role, quorum_commit_index, quorum_size
from raft.ready import ReadState, Ready, TraceEvent
from raft.storage import Storage

LEGAL_TRANSITIONS: frozenset[tuple[Role, Role]] = frozenset(
    {
        (Role.FOLLOWER, Role.FOLLOWER),
        (Role.FOLLOWER, Role.PRE_CANDIDATE),
        (Role.FOLLOWER, Role.CANDIDATE),
        (Role.PRE_CANDIDATE, Role.FOLLOWER),
        (Role.PRE_CANDIDATE, Role.PRE_CANDIDATE),
        (Role.PRE_CANDIDATE, Role.CANDIDATE),
        (Role.CANDIDATE, Role.FOLLOWER),
        (Role.CANDIDATE, Role.PRE_CANDIDATE),  # its election timed out: ask again before a new term
        (Role.CANDIDATE, Role.CANDIDATE),
        (Role.CANDIDATE, Role.LEADER),
        (Role.LEADER, Role.FOLLOWER),
    }
)


# Enum members as module constants: on CPython 3.11 `Role.LEADER` is a lookup through the
# enum's metaclass (~55 ns), and the hot paths test roles and states ~30 times per proposal.
_FOLLOWER: Final = Role.FOLLOWER
_PRE_CANDIDATE: Final = Role.PRE_CANDIDATE
_CANDIDATE: Final = Role.CANDIDATE
_LEADER: Final = Role.LEADER
_PROBE: Final = ReplicationState.PROBE
_REPLICATE: Final = ReplicationState.REPLICATE
_SNAPSHOT: Final = ReplicationState.SNAPSHOT
_NORMAL: Final = EntryKind.NORMAL
_NOOP: Final = EntryKind.NOOP
_CONFIG: Final = EntryKind.CONFIG


@dataclass(frozen=True, slots=True)
class ConfChange:
    """One membership step (thesis §4.1: one server at a time)."""

    action: str  # "add_learner" | "add_voter" | "promote" | "remove"
    node: str


def encode_config(config: Configuration) -> bytes:
    return json.dumps({"voters": sorted(config.voters), "learners": sorted(config.learners)}).encode()


def decode_config(data: bytes) -> Configuration:
    obj = json.loads(data)
    return Configuration(voters=frozenset(obj["voters"]), learners=frozenset(obj["learners"]))


class _PendingRead:
    __slots__ = ("context", "index", "round", "acks")

    def __init__(self, context: int, index: int, round_: int, acks: set[str]) -> None:
        self.context, self.index, self.round, self.acks = context, index, round_, acks


class RaftNode:
    def __init__(self, config: RaftConfig, storage: Storage, rng: random.Random, now: float) -> None:
        self.id = config.node_id
        self.cfg = config
        self._storage = storage
        self._rng = rng
        self._now = now
        self._bugs = config.bugs
        self.role = _FOLLOWER
        self.leader: str | None = None
        self._msgs: list[Message] = []
        self._events: list[TraceEvent] = []
        self._read_states: list[ReadState] = []
        self._pending_snapshot: Snapshot | None = None
        self._load(storage)
        self._votes: dict[str, bool] = {}
        self._progress: dict[str, Progress] = {}
        self._election_deadline = math.inf
        self._heartbeat_deadline = math.inf
        self._quorum_deadline = math.inf
        # A restart forgets when we last heard from a leader: assume "just now", so the promise
        # behind its lease (no vote for min election timeout) survives the restart.
        self._leader_contact = now
        self._transfer_target: str | None = None
        self._transfer_sent = False
        self._transfer_deadline = math.inf
        self._replicate_pending = False
        self._reads: list[_PendingRead] = []
        self._reads_waiting: list[int] = []  # contexts waiting for an entry committed in our term
        self._read_round = 0
        self._read_round_pending = False  # a round for new reads goes out with the next Ready
        self._round_sent: dict[int, float] = {}  # heartbeat round -> local send time (bounded)
        self._round_acks: dict[int, set[str]] = {}
        self._lease_from = -math.inf  # send time of the latest round a quorum acknowledged
        self._incoming_snapshot: tuple[SnapshotMeta, bytearray] | None = None
        self._become_follower(self.term, None, reason="start")

    # ---- start-up ----------------------------------------------------------------------------
    def _load(self, storage: Storage) -> None:
        hard = storage.initial_state()
        snapshot_meta = storage.snapshot_meta()  # the bytes stay in storage
        if snapshot_meta is not None:
            self._log = RaftLog(snapshot_meta.index, snapshot_meta.term)
            self._snapshot_config = snapshot_meta.config
        else:
            self._log = RaftLog()
            self._snapshot_config = Configuration(voters=self.cfg.peers)
        first, last = storage.first_index(), storage.last_index()
        if last >= first:
            self._log.entries = storage.entries(first, last + 1)
        self._log.stable = self._log.last_index
        self._log.committed = max(hard.commit, self._log.snapshot_index)
        assert self._log.committed <= self._log.last_index, "storage lost committed entries"
        self.term, self.vote = hard.term, hard.vote
        self._persisted = hard
        self._configs: list[tuple[int, Configuration]] = [
            (e.index, decode_config(e.data)) for e in self._log.entries if e.kind is _CONFIG
        ]
        self._log.check()

    # ---- public inspection ---------------------------------------------------------------------
    @property
    def config(self) -> Configuration:
        return self._configs[-1][1] if self._configs else self._snapshot_config

    @property
    def commit_index(self) -> int:
        return self._log.committed

    @property
    def last_index(self) -> int:
        return self._log.last_index

    @property
    def last_term(self) -> int:
        return self._log.last_term

    @property
    def snapshot_index(self) -> int:
        return self._log.snapshot_index

    @property
    def log_length(self) -> int:
        """Entries held after the snapshot: `last_index - snapshot_index`, in one call."""
        return len(self._log.entries)

    @property
    def applied_index(self) -> int:
        return self._log.applied

    def log_term(self, index: int) -> int | None:
        return self._log.term(index)

    def log_entry(self, index: int) -> Entry:
        return self._log.entry(index)

    def progress(self, node: str) -> Progress | None:
        return self._progress.get(node)

    @property
    def transfer_target(self) -> str | None:
        """The voter this leader is handing leadership to, while a transfer is under way."""
        return self._transfer_target

    def config_at(self, index: int) -> Configuration:
        """The configuration in force at `index` (the latest config entry at or before it)."""
        chosen = self._snapshot_config
        for config_index, config in self._configs:
            if config_index > index:
                break
            chosen = config
        return chosen

    def next_deadline(self) -> float:
        """The local time at which `tick()` next has work to do (inf when none)."""
        if self.role is _LEADER:  # min() of three, spelled out: once per input of the leader
            deadline = self._heartbeat_deadline
            if self._quorum_deadline < deadline:
                deadline = self._quorum_deadline
            return self._transfer_deadline if self._transfer_deadline < deadline else deadline
        return self._election_deadline

    # ---- inputs --------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        self._now = now
        if self.role is _LEADER:
            self._tick_leader(now)
        elif now >= self._election_deadline:
            if self._promotable():
                self._campaign(transfer=False)
            else:
                self._reset_election_deadline()

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append a command; returns (index, term). The caller learns the outcome from applies."""
        self._check_can_propose()
        entry = Entry(term=self.term, index=self._log.last_index + 1, kind=_NORMAL, data=data)
        self._log.append_new(entry)
        self._replicate_pending = True
        if len(self.config.voters) == 1:
            self._maybe_commit()
        return entry.index, entry.term

    def propose_many(self, commands: Sequence[bytes]) -> tuple[int, int, int]:
        """`propose` for several commands at once, in order: as many as the uncommitted-entry
        limit leaves room for. Returns (index of the first, term, how many were appended);
        raises as `propose` when none can be. Why: a runtime appends a whole group of queued
        proposals per Ready, and the checks need not run per command."""
        self._check_can_propose()
        log = self._log
        count = min(len(commands), self.cfg.uncommitted_entries_max - (log.last_index - log.committed))
        term, first = self.term, log.last_index + 1
        append = log.append_new
        for offset in range(count):
            append(Entry(term=term, index=first + offset, kind=_NORMAL, data=commands[offset]))
        self._replicate_pending = True
        if len(self.config.voters) == 1:
            self._maybe_commit()
        return first, term, count

    def propose_config_change(self, change: ConfChange) -> tuple[int, int]:
        """One server at a time, only after the leader committed an entry of its term, and only
        with no other configuration change uncommitted (thesis §4.1 and its 2015 bug fix)."""
        self._check_can_propose()
        if self._log.term(self._log.committed) != self.term:
            raise ProposalDropped("the leader has not yet committed an entry of its term")
        if self._configs and self._configs[-1][0] > self._log.committed:
            raise ProposalDropped("another configuration change is not yet committed")
        new_config = _apply_change(self.config, change)
        entry = Entry(term=self.term, index=self._log.last_index + 1, kind=_CONFIG,
                      data=encode_config(new_config))
        self._log.append_new(entry)
        self._on_config_appended(entry.index, new_config)
        self._replicate_pending = True
        self._maybe_commit()
        return entry.index, entry.term

    def read_index(self, context: int, *, lease: bool = False, now: float | None = None) -> None:
        """Ask for a linearizable read point; a `ReadState(context, index)` comes out in a later
        Ready once a quorum confirmed this node still leads (thesis §6.4, no log write).

        With `lease=True` the leader answers at once while its lease holds (thesis §6.4.1):
        safe only if no clock runs faster or slower than `clock_drift_rate_max` allows and no
        clock jumps, and only with check-quorum (followers refuse votes while in lease)."""
        if now is not None:
            self._now = now  # judge the lease by the caller's clock, not the last tick's
        if self.role is not _LEADER:
            raise NotLeader(self.leader)
        if "stale-read" in self._bugs:
            self._read_states.append(ReadState(context, self._log.committed))  # trusts itself: wrong
            return
        if self._log.term(self._log.committed) != self.term:
            self._reads_waiting.append(context)  # §8: wait for this term's no-op to commit
            return
        if lease and self.lease_valid():
            self._read_states.append(ReadState(context, self._log.committed))
            return
        self._start_read(context)

    def lease_valid(self) -> bool:
        """A quorum acknowledged a heartbeat sent at local time s; none of them grants a vote
        until its clock advanced election_timeout_ms_min. With clock rates within 1 ± ρ, that
        takes at least min/(1+ρ) true time, which our clock measures as at least
        min·(1-ρ)/(1+ρ). Until then no other leader can exist."""
        if self.role is not _LEADER or not self.cfg.check_quorum or self._transfer_target is not None:
            return False
        if not self.cfg.lease_reads:
            return False  # followers may forget their promise on a closed connection
        rho = self.cfg.clock_drift_rate_max
        duration = self.cfg.election_timeout_ms_min * (1.0 - rho) / (1.0 + rho)
        return self._now < self._lease_from + duration

    def leader_connection_lost(self, peer: str, now: float) -> None:
        """The driver saw a connection with `peer` close (EOF or reset: what the kernel does to
        the sockets of a killed process). If `peer` is our leader, do not wait out a randomized
        election timeout. Counting from now when lease reads are off (the lease promise is
        forgotten, so peers that saw the close grant the pre-vote), else from the moment the
        promise expires (lease reads stay safe), the survivors campaign in turn: the k-th
        voter other than `peer`, by id, after k·J + U(0, J/2), J = leader_loss_jitter_ms. All
        survivors read EOF at the same instant, so taking turns, not luck, keeps them from
        splitting the vote, even when a loaded machine delays each by milliseconds.
        A close proves nothing: the leader may be alive (a reconnect, a one-way fault). It only
        moves a timer; its next append cancels the campaign, a pre-vote still needs a quorum
        that lost the leader too, and safety never depended on timing (docs/raft.md)."""
        self._now = now
        jitter = self.cfg.leader_loss_jitter_ms
        if jitter is None or self.role is not _FOLLOWER or peer != self.leader or peer == self.id:
            return
        if self.cfg.lease_reads:
            start = max(now, self._leader_contact + self.cfg.election_timeout_ms_min)
        else:
            self._leader_contact = -math.inf  # the promise guards only against disruption here
            start = now
        others = sorted(v for v in self.config.voters if v != peer)
        turn = others.index(self.id) if self.id in others else 0
        slot = start + turn * jitter
        if self._election_deadline <= slot + jitter / 2:
            return  # already due within our turn (e.g. a second close of the same leader)
        self._election_deadline = slot + self._rng.uniform(0.0, jitter / 2)
        self._emit("leader_lost", leader=peer, campaign_at=round(self._election_deadline, 3),
                   lease_kept=self.cfg.lease_reads)

    def transfer_leadership(self, target: str) -> None:
        """Hand leadership to `target` (thesis §3.10): catch it up, then send TimeoutNow."""
        if self.role is not _LEADER:
            raise NotLeader(self.leader)
        if target == self.id or target not in self.config.voters:
            raise ProposalDropped(f"cannot transfer leadership to {target!r}: not another voter")
        if self._transfer_target == target:
            return  # already under way: a retry must not extend the pause in writes (as etcd)
        self._transfer_target = target
        self._transfer_deadline = self._now + self.cfg.election_timeout_ms_max
        self._emit("transfer", target=target, term=self.term)
        progress = self._progress[target]
        self._transfer_sent = False
        if progress.match == self._log.last_index:
            self._send_timeout_now(target)
        else:
            self._send_append(target)

    def _send_timeout_now(self, target: str) -> None:
        """The transfer's last step, sent once (a second election would only cost a term). The
        target's election gets a full election timeout from now: aborting sooner would let this
        leader take writes again, so the target's log falls behind, it loses, and its higher
        term deposes us anyway, leaving no leader for an election timeout."""
        self._transfer_sent = True
        self._transfer_deadline = self._now + self.cfg.election_timeout_ms_max
        self._send(TimeoutNow(src=self.id, dst=target, term=self.term))

    def compact(self, index: int, data: bytes) -> Snapshot:
        """The application has applied through `index` and serialised its state as `data`:
        drop the log behind it. The driver stores the returned snapshot with `storage.compact`."""
        assert index <= self._log.applied, f"compact({index}) beyond applied {self._log.applied}"
        term = self._log.term(index)
        assert term is not None and index >= self._log.snapshot_index
        meta = SnapshotMeta(index=index, term=term, config=self.config_at(index))
        self._snapshot_config = meta.config
        self._configs = [(i, c) for i, c in self._configs if i > index]
        self._log.compact(index, term)
        self._emit("snapshot_taken", index=index, term=term, bytes=len(data))
        return Snapshot(meta=meta, data=data)

    # ---- output --------------------------------------------------------------------------------
    def has_ready(self) -> bool:
        log = self._log
        persisted = self._persisted
        return bool(  # runs after every input and every Ready: `last_index` spelled out
            self._msgs or self._events or self._read_states or self._replicate_pending
            or self._read_round_pending or self._pending_snapshot is not None
            or log.stable < log.snapshot_index + len(log.entries)
            or log.applied < log.committed or self.term != persisted.term
            or self.vote != persisted.vote
        )  # a commit index that alone moved is no reason for a Ready: it is volatile (Fig. 2)

    def ready(self) -> Ready:
        if self._read_round_pending and self.role is _LEADER:
            self._heartbeat_round(periodic=False)
        if self._replicate_pending and self.role is _LEADER:
            last = self._log.snapshot_index + len(self._log.entries)
            for peer, progress in self._progress.items():
                # `_send_append`'s first test, here: after a commit no peer has anything new
                if progress.state is not _REPLICATE or progress.next <= last:
                    self._send_append(peer)
        self._replicate_pending = False
        # The hard state goes out only when it must be synced anyway (term or vote moved, or
        # entries or a snapshot are being saved), carrying the latest commit along: a commit
        # index that alone moved is volatile (Figure 2; etcd's MustSync) and costs no fsync.
        persisted = self._persisted
        log = self._log
        base = log.snapshot_index + 1  # log.unstable() and log.next_committed(), spelled out
        entries = log.entries[log.stable + 1 - base:]
        committed, applied = log.committed, log.applied
        changed = (self.term != persisted.term or self.vote != persisted.vote
                   or ((entries or self._pending_snapshot is not None) and committed != persisted.commit))
        # Positional, in field order: calling a class with keywords builds a dict for its
        # `__init__` (~0.2 us more), and every input of every node ends in a Ready.
        ready = Ready(
            HardState(term=self.term, vote=self.vote, commit=committed) if changed else None,  # hard_state
            entries,  # entries
            self._pending_snapshot,  # snapshot
            self._msgs,  # messages
            log.entries[applied + 1 - base:committed + 1 - base] if committed > applied else [],  # committed_entries
            self._read_states,  # read_states
            self._events,  # events
        )
        self._msgs, self._events, self._read_states = [], [], []
        return ready

    def advance(self, ready: Ready) -> None:
        """The driver did what `ready` asked: its entries are stable, its commits applied."""
        if ready.hard_state is not None:
            self._persisted = ready.hard_state
        if ready.snapshot is not None:
            assert self._pending_snapshot is ready.snapshot
            self._pending_snapshot = None
            self._log.stable = max(self._log.stable, ready.snapshot.meta.index)
        log = self._log
        if ready.entries:
            last = ready.entries[-1]
            if log.term(last.index) == last.term and last.index > log.stable:  # not truncated meanwhile
                log.stable = last.index
        if ready.committed_entries:
            index = ready.committed_entries[-1].index
            if index > log.applied:
                log.applied = index
        log.check()

    # ---- the term, then the role ------------------------------------------------------------------
    def step(self, message: Message, now: float) -> None:
        """Handle one message from a peer. Term first (Fig. 2, "All Servers"), then the role."""
        self._now = now
        if message.dst != self.id:
            return
        if message.term > self.term and not self._accept_higher_term(message):
            return
        if message.term < self.term:
            self._answer_lower_term(message)
            return
        # The role's handler: one dict lookup instead of a `match` that tries the classes in
        # turn, and no call in between (once per message).
        _STEP_HANDLERS[type(message)](self, message)

    def _accept_higher_term(self, message: Message) -> bool:
        """Decide whether a higher term deposes us; pre-vote traffic and lease-protected vote
        requests never do (thesis §9.6, §4.2.3)."""
        if isinstance(message, RequestVote):
            if self._in_lease() and not message.transfer:
                return False  # we heard from a live leader recently: ignore the disruptor
            if message.pre_vote:
                return True  # answer without changing our term
        if isinstance(message, RequestVoteResponse) and message.pre_vote and message.granted:
            return True  # the future term of our own pre-vote; not a reason to step down
        leader = message.src if isinstance(message, (AppendEntries, InstallSnapshot)) else None
        # Figure 2 resets the election timer only on a leader's append, a granted vote, or our
        # own campaign; etcd (and our default) redraws it on every new term. With
        # `keep_timer_on_higher_term` a follower that merely learns a higher term from a vote
        # request keeps its timer, so an ineligible candidate that times out first no longer
        # delays the eligible ones (papers/raft_election/README.md measures the difference).
        keep = self.cfg.keep_timer_on_higher_term and isinstance(message, RequestVote)
        self._become_follower(message.term, leader, reason="higher term", keep_timer=keep)
        return True

    def _answer_lower_term(self, message: Message) -> None:
        """A stale leader learns the new term from our reply; a stale pre-candidate learns it is
        behind (etcd answers both, else a partitioned node with pre-vote could stall forever)."""
        if isinstance(message, (AppendEntries, InstallSnapshot)):
            self._send(AppendEntriesResponse(src=self.id, dst=message.src, term=self.term, success=False,
                                             reject_index=-1))
        elif isinstance(message, RequestVote) and message.pre_vote:
            self._send(RequestVoteResponse(src=self.id, dst=message.src, term=self.term, granted=False,
                                           pre_vote=True))

    def _handle_timeout_now(self, message: TimeoutNow) -> None:
        if self.role is not _LEADER and self._promotable():
            self._emit("timeout_now", src=message.src, term=self.term)
            self._campaign(transfer=True)

    # ---- role changes ---------------------------------------------------------------------------
    def _set_role(self, role: Role) -> None:
        transition = (self.role, role)
        assert transition in LEGAL_TRANSITIONS, f"invalid transition [{self.role.value} -> {role.value}]"
        self.role = role

    def _become_follower(self, term: int, leader: str | None, *, reason: str, keep_timer: bool = False) -> None:
        assert term >= self.term
        was = self.role
        keep_timer = keep_timer and was is _FOLLOWER and self._election_deadline != math.inf
        if term > self.term:
            self.term, self.vote = term, None
        self._set_role(_FOLLOWER)
        self.leader = leader
        self._progress = {}
        self._votes = {}
        self._transfer_target = None
        self._transfer_deadline = self._heartbeat_deadline = self._quorum_deadline = math.inf
        self._abandon_reads()
        if not keep_timer:
            self._reset_election_deadline()
        if was is not _FOLLOWER or reason == "start":
            self._emit("role", role="follower", term=self.term, leader=leader, reason=reason)

    def _become_pre_candidate(self) -> None:
        self._set_role(_PRE_CANDIDATE)
        self.leader = None
        self._votes = {}
        self._reset_election_deadline()
        self._emit("role", role="pre-candidate", term=self.term, leader=None, reason="election timeout")

    def _become_candidate(self, *, reason: str) -> None:
        self._set_role(_CANDIDATE)
        self.term += 1
        self.vote = self.id
        self.leader = None
        self._votes = {}
        self._reset_election_deadline()
        self._emit("role", role="candidate", term=self.term, leader=None, reason=reason)

    def _become_leader(self) -> None:
        self._set_role(_LEADER)
        self.leader = self.id
        last = self._log.last_index
        # sorted: a frozenset's order follows PYTHONHASHSEED, and this order is the order of messages
        self._progress = {peer: Progress(last + 1) for peer in sorted(self.config.members) if peer != self.id}
        self._election_deadline = math.inf
        self._heartbeat_deadline = self._now  # heartbeat at once: "sends empty AppendEntries" (§5.2)
        self._quorum_deadline = self._now + self.cfg.election_timeout_ms_max
        self._emit("role", role="leader", term=self.term, leader=self.id, reason="won election")
        noop = Entry(term=self.term, index=last + 1, kind=_NOOP)
        self._log.append_new(noop)  # commit an entry of our term to learn what is committed (§8)
        self._maybe_commit()
        self._replicate_pending = True
        self._tick_leader(self._now)

    def _reset_election_deadline(self) -> None:
        low, high = self.cfg.election_timeout_ms_min, self.cfg.election_timeout_ms_max
        timeout = low + (high - low) * self._rng.random()  # Random.uniform's formula, minus a Python call
        self._election_deadline = self._now + timeout

    def _promotable(self) -> bool:
        """A voter of its latest configuration, or of the committed one: a server whose removal
        is not yet committed may have to lead again to commit it (thesis §4.2.2)."""
        if self.id in self.config.voters:
            return True
        return self.id in self.config_at(self._log.committed).voters

    def _in_lease(self) -> bool:
        """Heard from a leader within the minimum election timeout (thesis §4.2.3). A leader is
        its own lease: check-quorum makes it step down once it loses its majority, and until
        then "it will not be deposed by larger term numbers" (etcd does the same). A follower
        keeps the promise even if it no longer knows the leader (e.g. just restarted)."""
        if not self.cfg.check_quorum:
            return False
        if self.role is _LEADER:
            return True
        return self._now - self._leader_contact < self.cfg.election_timeout_ms_min

    # ---- elections ---------------------------------------------------------------------------------
    def _campaign(self, *, transfer: bool) -> None:
        if self.cfg.pre_vote and not transfer:
            self._become_pre_candidate()
            vote_term, pre_vote = self.term + 1, True
        else:
            self._become_candidate(reason="leadership transfer" if transfer else "election timeout")
            vote_term, pre_vote = self.term, False
        self._emit("campaign", term=vote_term, pre_vote=pre_vote)
        self._votes[self.id] = True
        if self._tally_votes():
            return
        for peer in sorted(self.config.voters):
            if peer != self.id:
                self._send(RequestVote(src=self.id, dst=peer, term=vote_term,
                                       last_log_index=self._log.last_index,
                                       last_log_term=self._log.last_term,
                                       pre_vote=pre_vote, transfer=transfer))

    def _handle_vote_request(self, m: RequestVote) -> None:
        can_vote = (
            self.vote == m.src
            or (self.vote is None and self.leader is None)
            or (m.pre_vote and m.term > self.term)
        )
        up_to_date = "vote-any-log" in self._bugs or self._log.is_up_to_date(m.last_log_index, m.last_log_term)
        # No membership test: "servers process incoming RPC requests without consulting their
        # current configurations" (thesis §4.1); the candidate counts only its own config's voters.
        granted = can_vote and up_to_date
        if granted and not m.pre_vote:
            self.vote = m.src
            self._reset_election_deadline()  # "granting vote to candidate" resets the timer (Fig. 2)
        self._emit("vote", candidate=m.src, term=m.term, granted=granted, pre_vote=m.pre_vote)
        reply_term = m.term if (granted and m.pre_vote) else self.term
        self._send(RequestVoteResponse(src=self.id, dst=m.src, term=reply_term, granted=granted,
                                       pre_vote=m.pre_vote))

    def _handle_vote_response(self, m: RequestVoteResponse) -> None:
        expected_pre = self.role is _PRE_CANDIDATE
        if self.role not in (_PRE_CANDIDATE, _CANDIDATE) or m.pre_vote != expected_pre:
            return
        if m.src not in self.config.voters:
            return
        self._votes.setdefault(m.src, m.granted)
        self._tally_votes()

    def _tally_votes(self) -> bool:
        """Win, lose, or wait; True when the election is decided."""
        voters = self.config.voters
        needed = quorum_size(len(voters))
        granted = sum(1 for node, ok in self._votes.items() if ok and node in voters)
        rejected = sum(1 for node, ok in self._votes.items() if not ok and node in voters)
        if granted >= needed:
            if self.role is _PRE_CANDIDATE:
                self._campaign_after_pre_vote()
            else:
                self._become_leader()
            return True
        if rejected >= needed:
            self._become_follower(self.term, None, reason="lost election")
            return True
        return False

    def _campaign_after_pre_vote(self) -> None:
        self._become_candidate(reason="pre-vote won")
        self._votes[self.id] = True
        if self._tally_votes():
            return
        for peer in sorted(self.config.voters):
            if peer != self.id:
                self._send(RequestVote(src=self.id, dst=peer, term=self.term,
                                       last_log_index=self._log.last_index,
                                       last_log_term=self._log.last_term))

    # ---- replication: follower side ----------------------------------------------------------------
    def _handle_append(self, m: AppendEntries) -> None:
        if self.role is not _FOLLOWER:
            self._become_follower(self.term, m.src, reason="leader of this term")
        assert self.role is _FOLLOWER
        self.leader = m.src
        self._leader_contact = self._now
        self._reset_election_deadline()
        self._msgs.append(self._append_result(m))  # `_send`, inlined: once per append

    def _append_result(self, m: AppendEntries) -> AppendEntriesResponse:
        log = self._log
        if m.prev_log_index < log.committed:
            # Our committed prefix matches the leader's (Leader Completeness); skip what we have.
            entries = tuple(e for e in m.entries if e.index > log.committed)
            if not entries:
                return AppendEntriesResponse(src=self.id, dst=m.src, term=self.term, success=True,
                                             match_index=log.committed, read_context=m.read_context)
            m = AppendEntries(src=m.src, dst=m.dst, term=m.term, prev_log_index=entries[0].index - 1,
                              prev_log_term=log.term(entries[0].index - 1) or 0, entries=entries,
                              commit=m.commit, read_context=m.read_context)
        if log.term(m.prev_log_index) != m.prev_log_term:  # log.match_term, minus a call
            return self._reject_append(m, dict(src=self.id, dst=m.src, term=self.term, read_context=m.read_context))
        truncate = "no-truncate" not in self._bugs
        first_changed = log.append(m.entries, truncate=truncate) if m.entries else 0
        if first_changed:
            self._on_entries_replaced(first_changed)
        last_new = m.prev_log_index + len(m.entries)
        if log.commit_to(min(m.commit, last_new)):
            self._emit_commit()
        # Keywords spelled out, not **base: this is the reply to every append and heartbeat.
        return AppendEntriesResponse(src=self.id, dst=m.src, term=self.term, success=True,
                                     match_index=last_new, read_context=m.read_context)

    def _reject_append(self, m: AppendEntries, base: dict[str, Any]) -> AppendEntriesResponse:
        """Tell the leader where to retry: past our end, or at the start of the conflicting term."""
        log = self._log
        if m.prev_log_index > log.last_index:
            return AppendEntriesResponse(**base, success=False, reject_index=m.prev_log_index,
                                         conflict_index=log.last_index + 1, conflict_term=0)
        conflict_term = log.term(m.prev_log_index)
        assert conflict_term is not None
        return AppendEntriesResponse(**base, success=False, reject_index=m.prev_log_index,
                                     conflict_index=log.first_index_of_term(m.prev_log_index),
                                     conflict_term=conflict_term)

    def _on_entries_replaced(self, first_index: int) -> None:
        """Entries from `first_index` on are new: drop configs they replaced, adopt new ones."""
        if self._configs and self._configs[-1][0] >= first_index:  # kept in index order
            self._configs = [(i, c) for i, c in self._configs if i < first_index]
        for entry in self._log.entries[first_index - self._log.snapshot_index - 1:]:
            if entry.kind is _CONFIG:
                self._configs.append((entry.index, decode_config(entry.data)))
                self._emit("config", index=entry.index, voters=sorted(self._configs[-1][1].voters),
                           learners=sorted(self._configs[-1][1].learners))

    def _handle_snapshot_chunk(self, m: InstallSnapshot) -> None:
        if self.role is not _FOLLOWER:
            self._become_follower(self.term, m.src, reason="leader of this term")
        self.leader = m.src
        self._leader_contact = self._now
        self._reset_election_deadline()
        meta = m.meta
        reply: dict[str, Any] = dict(src=self.id, dst=m.src, term=self.term, index=meta.index)
        if meta.index <= self._log.committed:
            self._send(InstallSnapshotResponse(**reply, next_offset=-1))
            return
        buffer = self._incoming_snapshot
        if m.offset == 0:
            buffer = (meta, bytearray())
        elif buffer is None or buffer[0] != meta or len(buffer[1]) != m.offset:
            have = len(buffer[1]) if buffer is not None and buffer[0] == meta else 0
            self._send(InstallSnapshotResponse(**reply, next_offset=have))
            return
        buffer[1].extend(m.data)
        self._incoming_snapshot = buffer
        if not m.done:
            self._send(InstallSnapshotResponse(**reply, next_offset=len(buffer[1])))
            return
        self._incoming_snapshot = None
        self._restore_snapshot(Snapshot(meta=meta, data=bytes(buffer[1])))
        self._send(InstallSnapshotResponse(**reply, next_offset=-1))

    def _restore_snapshot(self, snapshot: Snapshot) -> None:
        meta = snapshot.meta
        self._log.restore(meta.index, meta.term)
        self._snapshot_config = meta.config
        self._configs = [(i, c) for i, c in self._configs if i > meta.index and self._log.term(i) is not None]
        self._pending_snapshot = snapshot
        self._emit("snapshot_installed", index=meta.index, term=meta.term, bytes=len(snapshot.data))
        self._emit_commit()

    # ---- replication: leader side ------------------------------------------------------------------
    def _tick_leader(self, now: float) -> None:
        if now >= self._heartbeat_deadline:
            self._heartbeat_deadline = now + self.cfg.heartbeat_interval_ms
            self._heartbeat_round(periodic=True)
        if now >= self._quorum_deadline:
            self._quorum_deadline = now + self.cfg.election_timeout_ms_max
            if self.cfg.check_quorum and not self._quorum_active():
                self._become_follower(self.term, None, reason="lost quorum")
                return
        if now >= self._transfer_deadline:
            self._emit("transfer_aborted", target=self._transfer_target, term=self.term)
            self._transfer_target, self._transfer_deadline = None, math.inf

    def _quorum_active(self) -> bool:
        """Check quorum: step down if a majority stayed silent for an election timeout (§6.2)."""
        active = {self.id}
        for peer, progress in self._progress.items():
            if progress.recent_active:
                active.add(peer)
            progress.recent_active = False
        voters = self.config.voters
        return len(active & voters) >= quorum_size(len(voters))

    def _heartbeat_round(self, *, periodic: bool) -> None:
        """Heartbeats carry prev = the follower's match point, so they are never rejected. Every
        round has a number, echoed in replies: a quorum of replies confirms reads issued before
        the round and extends the lease. Only periodic rounds judge stalls: a follower that
        acknowledged nothing since the last one gets its appends (or snapshot chunk) again."""
        self._read_round += 1
        round_ = self._read_round
        self._read_round_pending = False
        self._round_sent[round_] = self._now
        self._round_acks[round_] = {self.id}
        if len(self._round_sent) > 64:
            oldest = next(iter(self._round_sent))  # rounds are inserted in increasing order
            del self._round_sent[oldest]
            self._round_acks.pop(oldest, None)
        for peer, progress in self._progress.items():
            if periodic:
                stalled = not progress.acked
                progress.acked = False
                if progress.state is _SNAPSHOT and stalled:
                    self._send_snapshot_chunk(peer, progress)
                elif stalled and progress.match < self._log.last_index:
                    if progress.state is _PROBE:
                        progress.probe_sent = False  # resend the same probe, not the whole log
                    else:
                        progress.become_probe()
                    self._send_append(peer)
            if progress.state is _SNAPSHOT:
                continue
            prev_term = self._log.term(progress.match)
            if prev_term is None:
                self._send_append(peer)
                continue
            self._send(AppendEntries(src=self.id, dst=peer, term=self.term, prev_log_index=progress.match,
                                     prev_log_term=prev_term, entries=(), commit=self._log.committed,
                                     read_context=round_))

    def _send_append(self, peer: str) -> None:
        progress = self._progress[peer]
        state = progress.state
        log = self._log
        last = log.snapshot_index + len(log.entries)  # log.last_index; ~12 calls per proposal
        if state is _REPLICATE:
            if progress.next > last:
                return  # nothing new (the common case); heartbeats carry the commit index
        elif state is _SNAPSHOT or progress.probe_sent:
            return
        if len(progress.inflight) >= self.cfg.inflight_messages_max:
            return
        prev = progress.next - 1
        prev_term = log.term(prev)
        if prev_term is None:
            self._start_snapshot(peer, progress)
            return
        hi = min(last + 1, progress.next + self.cfg.entries_per_message_max)
        entries = tuple(log.slice(progress.next, hi, self.cfg.bytes_per_message_max)) if progress.next <= last else ()
        self._msgs.append(AppendEntries(src=self.id, dst=peer, term=self.term, prev_log_index=prev,
                                        prev_log_term=prev_term, entries=entries, commit=log.committed))
        if progress.state is _PROBE:
            progress.probe_sent = True
        elif entries:
            progress.next = entries[-1].index + 1
            progress.inflight.append(entries[-1].index)

    def _handle_append_response(self, m: AppendEntriesResponse) -> None:
        progress = self._progress.get(m.src)
        if self.role is not _LEADER or progress is None:
            return
        progress.recent_active = True
        # A heartbeat reply that only repeats the old match point does not show that appends
        # get through; counting it as an ack would hide a lost AppendEntries forever (§5.3).
        if (not m.success or m.match_index > progress.match
                or m.match_index >= self._log.snapshot_index + len(self._log.entries)):
            progress.acked = True
        if m.read_context:
            self._ack_read(m.src, m.read_context)
        if m.success:
            self._on_append_success(m.src, progress, m.match_index)
        elif m.reject_index >= 0:
            self._on_append_rejected(m.src, progress, m)

    def _on_append_success(self, peer: str, progress: Progress, match_index: int) -> None:
        # A match at or below the commit index cannot raise the quorum index to a new value
        # (it only ever moves up to an index some quorum already held), so skip the count.
        if progress.ack(match_index) and match_index > self._log.committed:
            self._maybe_commit()
            if self.role is not _LEADER:
                return  # it committed its own removal and stepped down (thesis §4.2.2)
        if progress.state is _PROBE and progress.match >= progress.next - 1:
            # Only the probe's own reply (or a later one) ends probing: a heartbeat reply that
            # repeats an older match point would restart replication below what is in flight.
            progress.become_replicate()
        if self._transfer_target == peer and progress.match == self._log.last_index and not self._transfer_sent:
            self._send_timeout_now(peer)
        if progress.state is not _REPLICATE or progress.next <= self._log.snapshot_index + len(self._log.entries):
            self._send_append(peer)  # else nothing new: `_send_append`'s first test, minus the call

    def _on_append_rejected(self, peer: str, progress: Progress, m: AppendEntriesResponse) -> None:
        """Back off `next`, skipping a whole conflicting term when the hints allow (§5.3)."""
        if progress.state is _REPLICATE:
            if m.reject_index <= progress.match:
                return  # stale: we already know the follower matches beyond this point
        elif progress.state is _PROBE:
            if m.reject_index != progress.next - 1:
                return  # stale reply to an earlier probe
        else:
            return
        next_index = m.conflict_index
        if m.conflict_term > 0:
            ours = self._log.last_index_of_term(m.conflict_term)
            if ours > 0:
                next_index = ours + 1
        progress.become_probe()
        progress.next = max(progress.match + 1, min(next_index, m.reject_index))
        self._send_append(peer)

    def _maybe_commit(self) -> None:
        voters = self.config.voters
        log, me, progress = self._log, self.id, self._progress
        last = log.snapshot_index + len(log.entries)
        matches = [last if v == me else (p.match if (p := progress.get(v)) is not None else 0) for v in voters]
        index = quorum_commit_index(matches)
        if index <= self._log.committed:
            return
        # Figure 8: "a leader cannot determine commitment using log entries from older terms".
        if self._log.term(index) != self.term and "commit-old-term" not in self._bugs:
            return
        self._log.commit_to(index)
        self._emit_commit()
        self._replicate_pending = True  # followers learn the new commit index promptly
        self._after_commit()

    def _after_commit(self) -> None:
        if self._reads_waiting and self._log.term(self._log.committed) == self.term:
            waiting, self._reads_waiting = self._reads_waiting, []
            for context in waiting:
                self._start_read(context)
        if self.id not in self.config.voters and self._configs and self._configs[-1][0] <= self._log.committed:
            self._become_follower(self.term, None, reason="removed from configuration")

    def _start_snapshot(self, peer: str, progress: Progress) -> None:
        meta = self._storage.snapshot_meta()
        assert meta is not None, "log compacted but storage has no snapshot"
        progress.state = _SNAPSHOT
        progress.snapshot_meta = meta
        progress.snapshot_offset = 0
        progress.inflight.clear()
        self._emit("snapshot_send", peer=peer, index=meta.index)
        self._send_snapshot_chunk(peer, progress)

    def _send_snapshot_chunk(self, peer: str, progress: Progress) -> None:
        meta = self._storage.snapshot_meta()  # one chunk at a time: the bytes stay in storage
        assert meta is not None and progress.snapshot_meta is not None
        if meta != progress.snapshot_meta:  # a newer snapshot replaced it: start over
            progress.snapshot_meta, progress.snapshot_offset = meta, 0
        offset = progress.snapshot_offset
        chunk, done = self._storage.snapshot_chunk(offset, self.cfg.snapshot_chunk_bytes)
        self._send(InstallSnapshot(src=self.id, dst=peer, term=self.term, meta=meta,
                                   offset=offset, data=chunk, done=done))

    def _handle_snapshot_response(self, m: InstallSnapshotResponse) -> None:
        if self.role is not _LEADER or m.src not in self._progress:
            return
        progress = self._progress[m.src]
        progress.acked = progress.recent_active = True
        if progress.state is not _SNAPSHOT or progress.snapshot_meta is None:
            return
        if m.index != progress.snapshot_meta.index:
            return
        if m.next_offset < 0:
            progress.ack(m.index)
            progress.become_probe()
            self._maybe_commit()
            self._send_append(m.src)
            return
        progress.snapshot_offset = m.next_offset
        self._send_snapshot_chunk(m.src, progress)

    # ---- membership ------------------------------------------------------------------------------
    def _check_can_propose(self) -> None:
        if self.role is not _LEADER:
            raise NotLeader(self.leader)
        if self._transfer_target is not None:
            raise ProposalDropped(f"leadership transfer to {self._transfer_target} in progress")
        if self._log.last_index - self._log.committed >= self.cfg.uncommitted_entries_max:
            raise ProposalDropped("too many uncommitted entries; retry later")

    def _on_config_appended(self, index: int, config: Configuration) -> None:
        self._configs.append((index, config))
        self._emit("config", index=index, voters=sorted(config.voters), learners=sorted(config.learners))
        for peer in sorted(config.members):
            if peer != self.id and peer not in self._progress:
                self._progress[peer] = Progress(self._log.last_index + 1)
        for peer in list(self._progress):
            if peer not in config.members:
                del self._progress[peer]

    # ---- reads -----------------------------------------------------------------------------------
    def _start_read(self, context: int) -> None:
        if self.config.voters == {self.id}:  # its own majority; not so for a leader removing itself
            self._read_states.append(ReadState(context, self._log.committed))
            return
        # Reads that arrive together share one confirmation round, sent with the next Ready.
        self._reads.append(_PendingRead(context, self._log.committed, self._read_round + 1, {self.id}))
        self._read_round_pending = True

    def _ack_read(self, peer: str, round_: int) -> None:
        """A heartbeat reply for round r confirms every read issued at round <= r; reads are
        released in order, so a later read never overtakes an earlier one."""
        voters = self.config.voters
        needed = quorum_size(len(voters))
        acks = self._round_acks.get(round_)
        # A round that already extended the lease has nothing more to give: skip it. Else
        # len(acks) first: most replies cannot make a quorum yet, and `&` builds a set.
        if acks is not None and self._lease_from < self._round_sent[round_]:
            acks.add(peer)
            if len(acks) >= needed and len(acks & voters) >= needed:
                self._lease_from = self._round_sent[round_]
        for read in self._reads:
            if read.round > round_:
                break
            read.acks.add(peer)
        while self._reads and len(self._reads[0].acks & voters) >= needed:
            read = self._reads.pop(0)
            self._read_states.append(ReadState(read.context, read.index))

    def _abandon_reads(self) -> None:
        if self._reads or self._reads_waiting:
            self._emit("reads_dropped", count=len(self._reads) + len(self._reads_waiting))
        self._reads, self._reads_waiting = [], []
        self._read_round_pending = False
        self._round_sent.clear()
        self._round_acks.clear()
        self._lease_from = -math.inf

    # ---- output helpers --------------------------------------------------------------------------
    def _send(self, message: Message) -> None:
        self._msgs.append(message)

    def _emit(self, kind: str, **fields: Any) -> None:
        self._events.append(TraceEvent(kind, fields))

    def _emit_commit(self) -> None:
        # `_emit`'s work without its keyword packing: every node emits this once per commit.
        self._events.append(TraceEvent("commit", {"index": self._log.committed, "term": self.term}))


_STEP_HANDLERS: dict[type, Callable[[RaftNode, Any], None]] = {
    RequestVote: RaftNode._handle_vote_request,
    RequestVoteResponse: RaftNode._handle_vote_response,
    AppendEntries: RaftNode._handle_append,
    AppendEntriesResponse: RaftNode._handle_append_response,
    InstallSnapshot: RaftNode._handle_snapshot_chunk,
    InstallSnapshotResponse: RaftNode._handle_snapshot_response,
    TimeoutNow: RaftNode._handle_timeout_now,
}


def _apply_change(config: Configuration, change: ConfChange) -> Configuration:
    voters, learners = set(config.voters), set(config.learners)
    node = change.node
    if change.action == "add_learner":
        if node in voters or node in learners:
            raise ProposalDropped(f"{node} is already a member")
        learners.add(node)
    elif change.action == "add_voter":
        if node in voters:
            raise ProposalDropped(f"{node} is already a voter")
        learners.discard(node)
        voters.add(node)
    elif change.action == "promote":
        if node not in learners:
            raise ProposalDropped(f"{node} is not a learner")
        learners.discard(node)
        voters.add(node)
    elif change.action == "remove":
        if node not in voters and node not in learners:
            raise ProposalDropped(f"{node} is not a member")
        voters.discard(node)
        learners.discard(node)
        if not voters:
            raise ProposalDropped("cannot remove the last voter")
    else:
        raise ProposalDropped(f"unknown configuration change {change.action!r}")
    return Configuration(voters=frozenset(voters), learners=frozenset(learners))
