"""`Transport(connection_lost=...)`: a peer that ends its connection (as a killed process's
kernel does) is reported by id once; a connection that never delivered an authenticated
message is not, so a stranger cannot fake a leader's loss."""

from __future__ import annotations

import trio
import trio.testing

from raft.messages import Message, RequestVote
from raft.transport import Transport, TransportOptions, encode_frame

SECRET = b"0123456789abcdef0123456789abcdef"
OPTIONS = TransportOptions(frame_bytes_max=64 * 1024, error_log_interval_s=0.0)


def vote(term: int) -> RequestVote:
    return RequestVote(src="n1", dst="n2", term=term, last_log_index=0, last_log_term=0)


def test_a_peer_that_stops_is_reported_once() -> None:
    async def main() -> None:
        lost: list[str] = []
        received: list[Message] = []
        got, closed = trio.Event(), trio.Event()

        def deliver(message: Message) -> None:
            received.append(message)
            got.set()

        def connection_lost(peer: str) -> None:
            lost.append(peer)
            closed.set()

        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                b = Transport(node_id="n2", cluster_id="c1", secret=SECRET, listen=("127.0.0.1", 0),
                              peers={"n1": ("127.0.0.1", 1)}, deliver=deliver, options=OPTIONS,
                              connection_lost=connection_lost)
                await nursery.start(b.run)
                assert b.bound_port is not None
                with trio.CancelScope() as a_scope:
                    a = Transport(node_id="n1", cluster_id="c1", secret=SECRET, listen=("127.0.0.1", 0),
                                  peers={"n2": ("127.0.0.1", b.bound_port)}, deliver=lambda m: None,
                                  options=OPTIONS)
                    async with trio.open_nursery() as a_nursery:
                        await a_nursery.start(a.run)
                        a.send(vote(1))
                        await got.wait()
                        assert lost == []
                        a_scope.cancel()  # n1 stops: its sender closes the connection
                await closed.wait()
                assert lost == ["n1"] and [m.term for m in received] == [1]
                nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_connection_without_an_authenticated_message_is_not_reported() -> None:
    async def main() -> None:
        lost: list[str] = []
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                b = Transport(node_id="n2", cluster_id="c1", secret=SECRET, listen=("127.0.0.1", 0),
                              peers={"n1": ("127.0.0.1", 1)}, deliver=lambda m: None, options=OPTIONS,
                              connection_lost=lost.append)
                await nursery.start(b.run)
                assert b.bound_port is not None
                # A frame that claims to come from n1 but carries a wrong MAC, then EOF.
                forged = encode_frame(b"\x00", cluster_id="c1", sender="n1", secret=b"x" * 32)
                stream = await trio.open_tcp_stream("127.0.0.1", b.bound_port)
                await stream.send_all(forged)
                await stream.aclose()
                while b._inbound or not b.stats.peer_errors:  # until the handler has finished
                    await trio.sleep(0)
                assert [kind for _, kind in b.stats.peer_errors] == ["bad_mac"]
                assert lost == []
                nursery.cancel_scope.cancel()

    trio.run(main)


def test_a_peer_that_came_up_is_retried_before_the_backoff_ends() -> None:
    """n1 failed to reach n2 (not listening yet) and backs off; once n2 has connected to n1,
    n1's next message to n2 goes out at once. The clock never moves here, so without that
    rule the backoff would drop every message."""
    async def main() -> None:
        import socket

        with socket.socket() as probe:  # a free port for n2, bound only later
            probe.bind(("127.0.0.1", 0))
            n2_port = probe.getsockname()[1]
        received: list[Message] = []
        async with trio.open_nursery() as nursery:
            a = Transport(node_id="n1", cluster_id="c1", secret=SECRET, listen=("127.0.0.1", 0),
                          peers={"n2": ("127.0.0.1", n2_port)}, deliver=lambda m: None, options=OPTIONS)
            await nursery.start(a.run)
            a.send(vote(1))  # refused: n2 is not listening
            while not a.stats.connect_failures:
                await trio.sleep(0)
            assert a.bound_port is not None
            b = Transport(node_id="n2", cluster_id="c1", secret=SECRET, listen=("127.0.0.1", n2_port),
                          peers={"n1": ("127.0.0.1", a.bound_port)}, deliver=received.append, options=OPTIONS)
            await nursery.start(b.run)
            b.send(RequestVote(src="n2", dst="n1", term=1, last_log_index=0, last_log_term=0))
            while not a.stats.frames_received:  # n1 has heard from n2
                await trio.sleep(0)
            a.send(vote(2))
            while not received and a.stats.send_dropped.get("n2", 0) < 2:  # delivered, or dropped
                await trio.sleep(0)
            assert [m.term for m in received] == [2]
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(rate=0))
