"""`Transport` over real loopback sockets: messages flow, and hostile bytes are counted and
dropped without ever reaching the node or stopping the listener (raft/transport.py Rule 1)."""

from __future__ import annotations

import struct

import trio

from raft.codec import encode_message
from raft.messages import Message, RequestVote
from raft.transport import Transport, TransportOptions, encode_frame

SECRET = b"0123456789abcdef0123456789abcdef"


def vote(src: str, dst: str, term: int) -> RequestVote:
    return RequestVote(src=src, dst=dst, term=term, last_log_index=0, last_log_term=0)


async def pair(nursery: trio.Nursery, received: list[Message], *, secret: bytes | None = SECRET
               ) -> tuple[Transport, Transport]:
    options = TransportOptions(frame_bytes_max=64 * 1024, error_log_interval_s=0.0)
    b = Transport(node_id="n2", cluster_id="c1", secret=secret, listen=("127.0.0.1", 0),
                  peers={"n1": ("127.0.0.1", 1)}, deliver=received.append, options=options)
    await nursery.start(b.run)
    assert b.bound_port is not None
    a = Transport(node_id="n1", cluster_id="c1", secret=secret, listen=("127.0.0.1", 0),
                  peers={"n2": ("127.0.0.1", b.bound_port)}, deliver=lambda m: None, options=options)
    await nursery.start(a.run)
    return a, b


async def until(predicate: object, timeout_s: float = 5.0) -> None:
    with trio.fail_after(timeout_s):
        while not predicate():  # type: ignore[operator]
            await trio.sleep(0.01)


async def raw_send(port: int, data: bytes) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    try:
        await stream.send_all(data)
    finally:
        await stream.aclose()


def test_messages_arrive_in_order() -> None:
    async def main() -> None:
        received: list[Message] = []
        async with trio.open_nursery() as nursery:
            a, _ = await pair(nursery, received)
            for term in range(1, 101):
                a.send(vote("n1", "n2", term))
            await until(lambda: len(received) == 100)
            assert [m.term for m in received] == list(range(1, 101))
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_garbage_truncated_oversized_and_forged_frames_are_dropped_and_counted() -> None:
    async def main() -> None:
        received: list[Message] = []
        async with trio.open_nursery() as nursery:
            a, b = await pair(nursery, received)
            port = b.bound_port
            assert port is not None
            payload = encode_message(vote("n1", "n2", 5))
            await raw_send(port, b"\x00\x00\x00\x40" + b"garbage!" * 8)  # right length, junk inside
            await raw_send(port, encode_frame(payload, cluster_id="c1", sender="n1", secret=SECRET)[:-3])
            await raw_send(port, struct.pack(">I", 10 * 1024 * 1024) + b"x" * 100)  # oversized
            wrong = b"another secret of thirty-two byte"
            await raw_send(port, encode_frame(payload, cluster_id="c1", sender="n1", secret=wrong))
            await raw_send(port, encode_frame(payload, cluster_id="c2", sender="n1", secret=SECRET))
            await raw_send(port, encode_frame(b"\xc1\xc1", cluster_id="c1", sender="n1", secret=SECRET))
            stranger = encode_message(vote("n9", "n2", 5))
            await raw_send(port, encode_frame(stranger, cluster_id="c1", sender="n9", secret=SECRET))
            expected = {"bad_mac": 2,  # the junk frame and the wrong secret
                        "oversized": 1, "truncated": 1, "other_cluster": 1, "malformed": 1, "unknown_peer": 1}
            await until(lambda: b.peer_error_totals() == expected)
            assert received == []
            a.send(vote("n1", "n2", 9))  # the listener still serves real peers
            await until(lambda: len(received) == 1)
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_full_send_queue_drops_instead_of_growing() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            lonely = Transport(node_id="n1", cluster_id="c1", secret=None, listen=("127.0.0.1", 0),
                               peers={"n2": ("127.0.0.1", 1)}, deliver=lambda m: None,
                               options=TransportOptions(send_queue_capacity=8, connect_timeout_s=0.2))
            await nursery.start(lonely.run)
            for term in range(1000):
                lonely.send(vote("n1", "n2", term))
            assert lonely.stats.send_dropped["n2"] >= 1000 - 8 - 1  # + one in the sender's hands
            lonely.send(vote("n1", "n7", 1))  # unknown destination: dropped, not raised
            assert lonely.stats.send_dropped["n7"] == 1
            nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_silent_inbound_connection_is_closed_after_the_idle_timeout_and_a_busy_one_is_not() -> None:
    """The idle deadline moves at most every T/4: a connection that sends a frame more often
    than that stays open past T; one that sends nothing is closed between 3T/4 and T."""
    async def main() -> None:
        received: list[Message] = []
        timeout_s = 0.4
        options = TransportOptions(inbound_idle_timeout_s=timeout_s, error_log_interval_s=0.0)
        b = Transport(node_id="n2", cluster_id="c1", secret=SECRET, listen=("127.0.0.1", 0),
                      peers={"n1": ("127.0.0.1", 1)}, deliver=received.append, options=options)
        async with trio.open_nursery() as nursery:
            await nursery.start(b.run)
            assert b.bound_port is not None
            silent = await trio.open_tcp_stream("127.0.0.1", b.bound_port)
            busy = await trio.open_tcp_stream("127.0.0.1", b.bound_port)
            opened = trio.current_time()
            frame = encode_frame(encode_message(vote("n1", "n2", 1)), cluster_id="c1", sender="n1",
                                 secret=SECRET)
            frames = int(3 * timeout_s / 0.05)  # 3T of frames, one every 50 ms

            async def keep_busy() -> None:
                for _ in range(frames):
                    await busy.send_all(frame)
                    await trio.sleep(0.05)  # the peer's pace, not a wait for a condition

            async with trio.open_nursery() as senders:
                senders.start_soon(keep_busy)
                with trio.fail_after(5):
                    assert await silent.receive_some(10) == b""  # closed by b
                closed_after = trio.current_time() - opened
            assert 0.75 * timeout_s - 0.05 <= closed_after <= timeout_s + 0.5
            assert len(received) == frames  # every frame delivered: the busy one was never closed
            nursery.cancel_scope.cancel()

    trio.run(main)
