"""Proposal and read timeouts in `RaftRuntime`: the owner task fails overdue waiters
(raft/trio_driver.py `_wait`, `_expire_waiters`) instead of a trio deadline per proposal, so
these pin that a timeout still comes on time, for each waiter, and only for the overdue ones.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from raft.progress import Role
from raft.trio_driver import ProposalTimeout
from tests.server.test_runtime import Network, start, wait_leader, write


def test_proposals_without_a_quorum_time_out_each_at_its_own_deadline() -> None:
    ended: dict[float, float] = {}

    async def main() -> None:
        network = Network()
        async with trio.open_nursery() as nursery:
            runtimes = await start(nursery, network)
            leader = await wait_leader(runtimes)
            assert await leader.propose(write(1, 1), timeout_s=5) is True
            others = [node for node in runtimes if node != leader.config.node_id]
            network.cut.update(others)  # the leader stays leader (check-quorum needs time)

            async def propose(timeout_s: float) -> None:
                started = trio.current_time()
                with pytest.raises(ProposalTimeout):
                    await leader.propose(write(2, 2), timeout_s=timeout_s)
                ended[timeout_s] = trio.current_time() - started

            async with trio.open_nursery() as proposals:
                for timeout_s in (0.05, 0.2, 0.1):
                    proposals.start_soon(propose, timeout_s)
            assert leader.node.role is Role.LEADER
            assert leader.stats.proposals_timed_out == 3
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    for timeout_s, took in ended.items():
        assert timeout_s - 1e-9 <= took <= timeout_s + 0.01, ended


def test_a_read_without_a_quorum_times_out_and_answered_proposals_do_not() -> None:
    async def main() -> None:
        network = Network()
        async with trio.open_nursery() as nursery:
            runtimes = await start(nursery, network)
            leader = await wait_leader(runtimes)
            for value in range(20):  # answered long before their 0.05 s deadlines
                assert await leader.propose(write(1, value), timeout_s=0.05) is True
            await trio.sleep(0.2)  # past all those deadlines: nothing left to fail
            assert leader.stats.proposals_timed_out == 0
            network.cut.update(node for node in runtimes if node != leader.config.node_id)
            started = trio.current_time()
            with pytest.raises(ProposalTimeout):
                await leader.read_index(timeout_s=0.1)
            assert 0.1 - 1e-9 <= trio.current_time() - started <= 0.11
            assert leader.stats.reads_failed == 1
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
