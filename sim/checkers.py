"""Raft safety, checked after every simulated step (DESIGN.md guarantee 1, Raft paper Fig. 3).

`SafetyObserver` observes, never steers (TigerBeetle's state checker): the simulator calls
`on_ready` after each node processed a Ready, and the observer looks at what the node persisted,
applied and became. Each property is checked incrementally, in O(1) per entry:

- Election Safety: at most one leader per term.
- Leader Append-Only: a leader never overwrites or deletes entries it persisted in its term.
- Log Matching: if two logs hold an entry with the same index and term, the logs are identical
  up to it. Checked as: every (index, term) ever persisted names one entry (kind and data) and
  one predecessor term; by induction that fixes the whole prefix.
- Leader Completeness: a new leader's log holds every entry committed in an earlier term (Fig. 3
  binds "leaders for all higher-numbered terms" only: a leader of an older term can still be
  elected after a newer term committed something, e.g. a paused candidate that resumes with its
  votes queued, and it cannot commit anything). The commit term of an index is the term of the
  first node seen to commit it, which is the leader that did.
- State Machine Safety: no two nodes apply different entries at one index.
- Commit monotonic: a node's commit index never goes backwards within one lifetime.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from raft.messages import Entry, EntryKind
from raft.node import RaftNode
from raft.progress import Role
from raft.ready import Ready

_LEADER: Final = Role.LEADER  # bound once (see raft/node.py)
_NORMAL: Final = EntryKind.NORMAL


@dataclass(slots=True)
class Violation:
    kind: str
    detail: str
    node: str
    step: int
    true_ms: float

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "detail": self.detail, "node": self.node, "step": self.step,
                "true_ms": round(self.true_ms, 3)}


@dataclass(slots=True)
class SafetyObserver:
    violations: list[Violation] = field(default_factory=list)
    leaders_by_term: dict[int, str] = field(default_factory=dict)
    entry_ids: dict[tuple[int, int], tuple[EntryKind, bytes, int | None]] = field(default_factory=dict)
    committed: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # index -> (term, data)
    max_committed: int = 0
    leader_persisted: dict[tuple[str, int], int] = field(default_factory=dict)
    commit_seen: dict[tuple[str, int], int] = field(default_factory=dict)
    max_violations: int = 100
    normal_committed: int = 0  # distinct client commands applied somewhere (not no-ops or configs)
    commit_terms: dict[int, int] = field(default_factory=dict)  # index -> term it was committed in
    commit_frontier: int = 0  # highest index with a known commit term

    def on_ready(self, node_id: str, lifetime: int, node: RaftNode, ready: Ready, step: int, true_ms: float) -> None:
        # Runs after every Ready of every node: each check is skipped when its input is empty.
        ctx = (node_id, step, true_ms)
        commit = node.commit_index
        if commit > self.commit_frontier:
            # The first node to commit an index is its leader, in the term that committed it;
            # every later sighting is at that term or a higher one, so the first one is kept.
            for index in range(self.commit_frontier + 1, commit + 1):
                self.commit_terms[index] = node.term
            self.commit_frontier = commit
        if ready.snapshot is not None:
            self._on_snapshot(node, ready)
        if ready.entries:
            self._check_entries(node, ready.entries, ctx)
        if ready.committed_entries:
            committed = self.committed
            for entry in ready.committed_entries:
                seen = committed.get(entry.index)  # `_check_apply`'s common case, minus a call
                if seen is None or seen != (entry.term, entry.data):
                    self._check_apply(entry, ctx)
        for event in ready.events:
            if event.kind == "role" and event.fields["role"] == "leader":
                self._check_new_leader(node, event.fields["term"], ctx)
        # Commit monotonic, within one lifetime of the node.
        key = (node_id, lifetime)
        before = self.commit_seen.get(key, 0)
        if commit != before:
            if commit < before:
                self._flag("commit_monotonic", f"commit index went back from {before} to {commit}", ctx)
            self.commit_seen[key] = commit

    def _flag(self, kind: str, detail: str, ctx: tuple[str, int, float]) -> None:
        if len(self.violations) < self.max_violations:
            self.violations.append(Violation(kind, detail, ctx[0], ctx[1], ctx[2]))

    def _check_new_leader(self, node: RaftNode, term: int, ctx: tuple[str, int, float]) -> None:
        holder = self.leaders_by_term.get(term)
        if holder is not None and holder != ctx[0]:
            self._flag("election_safety", f"two leaders in term {term}: {holder} and {ctx[0]}", ctx)
        self.leaders_by_term[term] = ctx[0]
        start = max(node.snapshot_index + 1, 1)
        for index in range(start, self.max_committed + 1):
            committed_term = self.committed[index][0] if index in self.committed else None
            if committed_term is None or self.commit_terms.get(index, term) >= term:
                continue  # committed in this term or a later one: not this leader's to hold
            if node.log_term(index) != committed_term:
                self._flag("leader_completeness",
                           f"leader of term {term} lacks entry {index} (term {committed_term}) committed in "
                           f"term {self.commit_terms[index]}, has term {node.log_term(index)}", ctx)
                return

    def _check_entries(self, node: RaftNode, entries: list[Entry], ctx: tuple[str, int, float]) -> None:
        if node.role is _LEADER:
            key = (ctx[0], node.term)
            persisted = self.leader_persisted.get(key, 0)
            if entries[0].index <= persisted:
                self._flag("leader_append_only",
                           f"leader rewrote index {entries[0].index} (had persisted up to {persisted})", ctx)
            self.leader_persisted[key] = entries[-1].index
        log_term, entry_ids = node.log_term, self.entry_ids
        for entry in entries:
            prev_term = log_term(entry.index - 1) if entry.index > 1 else 0
            identity = (entry.kind, entry.data, prev_term)
            known = entry_ids.setdefault((entry.index, entry.term), identity)
            if known is identity:
                continue
            if known[0] != entry.kind or known[1] != entry.data:
                self._flag("log_matching", f"two different entries at index {entry.index} term {entry.term}", ctx)
            elif known[2] is not None and prev_term is not None and known[2] != prev_term:
                self._flag("log_matching",
                           f"entry {entry.index}/{entry.term} follows term {prev_term} here, {known[2]} elsewhere", ctx)

    def _check_apply(self, entry: Entry, ctx: tuple[str, int, float]) -> None:
        seen = self.committed.get(entry.index)
        if seen is None:
            self.committed[entry.index] = (entry.term, entry.data)
            self.max_committed = max(self.max_committed, entry.index)
            if entry.kind is _NORMAL:
                self.normal_committed += 1
        elif seen != (entry.term, entry.data):
            self._flag("state_machine_safety",
                       f"index {entry.index} applied as term {entry.term} here, term {seen[0]} elsewhere", ctx)

    def _on_snapshot(self, node: RaftNode, ready: Ready) -> None:
        assert ready.snapshot is not None
        meta = ready.snapshot.meta
        self.max_committed = max(self.max_committed, meta.index)
