"""`RaftRuntime` on trio, three nodes in one process over an in-memory network, on a MockClock.

These pin the runtime's promises (raft/trio_driver.py Rules 1-5) without sockets or disks:
a proposal is answered with its result once applied, a read waits for the commit point of its
arrival, and a deposed leader fails what it can no longer answer instead of hanging.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
import trio
import trio.testing

from raft.config import RaftConfig
from raft.errors import NotLeader, ProposalDropped
from raft.messages import Message, RequestVote
from raft.progress import Role
from raft.storage import MemoryStorage
from raft.trio_driver import ProposalTimeout, RaftRuntime, RuntimeOptions
from sim.statemachine import KVStateMachine

IDS = ("n1", "n2", "n3")


class Network:
    """Delivers at once, unless a node is cut off."""

    def __init__(self) -> None:
        self.runtimes: dict[str, RaftRuntime] = {}
        self.cut: set[str] = set()

    def send(self, message: Message) -> None:
        if message.src in self.cut or message.dst in self.cut:
            return
        target = self.runtimes.get(message.dst)
        if target is not None:
            target.deliver(message)


async def start(nursery: trio.Nursery, network: Network, seed: int = 1, *,
                storage: Callable[[], MemoryStorage] = MemoryStorage,
                machine: Callable[[], KVStateMachine] = KVStateMachine,
                options: RuntimeOptions = RuntimeOptions(), **config: Any) -> dict[str, RaftRuntime]:
    """Three runtimes on `network`, each with a fresh `storage()` and `machine()`; `config`
    adds RaftConfig fields."""
    for index, node_id in enumerate(IDS):
        node_config = RaftConfig(node_id=node_id, peers=frozenset(IDS), **config)
        runtime = RaftRuntime(node_config, storage(), machine(), send=network.send,
                              rng=random.Random(seed + index), options=options)
        network.runtimes[node_id] = runtime
        await nursery.start(runtime.run)
    return network.runtimes


async def wait_leader(runtimes: dict[str, RaftRuntime], exclude: str | None = None) -> RaftRuntime:
    with trio.fail_after(10):
        while True:
            for node_id, runtime in runtimes.items():
                if node_id != exclude and runtime.node.role is Role.LEADER:
                    return runtime
            await trio.sleep(0.01)


def write(key: int, value: int) -> bytes:
    packed: bytes = msgpack.packb([0, "write", key, value])
    return packed


def test_a_proposal_returns_the_state_machines_result_once_applied() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            runtimes = await start(nursery, Network())
            leader = await wait_leader(runtimes)
            result = await leader.propose(write(1, 42), timeout_s=5)
            assert result is True
            index = await leader.read_index(timeout_s=5)
            assert index >= 2
            machine = leader.machine
            assert isinstance(machine, KVStateMachine) and machine.read(1) == 42
            follower = next(r for r in runtimes.values() if r is not leader)
            with pytest.raises(NotLeader):
                await follower.propose(write(1, 1), timeout_s=5)
            assert await follower.wait_applied(index, timeout_s=5)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_concurrent_proposals_are_all_answered() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            runtimes = await start(nursery, Network())
            leader = await wait_leader(runtimes)
            answers: list[object] = []

            async def one(value: int) -> None:
                answers.append(await leader.propose(write(value % 3, value), timeout_s=5))

            async with trio.open_nursery() as clients:
                for value in range(50):
                    clients.start_soon(one, value)
            assert answers == [True] * 50
            assert leader.stats.proposals_committed == 50
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_cut_off_leader_times_out_or_drops_and_a_new_leader_takes_writes() -> None:
    async def main() -> None:
        network = Network()
        async with trio.open_nursery() as nursery:
            runtimes = await start(nursery, network)
            old = await wait_leader(runtimes)
            network.cut.add(old.config.node_id)
            with pytest.raises((ProposalTimeout, ProposalDropped, NotLeader)):
                await old.propose(write(1, 7), timeout_s=2)
            new = await wait_leader(runtimes, exclude=old.config.node_id)
            assert await new.propose(write(1, 8), timeout_s=5) is True
            with trio.fail_after(5):
                while old.node.role is Role.LEADER:  # check-quorum deposes it
                    await trio.sleep(0.05)
            with pytest.raises(NotLeader):
                await old.read_index(timeout_s=1)
            network.cut.clear()
            assert await old.wait_applied(new.node.commit_index, timeout_s=5)
            old_machine = old.machine
            assert isinstance(old_machine, KVStateMachine) and old_machine.read(1) == 8
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_the_inbox_is_bounded() -> None:
    async def main() -> None:
        network = Network()
        async with trio.open_nursery() as nursery:
            runtimes = await start(nursery, network)
            leader = await wait_leader(runtimes)
            follower = next(r for r in runtimes.values() if r is not leader)
            capacity = follower.options.inbox_capacity
            stale = RequestVote(src=leader.config.node_id, dst=follower.config.node_id, term=0,
                                last_log_index=0, last_log_term=0)
            for _ in range(capacity + 10):
                follower.deliver(stale)
            assert follower.stats.inbox_dropped >= 10
            assert leader.node.role is Role.LEADER
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


class SaveSizes(MemoryStorage):
    """MemoryStorage that remembers how many entries each save carried."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def save(self, hard_state, entries, snapshot) -> None:  # type: ignore[no-untyped-def]
        if entries:
            self.sizes.append(len(entries))
        super().save(hard_state, entries, snapshot)


