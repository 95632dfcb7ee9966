"""`RaftRuntime.connection_lost`: the transport's "the leader's connection closed" reaches the
core, and the survivors elect a new leader within their turns instead of an election timeout.
Three runtimes in one process on a MockClock, as in test_runtime.py."""

from __future__ import annotations

import random
from collections.abc import Callable

import trio
import trio.testing

from raft.config import RaftConfig
from raft.messages import Message
from raft.progress import Role
from raft.storage import MemoryStorage
from raft.trio_driver import RaftRuntime
from sim.statemachine import KVStateMachine

IDS = ("n1", "n2", "n3")
MIN_S = 0.150


class Network:
    """Delivers at once, except to or from a crashed node."""

    def __init__(self) -> None:
        self.runtimes: dict[str, RaftRuntime] = {}
        self.crashed: set[str] = set()
        self.hold: tuple[str, Callable[[Message], None]] | None = None  # (src, takes its messages)

    def send(self, message: Message) -> None:
        if self.hold is not None and message.src == self.hold[0]:
            self.hold[1](message)
        elif message.src not in self.crashed and message.dst not in self.crashed:
            self.runtimes[message.dst].deliver(message)


async def start(nursery: trio.Nursery, network: Network) -> dict[str, RaftRuntime]:
    for index, node_id in enumerate(IDS):
        config = RaftConfig(node_id=node_id, peers=frozenset(IDS), lease_reads=False)
        runtime = RaftRuntime(config, MemoryStorage(), KVStateMachine(), send=network.send,
                              rng=random.Random(7 + index))
        network.runtimes[node_id] = runtime
        await nursery.start(runtime.run)
    return network.runtimes


async def leader_among(runtimes: list[RaftRuntime]) -> RaftRuntime:
    """Return the first of `runtimes` to lead, waking on role changes only."""
    with trio.fail_after(10):
        while True:
            for runtime in runtimes:
                if runtime.node.role is Role.LEADER:
                    return runtime
            async with trio.open_nursery() as waiters:
                for runtime in runtimes:
                    async def wake(r: RaftRuntime = runtime) -> None:
                        await r.wait_role_change()
                        waiters.cancel_scope.cancel()
                    waiters.start_soon(wake)


def failover_s(*, report_close: bool, heartbeat_queued: bool = False) -> float:
    elapsed: list[float] = []

    async def main() -> None:
        network = Network()
        async with trio.open_nursery() as nursery:
            runtimes = await start(nursery, network)
            old = await leader_among(list(runtimes.values()))
            await trio.sleep(0.5)  # settled: heartbeats flowing
            dead = old.config.node_id
            survivors = [r for node_id, r in runtimes.items() if node_id != dead]
            if heartbeat_queued:  # the dead leader's last heartbeat still waits in the inboxes
                last: list[Message] = []
                caught = trio.Event()

                def hold(message: Message) -> None:
                    last.append(message)
                    if len(last) == 2:
                        caught.set()

                network.hold = (dead, hold)
                with trio.fail_after(1):
                    await caught.wait()  # the leader's next heartbeat round, one per follower
                network.hold = None
                for message in last:
                    network.runtimes[message.dst].deliver(message)
            network.crashed.add(dead)
            crashed_at = trio.current_time()
            if report_close:
                for runtime in survivors:
                    runtime.connection_lost(dead)
            new = await leader_among(survivors)
            elapsed.append(trio.current_time() - crashed_at)
            assert new.node.term == old.node.term + 1
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return elapsed[0]


def test_a_reported_close_elects_within_the_first_turn() -> None:
    assert failover_s(report_close=True) <= 0.015 + 1e-6  # U(0, J/2), J = 30 ms; delivery is instant


def test_a_heartbeat_still_queued_is_stepped_before_the_close() -> None:
    """Else it would reset the timer the close just moved, and the timer would decide."""
    assert failover_s(report_close=True, heartbeat_queued=True) <= 0.015 + 1e-6


def test_without_the_report_the_timer_decides() -> None:
    """At least the minimum election timeout after the last heartbeat, sent <= 50 ms before."""
    assert failover_s(report_close=False) >= MIN_S - 0.050
