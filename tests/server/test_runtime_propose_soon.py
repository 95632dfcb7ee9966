"""`RaftRuntime.propose_soon`, the callback form of `propose` (raft/trio_driver.py): answers
come to `done(result, error)` in the owner task, in log order, once applied; the errors are
`propose`'s (NotLeader and ProposalDropped at once, ProposalTimeout at the deadline); a callback
may propose again, and one that raises does not stop the node.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import trio
import trio.testing

from raft.errors import NotLeader, ProposalDropped
from raft.progress import Role
from raft.trio_driver import ProposalTimeout
from tests.server.test_runtime import Network, start, wait_leader, write


def test_callbacks_chain_proposals_and_see_them_applied_in_order() -> None:
    answers: list[tuple[int, Any, BaseException | None]] = []

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            runtimes = await start(nursery, Network())
            leader = await wait_leader(runtimes)
            finished = trio.Event()
            chains, per_chain = 8, 25

            def issue(chain: int, value: int) -> None:
                def done(result: Any, error: BaseException | None) -> None:
                    answers.append((chain, result, error))
                    if value + 1 < per_chain:
                        issue(chain, value + 1)  # a callback may propose again
                    elif len(answers) == chains * per_chain:
                        finished.set()

                leader.propose_soon(write(chain, value), done, timeout_s=5)

            for chain in range(chains):
                issue(chain, 0)
            with trio.fail_after(30):
                await finished.wait()
            assert all(error is None and result is True for _, result, error in answers)
            assert leader.stats.proposals_committed >= chains * per_chain
            applied = [runtime.stats.entries_applied for runtime in runtimes.values()]
            assert max(applied) >= chains * per_chain
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_errors_come_through_the_callback_and_a_raising_callback_does_not_stop_the_node() -> None:
    errors: list[BaseException | None] = []

    async def main() -> None:
        network = Network()
        async with trio.open_nursery() as nursery:
            runtimes = await start(nursery, network)
            leader = await wait_leader(runtimes)
            follower = next(r for r in runtimes.values() if r is not leader)
            follower.propose_soon(write(1, 1), lambda _r, e: errors.append(e), timeout_s=1)
            assert isinstance(errors[-1], NotLeader)  # at once, nothing appended

            def broken(_result: Any, _error: BaseException | None) -> None:
                raise RuntimeError("a caller's bug")

            leader.propose_soon(write(1, 2), broken, timeout_s=5)
            assert await leader.propose(write(1, 3), timeout_s=5) is True  # still serving
            leader.options = dataclasses.replace(leader.options, proposals_pending_max=0)
            leader.propose_soon(write(1, 4), lambda _r, e: errors.append(e), timeout_s=1)
            assert isinstance(errors[-1], ProposalDropped)
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))


def test_a_proposal_without_a_quorum_times_out_through_the_callback_at_its_deadline() -> None:
    ended: list[tuple[float, BaseException | None]] = []

    async def main() -> None:
        network = Network()
        async with trio.open_nursery() as nursery:
            runtimes = await start(nursery, network)
            leader = await wait_leader(runtimes)
            assert await leader.propose(write(1, 1), timeout_s=5) is True
            network.cut.update(node for node in runtimes if node != leader.config.node_id)
            started = trio.current_time()
            answered = trio.Event()

            def done(_result: Any, error: BaseException | None) -> None:
                ended.append((trio.current_time() - started, error))
                answered.set()

            leader.propose_soon(write(2, 2), done, timeout_s=0.1)
            with trio.fail_after(5):
                await answered.wait()
            assert leader.node.role is Role.LEADER
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    (took, error), = ended
    assert isinstance(error, ProposalTimeout)
    assert 0.1 - 1e-9 <= took <= 0.11
