"""Group commit in `RaftRuntime` (raft/trio_driver.py Rule 1): with W proposers that each keep
one proposal outstanding, the leader's synced saves carry about W entries each, because the
owner appends queued proposals only after the proposers it just answered have run. The
proposers start in two groups half a save apart, and a save takes a millisecond of the mock
clock, so the followers' acks of one group arrive while the leader saves the other.

Appending each proposal at once (the runtime before) kept two such groups apart for good,
each a save behind the other: a save carried W/2 entries and a proposal waited for two saves
(this test fails there: 60 saves of 8). On loopback the split happens by chance, so the bench
shows it only in some runs (papers/perf/README.md, raft).
"""

from __future__ import annotations

import statistics

import trio
import trio.testing

from raft.messages import Entry, HardState, Snapshot
from raft.storage import MemoryStorage
from tests.server.test_runtime import Network, start, wait_leader, write

PROPOSERS = 16
ROUNDS = 30
SAVE_S = 0.001


def test_a_leaders_saves_carry_one_entry_per_outstanding_proposer() -> None:
    sizes: dict[str, list[int]] = {}
    clock = trio.testing.MockClock(autojump_threshold=0)

    def counting(node_id: str, storage: MemoryStorage) -> None:
        """Count the entries of each save, which takes a millisecond, as an fsync would
        (the clock jumps while the saving node blocks its loop)."""
        save = storage.save

        def counted(hard_state: HardState | None, entries: list[Entry], snapshot: Snapshot | None) -> None:
            if entries:
                sizes.setdefault(node_id, []).append(len(entries))
            clock.jump(SAVE_S)
            save(hard_state, entries, snapshot)

        storage.save = counted  # type: ignore[method-assign]

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            runtimes = await start(nursery, Network())
            leader = await wait_leader(runtimes)
            with trio.fail_after(30):
                await leader.propose(write(0, 0), timeout_s=5)
            for node_id, runtime in runtimes.items():
                assert isinstance(runtime.storage, MemoryStorage)
                counting(node_id, runtime.storage)

            async def proposer(key: int) -> None:
                for value in range(ROUNDS):
                    await leader.propose(write(key, value), timeout_s=5)

            with trio.fail_after(60):
                async with trio.open_nursery() as load:
                    for key in range(PROPOSERS):  # in two groups, half a save apart
                        if key == PROPOSERS // 2:
                            await trio.sleep(SAVE_S / 2)
                        load.start_soon(proposer, key)
            nursery.cancel_scope.cancel()
        leader_sizes = sizes[leader.config.node_id]
        assert sum(leader_sizes) == PROPOSERS * ROUNDS
        # The two groups merge within a few rounds; from then on a save holds one entry per
        # proposer (appending at once kept them apart: 2 x ROUNDS saves of PROPOSERS / 2).
        assert statistics.median(leader_sizes) == PROPOSERS, leader_sizes
        assert len(leader_sizes) < 1.5 * ROUNDS, leader_sizes

    trio.run(main, clock=clock)