@pytest.mark.parametrize("style", ["task", "callback"])
def test_w_outstanding_proposals_share_one_save(style: str) -> None:
    """Group commit (Rule 1): W proposers that each propose again once answered keep W
    entries per save, whether they wait in tasks (`propose`) or in callbacks (`propose_soon`,
    whose next proposal is queued inside the apply, without the scheduler passes tasks need)."""
    width, rounds = 16, 12

    async def main() -> None:
        network = Network()
        async with trio.open_nursery() as nursery:
            await start(nursery, network, 7, storage=SaveSizes)
            leader = await wait_leader(network.runtimes)
            assert isinstance(leader.storage, SaveSizes)
            sizes = leader.storage.sizes
            before = len(sizes)
            finished = trio.Event()
            left = [width * rounds]

            def answered(result: object, error: BaseException | None) -> None:
                assert error is None and result is True
                left[0] -= 1
                if left[0] == 0:
                    finished.set()
                elif left[0] >= width:
                    leader.propose_soon(write(1, left[0]), answered, timeout_s=5)

            async def proposer(first: int) -> None:
                for value in range(rounds):
                    await leader.propose(write(first, value), timeout_s=5)
                left[0] -= rounds
                if left[0] == 0:
                    finished.set()

            for slot in range(width):
                if style == "task":
                    nursery.start_soon(proposer, slot)
                else:
                    leader.propose_soon(write(1, slot), answered, timeout_s=5)
            with trio.fail_after(30):
                await finished.wait()
            carried = sorted(sizes[before:])
            assert sum(carried) >= width * rounds
            assert carried[len(carried) // 2] >= width * 3 // 4, carried
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_the_nodes_compact_at_staggered_points() -> None:
    """Each node draws its own gap in [snapshot_entries, 1.25 x snapshot_entries] before each
    compaction, so the nodes' compaction pauses do not all fall on the same round."""
    async def main() -> None:
        network = Network()
        async with trio.open_nursery() as nursery:
            await start(nursery, network, 3, options=RuntimeOptions(snapshot_entries=40))
            leader = await wait_leader(network.runtimes)
            for value in range(130):
                await leader.propose(write(value % 5, value), timeout_s=5)
            with trio.fail_after(10):
                while any(r.node.applied_index < leader.node.commit_index for r in network.runtimes.values()):
                    await trio.sleep(0.01)
            snapshots = {r.node.snapshot_index for r in network.runtimes.values()}
            assert all(r.stats.snapshots_taken >= 2 for r in network.runtimes.values())
            assert len(snapshots) > 1, f"every node compacted at {snapshots}"
            for runtime in network.runtimes.values():
                assert 40 <= runtime._compact_after <= 50
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_queued_proposals_beyond_the_uncommitted_limit_are_refused_and_the_rest_commit() -> None:
    """The owner appends a queued group in one `propose_many`: the first proposals up to the
    uncommitted-entry limit are appended and answered; the others get ProposalDropped (safe to
    retry), as they did when each was appended alone."""
    async def main() -> None:
        network = Network()
        async with trio.open_nursery() as nursery:
            await start(nursery, network, 11, uncommitted_entries_max=5)
            leader = await wait_leader(network.runtimes)
            await leader.propose(write(0, 0), timeout_s=5)  # nothing uncommitted from here
            answers: list[object] = []
            finished = trio.Event()

            def answered(result: object, error: BaseException | None) -> None:
                answers.append(type(error).__name__ if error is not None else result)
                if len(answers) == 8:
                    finished.set()

            for value in range(8):
                leader.propose_soon(write(1, value), answered, timeout_s=5)
            with trio.fail_after(10):
                await finished.wait()
            assert sorted(map(str, answers)) == ["ProposalDropped"] * 3 + ["True"] * 5
            machine = leader.machine
            assert isinstance(machine, KVStateMachine) and machine.read(1) == 4
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


class SlowSnapshots(KVStateMachine):
    """A state machine whose snapshot takes `pause_s` of (mock) time, as 100k jobs' do."""

    def __init__(self, clock: trio.testing.MockClock, pause_s: float) -> None:
        super().__init__()
        self.clock, self.pause_s = clock, pause_s

    def snapshot(self) -> bytes:
        self.clock.jump(self.pause_s)
        return super().snapshot()


def test_a_leader_whose_compactions_are_slow_hands_over_leadership_before_compacting() -> None:
    """A compaction pauses its node's loop. Once a node has measured a pause longer than half
    the minimum election timeout, it does not compact while it leads: it hands leadership to
    its most caught-up follower first (a transfer, not an election) and compacts as a
    follower. Only each node's first, unmeasured compaction may happen while leading."""
    clock = trio.testing.MockClock(autojump_threshold=0)

    async def main() -> None:
        network = Network()
        compacted_as: list[tuple[str, Role]] = []
        async with trio.open_nursery() as nursery:
            await start(nursery, network, 5, machine=lambda: SlowSnapshots(clock, 0.1),
                        options=RuntimeOptions(snapshot_entries=30))
            for node_id, runtime in network.runtimes.items():  # nothing to compact yet
                storage = runtime.storage
                assert isinstance(storage, MemoryStorage)

                def compact(snapshot: object, storage: MemoryStorage = storage, runtime: RaftRuntime = runtime,
                            node_id: str = node_id) -> None:
                    compacted_as.append((node_id, runtime.node.role))
                    MemoryStorage.compact(storage, snapshot)  # type: ignore[arg-type]

                storage.compact = compact  # type: ignore[method-assign]
            written = 0
            with trio.fail_after(120):
                while written < 400:
                    leader = await wait_leader(network.runtimes)
                    try:
                        await leader.propose(write(written % 7, written), timeout_s=5)
                        written += 1
                    except (NotLeader, ProposalDropped, ProposalTimeout):
                        await trio.sleep(0.01)
            as_leader = [node for node, role in compacted_as if role is Role.LEADER]
            assert len(compacted_as) >= 9, compacted_as
            assert len(as_leader) == len(set(as_leader)), compacted_as  # each node's first at most
            leader_changes = sum(r.stats.leader_changes for r in network.runtimes.values())
            assert leader_changes >= 2, compacted_as
            nursery.cancel_scope.cancel()

    trio.run(main, clock=clock)
