"""CPU per committed entry of the trio runtime, without disks or sockets.

    python -m papers.perf.raft_cpu [--outstanding 64] [--seconds 3] [--repeats 3] [--callbacks]

Three `RaftRuntime`s in one process on `MemoryStorage`, messages handed straight to the
destination's inbox, W proposers in the leader keeping one proposal each in flight (the load of
`raftcron bench raft`). With no fsync and no network, ops/s is the inverse of the Python work
all three nodes and the load do per entry (`--callbacks`: proposals through `propose_soon`,
as `raftcron bench raft` issues them, instead of a task each): what the runtime's write path costs, steadier than
the loopback bench on a shared machine (it still moves with other jobs: compare two trees
alternating, `PYTHONPATH=TREE`, in one session). Prints one line per repeat and the median.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

import trio

from papers.perf.loopback_nodes import PAYLOAD, _Counter
from raft.config import RaftConfig
from raft.messages import Message
from raft.progress import Role
from raft.storage import MemoryStorage
from raft.trio_driver import RaftRuntime

IDS = ("n1", "n2", "n3")


async def one_run(outstanding: int, seconds: float, seed: int, callbacks: bool = False) -> float:
    """ops/s of one fresh cluster over `seconds` after its leader is elected."""
    runtimes: dict[str, RaftRuntime] = {}

    def send(message: Message) -> None:
        target = runtimes.get(message.dst)
        if target is not None:
            target.deliver(message)

    async with trio.open_nursery() as nursery:
        for index, node_id in enumerate(IDS):
            runtime = RaftRuntime(RaftConfig(node_id=node_id, peers=frozenset(IDS)), MemoryStorage(),
                                  _Counter(), send=send, rng=random.Random(seed + index))
            runtimes[node_id] = runtime
            await nursery.start(runtime.run)
        with trio.fail_after(10):
            while not any(r.node.role is Role.LEADER for r in runtimes.values()):
                await trio.sleep(0.01)
        leader = next(r for r in runtimes.values() if r.node.role is Role.LEADER)
        done = [0]
        stop_at = time.perf_counter() + seconds

        async def proposer() -> None:
            while time.perf_counter() < stop_at:
                await leader.propose(PAYLOAD, timeout_s=10.0)
                done[0] += 1

        started = time.perf_counter()
        if callbacks:
            finished = trio.Event()
            in_flight = [outstanding]
            failed: list[BaseException] = []

            def answered(result: object, error: BaseException | None) -> None:
                if error is not None:  # raising here would only be logged by the runtime
                    failed.append(error)
                    finished.set()
                    return
                done[0] += 1
                if time.perf_counter() < stop_at:
                    leader.propose_soon(PAYLOAD, answered, timeout_s=10.0)
                    return
                in_flight[0] -= 1
                if in_flight[0] == 0:
                    finished.set()

            for _ in range(outstanding):
                leader.propose_soon(PAYLOAD, answered, timeout_s=10.0)
            await finished.wait()
            if failed:
                raise failed[0]
        else:
            async with trio.open_nursery() as load:
                for _ in range(outstanding):
                    load.start_soon(proposer)
        elapsed = time.perf_counter() - started
        nursery.cancel_scope.cancel()
    return done[0] / elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--outstanding", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--callbacks", action="store_true",
                        help="propose through RaftRuntime.propose_soon (the raft bench's way)")
    args = parser.parse_args(argv)
    rates = []
    for repeat in range(args.repeats):
        rate = trio.run(one_run, args.outstanding, args.seconds, repeat, args.callbacks)
        rates.append(rate)
        print(f"repeat {repeat + 1}: {rate:,.0f} ops/s", flush=True)
    print(f"median {statistics.median(rates):,.0f} ops/s at {args.outstanding} outstanding "
          f"(3 runtimes in one process, memory storage)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
