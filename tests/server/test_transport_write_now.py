"""`Transport.send` writing straight to an idle connection (`_write_now`): frames keep their
order when the socket fills up mid-frame, and when the direct write fails (the peer died) the
sender task takes over, reconnects and delivers again once the peer is back."""

from __future__ import annotations

import trio

from raft.messages import AppendEntries, Entry, Message, RequestVote
from raft.transport import Transport, TransportOptions

SECRET = b"0123456789abcdef0123456789abcdef"
OPTIONS = TransportOptions(frame_bytes_max=64 * 1024, error_log_interval_s=0.0,
                           reconnect_backoff_s_max=0.1)


def vote(term: int) -> RequestVote:
    return RequestVote(src="n1", dst="n2", term=term, last_log_index=0, last_log_term=0)


def append(index: int, size: int) -> AppendEntries:
    entry = Entry(term=1, index=index, data=bytes([index % 251]) * size)
    return AppendEntries(src="n1", dst="n2", term=1, prev_log_index=index - 1, prev_log_term=1,
                         entries=(entry,), commit=0)


def receiver(received: list[Message], port: int = 0) -> Transport:
    return Transport(node_id="n2", cluster_id="c1", secret=SECRET, listen=("127.0.0.1", port),
                     peers={"n1": ("127.0.0.1", 1)}, deliver=received.append, options=OPTIONS)


async def until(predicate: object, timeout_s: float = 10.0) -> None:
    with trio.fail_after(timeout_s):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.01)


def test_frames_stay_whole_and_in_order_when_a_direct_write_fills_the_socket() -> None:
    async def main() -> None:
        received: list[Message] = []
        async with trio.open_nursery() as nursery:
            b = receiver(received)
            await nursery.start(b.run)
            a = Transport(node_id="n1", cluster_id="c1", secret=SECRET, listen=("127.0.0.1", 0),
                          peers={"n2": ("127.0.0.1", b.bound_port or 0)}, deliver=lambda m: None,
                          options=OPTIONS)
            await nursery.start(a.run)
            a.send(vote(1))  # through the queue: the sender connects
            await until(lambda: len(received) == 1)
            await trio.sleep(0)  # let the sender go back to waiting on its queue
            # ~12 MB without yielding: far more than a socket buffer, so some direct write
            # stops mid-frame and the rest must go first through the queue
            for index in range(1, 401):
                a.send(append(index, 30_000))
            assert a.stats.frames_sent > 1, "nothing was written before the first await"
            await until(lambda: len(received) == 401)
            indexes = [m.entries[0].index for m in received[1:] if isinstance(m, AppendEntries)]
            assert indexes == list(range(1, 401))
            assert all(m.entries[0].data == bytes([m.entries[0].index % 251]) * 30_000
                       for m in received[1:] if isinstance(m, AppendEntries))
            assert sum(b.stats.peer_errors.values()) == 0
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_the_sender_takes_over_when_a_direct_write_fails_and_delivers_after_a_restart() -> None:
    async def main() -> None:
        received: list[Message] = []
        async with trio.open_nursery() as nursery:
            first = trio.CancelScope()
            b = receiver(received)

            async def run_first(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
                with first:
                    await b.run(task_status=task_status)

            await nursery.start(run_first)
            port = b.bound_port or 0
            a = Transport(node_id="n1", cluster_id="c1", secret=SECRET, listen=("127.0.0.1", 0),
                          peers={"n2": ("127.0.0.1", port)}, deliver=lambda m: None, options=OPTIONS)
            await nursery.start(a.run)
            a.send(vote(1))
            await until(lambda: len(received) == 1)
            first.cancel()  # the peer goes away: its connections close
            await trio.sleep(0.05)
            for term in range(2, 6):  # into a dead connection, then a refused one
                a.send(vote(term))
                await trio.sleep(0.02)
            await nursery.start(receiver(received, port).run)  # the peer is back, same port
            term = 6

            def delivered() -> bool:
                nonlocal term
                a.send(vote(term))  # like heartbeats: keep sending until one gets through
                term += 1
                return any(m.term >= 6 for m in received)

            await until(delivered)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_message_too_large_for_the_wire_is_dropped_once_on_the_direct_path() -> None:
    """Encoded once, warned and counted once, and not queued for the sender to encode again."""
    async def main() -> None:
        received: list[Message] = []
        async with trio.open_nursery() as nursery:
            b = receiver(received)
            await nursery.start(b.run)
            a = Transport(node_id="n1", cluster_id="c1", secret=SECRET, listen=("127.0.0.1", 0),
                          peers={"n2": ("127.0.0.1", b.bound_port or 0)}, deliver=lambda m: None,
                          options=OPTIONS)
            await nursery.start(a.run)
            a.send(vote(1))  # through the queue: the sender connects, then idles
            await until(lambda: len(received) == 1)
            await trio.sleep(0)
            a.send(append(1, 100_000))  # over frame_bytes_max (64 KiB)
            a.send(vote(2))  # the next message still goes out, in order
            await until(lambda: len(received) == 2)
            assert received[1].term == 2
            assert a.stats.send_dropped == {"n2": 1}
            nursery.cancel_scope.cancel()

    trio.run(main)
