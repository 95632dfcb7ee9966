"""The Raft wire between real nodes: authenticated, length-prefixed frames over trio TCP.

Rules:
  1. A frame from the network is untrusted until it has passed, in this order: the length
     limit, the MAC, the envelope shape, the version and cluster id, and `raft.codec`'s strict
     decoder. Anything else is counted, logged at most once per peer per interval, dropped,
     and never raised into the node.
  2. Every queue is bounded. A full per-peer send queue drops the message: Raft retransmits
     (heartbeats re-probe a follower that stopped acknowledging), so dropping is always safe
     and a dead peer can never make this process grow.
  3. The frame layer (`encode_frame`, `FrameDecoder`) is sans-IO, like `raft/node.py`: bytes
     in, frames out, so it is tested without sockets. Only `Transport` touches trio.

Frame (all integers big-endian):

    u32 length | 32-byte tag | envelope            length = 32 + len(envelope)
    envelope = msgpack [version, cluster_id, sender, payload]   payload = raft.codec frame
    tag      = HMAC-SHA256(secret, envelope), or 32 zero bytes when the cluster has no secret

Why the MAC comes first and covers the raw envelope: a node with a secret authenticates
bytes before any parser sees them, so a stranger cannot reach msgpack or the codec at all.
Replay of a captured frame is not prevented: to Raft it looks like a duplicated packet,
which the protocol tolerates by design (docs/operations.md discusses the threat model).

Connections are one-way (as in etcd's rafthttp): node A dials B to send; B answers over
its own connection to A. So a receiver only reads and a sender only writes.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack
import trio

from raft import latency_probe
from raft.codec import decode_message, encode_message, pack
from raft.errors import ProtocolError
from raft.messages import Message

__all__ = [
    "FRAME_BYTES_MAX_DEFAULT", "PROTOCOL_VERSION", "FrameDecoder", "FrameError", "Transport",
    "TransportOptions", "TransportStats", "encode_frame", "open_frame",
]

PROTOCOL_VERSION: Final = 1
FRAME_BYTES_MAX_DEFAULT: Final = 4 * 1024 * 1024  # > bytes_per_message_max + a snapshot chunk
TAG_BYTES: Final = 32
_LENGTH = struct.Struct(">I")
_ZERO_TAG: Final = bytes(TAG_BYTES)
log = logging.getLogger("raftcron.transport")


class FrameError(ProtocolError):
    """A frame a peer sent is unacceptable. `kind` names the counter it goes to; `fatal`
    means the byte stream lost its framing and the connection must be closed."""

    def __init__(self, kind: str, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.fatal = fatal


@dataclass(frozen=True, slots=True)
class Envelope:
    """An authenticated frame, opened: who sent it, and the codec bytes of one message."""

    sender: str
    payload: bytes


# ---- the sans-IO frame layer ------------------------------------------------------------------

def _tag(secret: bytes | None, envelope: bytes) -> bytes:
    if secret is None:
        return _ZERO_TAG
    return hmac.new(secret, envelope, hashlib.sha256).digest()


def encode_frame(payload: bytes, *, cluster_id: str, sender: str, secret: bytes | None) -> bytes:
    """One complete frame (length prefix included) carrying `payload`."""
    envelope = pack([PROTOCOL_VERSION, cluster_id, sender, payload])
    tag = _tag(secret, envelope)
    assert len(tag) == TAG_BYTES
    return _LENGTH.pack(TAG_BYTES + len(envelope)) + tag + envelope


def open_frame(body: bytes, *, cluster_id: str, secret: bytes | None) -> Envelope:
    """Check one frame body (tag + envelope) in the order of Rule 1; FrameError otherwise."""
    if len(body) <= TAG_BYTES:
        raise FrameError("malformed", f"frame body of {len(body)} bytes is shorter than its tag")
    tag, envelope = body[:TAG_BYTES], body[TAG_BYTES:]
    if not hmac.compare_digest(tag, _tag(secret, envelope)):
        if secret is None:
            raise FrameError("unauthenticated", "peer signs its frames but this node has no secret")
        raise FrameError("bad_mac", "frame MAC does not match the cluster secret")
    try:
        fields = msgpack.unpackb(envelope, use_list=False, raw=False, max_map_len=0, max_ext_len=0)
    except Exception as exc:  # noqa: BLE001 - third-party parser on peer bytes
        raise FrameError("malformed", f"undecodable envelope: {exc}") from exc
    if type(fields) is not tuple or len(fields) != 4:
        raise FrameError("malformed", "envelope is not a 4-element array")
    version, frame_cluster, sender, payload = fields
    if version != PROTOCOL_VERSION or type(version) is not int:
        raise FrameError("version", f"protocol version {version!r}, this node speaks {PROTOCOL_VERSION}")
    if type(frame_cluster) is not str or frame_cluster != cluster_id:
        raise FrameError("other_cluster", f"frame from cluster {frame_cluster!r}, not {cluster_id!r}")
    if type(sender) is not str or type(payload) is not bytes:
        raise FrameError("malformed", "envelope sender must be str and payload bytes")
    return Envelope(sender=sender, payload=payload)


class FrameDecoder:
    """Splits a byte stream into frame bodies (h11's receive_data/next_event shape).

    The buffer never holds more than one frame plus one read: a length over
    `frame_bytes_max` is refused before its body is awaited, and that error is fatal because
    the stream cannot be resynchronised."""

    def __init__(self, frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT) -> None:
        assert frame_bytes_max > TAG_BYTES
        self.frame_bytes_max = frame_bytes_max
        self._buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self._buffer += data

    @property
    def buffered_bytes(self) -> int:
        return len(self._buffer)

    def next_body(self) -> bytes | None:
        """The next complete frame body, or None when more bytes are needed."""
        if len(self._buffer) < _LENGTH.size:
            return None
        (length,) = _LENGTH.unpack_from(self._buffer)
        if length > self.frame_bytes_max:
            raise FrameError("oversized", f"frame of {length} bytes exceeds {self.frame_bytes_max}",
                             fatal=True)
        if length <= TAG_BYTES:
            raise FrameError("malformed", f"frame length {length} leaves no envelope", fatal=True)
        end = _LENGTH.size + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[_LENGTH.size:end])
        del self._buffer[:end]
        return body


# ---- accounting ---------------------------------------------------------------------------------

@dataclass(slots=True)
class TransportStats:
    """Counters for /metrics. `peer_errors[(peer, kind)]`: peer is a node id once known,
    else the remote address."""

    frames_sent: int = 0
    frames_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    send_dropped: dict[str, int] = field(default_factory=dict)  # by destination
    connect_failures: dict[str, int] = field(default_factory=dict)
    peer_errors: dict[tuple[str, str], int] = field(default_factory=dict)
    connections_refused: int = 0


class RateLimitedLog:
    """At most one warning per (peer, kind) per interval, carrying the count it stood for, so
    a peer spraying garbage costs a line every `interval_s`, not a line per frame."""

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[tuple[str, str], tuple[float, int]] = {}
        self.keys_max = 4096  # bound memory when many addresses misbehave

    def warn(self, peer: str, kind: str, message: str) -> None:
        key = (peer, kind)
        now = self._clock()
        last_at, suppressed = self._last.get(key, (-math.inf, 0))
        if now - last_at < self.interval_s:
            self._last[key] = (last_at, suppressed + 1)
            return
        if len(self._last) >= self.keys_max and key not in self._last:
            self._last.clear()
        self._last[key] = (now, 0)
        more = f" (+{suppressed} more in the last {self.interval_s:.0f}s)" if suppressed else ""
        log.warning("peer %s: %s: %s%s", peer, kind, message, more)


# ---- the trio transport ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class TransportOptions:
    frame_bytes_max: int = FRAME_BYTES_MAX_DEFAULT
    send_queue_capacity: int = 1024  # messages per peer; beyond it new messages are dropped
    send_batch_max: int = 128  # frames written with one send_all
    write_now: bool = True  # `send` writes to an idle connection itself (Transport._write_now)
    connect_timeout_s: float = 1.0
    send_timeout_s: float = 2.0
    reconnect_backoff_s_max: float = 1.0
    inbound_connections_max: int = 64
    inbound_idle_timeout_s: float = 30.0
    read_bytes_max: int = 64 * 1024
    error_log_interval_s: float = 10.0


class Transport:
    """Sends a node's messages to its peers and hands received ones to `deliver`.

    `deliver` must not block (the runtime queues or drops). `send` never blocks either."""

    def __init__(self, *, node_id: str, cluster_id: str, secret: bytes | None,
                 listen: tuple[str, int], peers: dict[str, tuple[str, int]],
                 deliver: Callable[[Message], None],
                 options: TransportOptions = TransportOptions(),
                 connection_lost: Callable[[str], None] | None = None) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self._secret = secret
        self._listen = listen
        self._peers = {peer: address for peer, address in peers.items() if peer != node_id}
        self._deliver = deliver
        # Called with a peer's id when its connection to us ends from its side (EOF or reset),
        # never when we close it: a killed process's sockets close at once, long before any
        # election timer (RaftNode.leader_connection_lost decides what it means).
        self._connection_lost = connection_lost
        self.options = options
        self.stats = TransportStats()
        self._errors = RateLimitedLog(options.error_log_interval_s, trio.current_time)
        self._queues: dict[str, trio.MemorySendChannel[Message | bytes]] = {}
        # A peer's open connection while its sender task is idle (waiting for the queue):
        # `send` may then write straight to the socket (see `_write_now`).
        self._idle_streams: dict[str, trio.SocketStream] = {}
        self._nursery: trio.Nursery | None = None
        self._inbound = 0
        # When each peer last opened a connection to us that delivered a message: it is up, so
        # a sender backing off after failing to reach it retries at once (see `_sender`).
        self._peer_up_at: dict[str, float] = {}
        self.bound_port: int | None = None
        # Fault injection for tests (jepsen_like's partition where network namespaces are
        # unavailable): messages to and from these peers are dropped as if the network lost them.
        self.blocked_peers: frozenset[str] = frozenset()

    # ---- sending ------------------------------------------------------------------------------
    def send(self, message: Message) -> None:
        """Queue `message` for its destination; drop it (counted) when the queue is full or the
        destination is unknown. Called from the runtime's Ready handling, so it must not block."""
        if latency_probe.ENABLED:
            latency_probe.mark_message("queued", message)
        queue = self._queues.get(message.dst)
        if queue is None or message.dst in self.blocked_peers:
            self._count_drop(message.dst)
            return
        item: Message | bytes = message
        stream = self._idle_streams.get(message.dst)
        if stream is not None and self.options.write_now:
            rest = self._write_now(message.dst, stream, message)
            if rest == b"":
                return
            if rest is not None:
                item = rest
        try:
            queue.send_nowait(item)
        except trio.WouldBlock:
            self._count_drop(message.dst)

    def _write_now(self, peer: str, stream: trio.SocketStream, message: Message) -> bytes | None:
        """Write `message` to the idle sender's socket without waiting for the sender task: a
        message then leaves when the Ready hands it out, even if the runtime goes on to block
        in a synced save, and costs no task switch. Returns None when the message was not
        written at all (it goes through the queue), else the bytes still to write (empty when
        all went out; the rest goes first in the queue, which is empty while the sender idles,
        so frames stay in order)."""
        data = self._frame(peer, message)
        if data is None:
            return b""  # too large for the wire: warned and counted once; nothing to queue
        try:
            written = os.write(stream.socket.fileno(), data)  # the socket is non-blocking
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            return None  # the sender task meets the same error, reports it and reconnects
        self.stats.frames_sent += 1
        self.stats.bytes_sent += written
        if latency_probe.ENABLED:
            latency_probe.mark_message("wire", message)
        return data[written:]

    def add_peer(self, peer: str, address: tuple[str, int]) -> None:
        """A node that joined later (a learner): send to it and accept its frames. Safe to call
        before `run` (its sender starts with the others) and again with a new address."""
        if peer == self.node_id:
            return
        self._peers[peer] = address
        if self._nursery is not None and peer not in self._queues:
            self._start_sender(self._nursery, peer)

    def _start_sender(self, nursery: trio.Nursery, peer: str) -> None:
        send_channel, receive_channel = trio.open_memory_channel[Message | bytes](
            self.options.send_queue_capacity)
        self._queues[peer] = send_channel
        nursery.start_soon(self._sender, peer, receive_channel)

    def _count_drop(self, peer: str) -> None:
        self.stats.send_dropped[peer] = self.stats.send_dropped.get(peer, 0) + 1

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and run one sender per peer until cancelled. `task_status.started()` fires once
        the listener is bound, so callers can wait for readiness without sleeping."""
        host, port = self._listen
        listeners = await trio.open_tcp_listeners(port, host=host)
        self.bound_port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for peer in sorted(self._peers):
                self._start_sender(nursery, peer)
            await nursery.start(trio.serve_listeners, self._serve_connection, listeners)
            task_status.started(self.bound_port)

    async def _sender(self, peer: str, queue: trio.MemoryReceiveChannel[Message | bytes]) -> None:
        """Connect lazily, write batches, reconnect with capped backoff. While disconnected,
        messages are drained and dropped so that a reconnect never delivers stale ones."""
        stream: trio.SocketStream | None = None
        backoff_s = 0.05
        retry_at = failed_at = -math.inf
        try:
            while True:
                if stream is not None:
                    self._idle_streams[peer] = stream
                try:
                    message = await queue.receive()
                except trio.EndOfChannel:
                    return
                finally:
                    self._idle_streams.pop(peer, None)
                batch = self._batch(message, queue)
                reconnecting = stream is None
                # A peer that connected to us since our last failure is up: do not sit out the
                # backoff (up to a second of dropped messages, e.g. a vote in a failover).
                if stream is None and (trio.current_time() >= retry_at
                                       or self._peer_up_at.get(peer, -math.inf) >= failed_at):
                    stream = await self._connect(peer, self._peers[peer])
                    if stream is None:
                        failed_at = trio.current_time()
                        retry_at = failed_at + backoff_s
                        backoff_s = min(backoff_s * 2, self.options.reconnect_backoff_s_max)
                    else:
                        backoff_s = 0.05
                if stream is None:
                    self.stats.send_dropped[peer] = self.stats.send_dropped.get(peer, 0) + len(batch)
                    continue
                if reconnecting:  # the end of a frame begun on a lost connection is no frame here
                    batch = [message for message in batch if not isinstance(message, bytes)]
                if not await self._write(peer, stream, batch):
                    await _close_quietly(stream)
                    stream = None
        finally:
            if stream is not None:
                await _close_quietly(stream)

    def _batch(self, first: Message | bytes,
               queue: trio.MemoryReceiveChannel[Message | bytes]) -> list[Message | bytes]:
        batch = [first]
        while len(batch) < self.options.send_batch_max:
            try:
                batch.append(queue.receive_nowait())
            except trio.WouldBlock:
                break
        return batch

    async def _connect(self, peer: str, address: tuple[str, int]) -> trio.SocketStream | None:
        with trio.move_on_after(self.options.connect_timeout_s):
            try:
                return await trio.open_tcp_stream(*address)
            except OSError as exc:
                self._errors.warn(peer, "connect", f"cannot connect to {address[0]}:{address[1]}: {exc}")
        self.stats.connect_failures[peer] = self.stats.connect_failures.get(peer, 0) + 1
        return None

    def _frame(self, peer: str, message: Message) -> bytes | None:
        """The frame for `message`; None (warned, counted) when it is too large for the wire:
        Raft will resend smaller."""
        try:
            payload = encode_message(message, self.options.frame_bytes_max - 256)
        except ProtocolError as exc:
            self._errors.warn(peer, "encode", str(exc))
            self._count_drop(peer)
            return None
        return encode_frame(payload, cluster_id=self.cluster_id, sender=self.node_id,
                            secret=self._secret)

    async def _write(self, peer: str, stream: trio.SocketStream, batch: list[Message | bytes]) -> bool:
        frames = []
        for message in batch:
            # bytes: the unwritten end of a frame `_write_now` started; already counted
            frame = message if isinstance(message, bytes) else self._frame(peer, message)
            if frame is not None:
                frames.append(frame)
        data = b"".join(frames)
        with trio.move_on_after(self.options.send_timeout_s):
            try:
                await stream.send_all(data)
                if latency_probe.ENABLED:
                    for message in batch:
                        if not isinstance(message, bytes):
                            latency_probe.mark_message("wire", message)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self._errors.warn(peer, "send", f"connection lost: {exc}")
                return False
            self.stats.frames_sent += sum(not isinstance(message, bytes) for message in batch)
            self.stats.bytes_sent += len(data)
            return True
        self._errors.warn(peer, "send", f"send timed out after {self.options.send_timeout_s}s")
        return False

    # ---- receiving ----------------------------------------------------------------------------
    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        remote = _remote_label(stream)
        if self._inbound >= self.options.inbound_connections_max:
            self.stats.connections_refused += 1
            self._errors.warn(remote, "refused", "too many inbound connections")
            await _close_quietly(stream)
            return
        self._inbound += 1
        sender: list[str] = []  # the authenticated peer, once one of its frames was delivered
        try:
            try:
                closed_by_peer = await self._read_frames(stream, remote, sender)
            except (trio.BrokenResourceError, OSError):
                closed_by_peer = True  # reset: the peer went away; its sender reconnects
            except trio.ClosedResourceError:
                closed_by_peer = False  # we closed it
            if closed_by_peer and sender and self._connection_lost is not None:
                self._connection_lost(sender[0])
        finally:
            self._inbound -= 1
            await _close_quietly(stream)

    async def _read_frames(self, stream: trio.SocketStream, remote: str, sender: list[str]) -> bool:
        """Deliver frames until the connection ends; True when the peer ended it (EOF), False
        when we did (idle timeout, lost framing)."""
        decoder = FrameDecoder(self.options.frame_bytes_max)
        label = remote
        timeout_s = self.options.inbound_idle_timeout_s
        # One idle scope whose deadline moves at most every `step` (so a connection is closed
        # after T - step to T of silence): a cancel scope with a deadline per receive cost
        # ~8 us of every frame (papers/perf/README.md, raft).
        step = min(1.0, timeout_s / 4)
        moved_at = -math.inf
        with trio.CancelScope() as idle:
            while True:
                now = trio.current_time()
                if now - moved_at >= step:
                    idle.deadline, moved_at = now + timeout_s, now
                data = await stream.receive_some(self.options.read_bytes_max)
                if not data:
                    break
                self.stats.bytes_received += len(data)
                decoder.feed(data)
                for _ in range(len(data) + 1):  # each frame takes > 36 bytes: a bound, never reached
                    try:
                        body = decoder.next_body()
                    except FrameError as exc:
                        self._count_error(label, exc)
                        return False  # fatal by construction: framing is lost
                    if body is None:
                        break
                    label, delivered = self._receive_body(body, label)
                    if delivered and not sender:
                        sender.append(label)
                        self._peer_up_at[label] = trio.current_time()
        if decoder.buffered_bytes:
            self._count_error(label, FrameError(
                "truncated", f"connection ended inside a frame ({decoder.buffered_bytes} bytes)"))
        return not idle.cancelled_caught

    def _receive_body(self, body: bytes, label: str) -> tuple[str, bool]:
        """Open, decode and deliver one frame; returns the label to blame for the next error
        (the sender's id once a frame authenticated) and whether the message was delivered."""
        try:
            envelope = open_frame(body, cluster_id=self.cluster_id, secret=self._secret)
            message = decode_message(envelope.payload, self.options.frame_bytes_max)
        except FrameError as exc:
            self._count_error(label, exc)
            return label, False
        except ProtocolError as exc:
            self._count_error(label, FrameError("malformed", str(exc)))
            return label, False
        if message.src != envelope.sender or message.dst != self.node_id:
            self._count_error(envelope.sender, FrameError(
                "misaddressed", f"message {message.src}->{message.dst} in a frame from {envelope.sender}"))
            return envelope.sender, False
        if message.src not in self._peers:
            self._count_error(envelope.sender, FrameError("unknown_peer", f"{message.src} is not a peer"))
            return envelope.sender, False
        if message.src in self.blocked_peers:  # fault injection: lost on the way in
            return envelope.sender, False
        self.stats.frames_received += 1
        if latency_probe.ENABLED:
            latency_probe.mark_message("received", message)
        self._deliver(message)
        return envelope.sender, True

    def _count_error(self, peer: str, error: FrameError) -> None:
        key = (peer, error.kind)
        self.stats.peer_errors[key] = self.stats.peer_errors.get(key, 0) + 1
        if len(self.stats.peer_errors) > 4096:  # bound: keep kinds, forget per-address detail
            self._fold_peer_errors()
        self._errors.warn(peer, error.kind, str(error))

    def _fold_peer_errors(self) -> None:
        folded: dict[tuple[str, str], int] = {}
        for (_, kind), count in self.stats.peer_errors.items():
            folded[("other", kind)] = folded.get(("other", kind), 0) + count
        self.stats.peer_errors = folded

    def peer_error_totals(self) -> dict[str, int]:
        """Errors by kind, summed over peers (for /metrics, where per-address labels would
        make an unbounded number of series)."""
        totals: dict[str, int] = {}
        for (_, kind), count in self.stats.peer_errors.items():
            totals[kind] = totals.get(kind, 0) + count
        return totals


def _remote_label(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "unknown"
    return f"{host}:{port}"


async def _close_quietly(stream: trio.abc.AsyncResource) -> None:
    with trio.CancelScope(shield=True):
        try:
            await stream.aclose()
        except (trio.BrokenResourceError, OSError):
            pass
