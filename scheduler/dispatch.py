"""Which nodes run a firing's slots: tags and counts, liveness, tokens (Dianemo), and spread.

The leader's choice is a proposal, not a fact: the state machine re-checks every assignment
(`attempts.eligible`) and queues a slot whose node turned out unfit. So this module may use
the leader's volatile knowledge (which nodes it heard from lately) without risk to safety.

Rules, in the words of the job model (docs/schedules.md):
- `role: web:2`: two slots, on two distinct nodes that carry `role=web`;
- tags without a count: one slot per matching live node (Dkron's "every matching node");
- no tags: one slot on one eligible node (not Dkron's "every node", the cause of #1182);
- a node has tokens; a job's execution takes `weight` of them; priority-2 jobs leave a
  node's reserved tokens to priority-1 jobs; a slot with no node to take it is queued, and
  idle nodes claim queued attempts (work stealing, first committed claim wins);
- among fit nodes the one with most free tokens wins; ties rotate, so load spreads.
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from scheduler.attempts import eligible
from scheduler.commands import ExecKey
from scheduler.job import JobSpec, TagSelector
from scheduler.state import NodeRecord, SchedulerState

__all__ = ["Dispatcher"]


class Dispatcher:
    """Places slots for one planner round at a time (`begin_round` resets its caches)."""

    def __init__(self, state: SchedulerState, alive: Callable[[str], bool], *,
                 pull_only: bool = False) -> None:
        self.state = state
        self.alive = alive
        self.pull_only = pull_only
        self._pending: dict[str, int] = {}
        self._matching: dict[TagSelector, list[NodeRecord]] = {}
        self._turn = 0

    def begin_round(self) -> None:
        """Forget last round's caches: node liveness and tokens may have changed since."""
        self._pending.clear()
        self._matching.clear()

    def candidates(self, tags: TagSelector) -> list[NodeRecord]:
        """Live, up nodes that carry the tags (cached for the round)."""
        found = self._matching.get(tags)
        if found is None:
            found = [node for node in self.state.nodes.values()
                     if node.state == "up" and tags.matches(node.tags) and self.alive(node.name)]
            self._matching[tags] = found
        return found

    def place(self, spec: JobSpec) -> tuple[str | None, ...]:
        """Nodes for the slots of a new firing of `spec` (None: queue the slot)."""
        nodes = self.candidates(spec.tags)
        count = spec.tags.count
        if count is None:
            if self.pull_only:
                return (None,) * len(nodes)
            return tuple(node.name if self._take(node, spec) else None for node in nodes)
        if self.pull_only:
            return (None,) * count
        if count == 1:
            best = self._best(nodes, spec, ())
            return (best,)
        chosen: list[str | None] = []
        for _ in range(count):
            chosen.append(self._best(nodes, spec, chosen))
        return tuple(chosen)

    def place_retry(self, spec: JobSpec, key: ExecKey, tried: Collection[str]) -> str | None:
        """A node for the next attempt of an execution: fit for the firing (not holding
        another of its slots), preferring nodes that have not tried it yet."""
        if self.pull_only:
            return None
        fit = [node for node in self.candidates(spec.tags)
               if eligible(self.state, node.name, spec, key.job, key.tick)]
        fresh = [node for node in fit if node.name not in tried]
        return self._best(fresh or fit, spec, ())

    def _best(self, nodes: list[NodeRecord], spec: JobSpec,
              exclude: Collection[str | None]) -> str | None:
        """The node with the most free tokens that can take the slot; ties rotate."""
        size = len(nodes)
        if size == 0:
            return None
        self._turn += 1
        start = self._turn % size
        best: NodeRecord | None = None
        best_free = spec.weight - 1
        pending = self._pending
        for offset in range(size):
            node = nodes[(start + offset) % size]
            free = node.capacity(spec.priority) - pending.get(node.name, 0)
            if free > best_free and node.name not in exclude:
                best, best_free = node, free
        if best is None:
            return None
        pending[best.name] = pending.get(best.name, 0) + spec.weight
        return best.name

    def _take(self, node: NodeRecord, spec: JobSpec) -> bool:
        free = node.capacity(spec.priority) - self._pending.get(node.name, 0)
        if free < spec.weight:
            return False
        self._pending[node.name] = self._pending.get(node.name, 0) + spec.weight
        return True
