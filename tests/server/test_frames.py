"""The sans-IO frame layer: every way a peer's bytes can be wrong maps to one counted kind.

Rule 1 of raft/transport.py: length limit, then MAC, then envelope, version, cluster id, then
the codec. These tests walk that order with one bad frame per step.
"""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from raft.codec import encode_message
from raft.messages import RequestVote
from raft.transport import TAG_BYTES, FrameDecoder, FrameError, encode_frame, open_frame

SECRET = b"0123456789abcdef0123456789abcdef"
MESSAGE = RequestVote(src="n1", dst="n2", term=3, last_log_index=7, last_log_term=2)
PAYLOAD = encode_message(MESSAGE)


def frame(secret: bytes | None = SECRET, cluster: str = "c1", payload: bytes = PAYLOAD) -> bytes:
    return encode_frame(payload, cluster_id=cluster, sender="n1", secret=secret)


def body_of(data: bytes) -> bytes:
    decoder = FrameDecoder()
    decoder.feed(data)
    body = decoder.next_body()
    assert body is not None
    return body


def test_a_frame_round_trips_with_and_without_a_secret() -> None:
    for secret in (SECRET, None):
        envelope = open_frame(body_of(frame(secret)), cluster_id="c1", secret=secret)
        assert envelope.sender == "n1"
        assert envelope.payload == PAYLOAD


@pytest.mark.parametrize("receiver_secret, kind", [
    (b"another secret of thirty-two byte", "bad_mac"),
    (None, "unauthenticated"),
])
def test_a_frame_under_another_key_is_refused(receiver_secret: bytes | None, kind: str) -> None:
    with pytest.raises(FrameError) as caught:
        open_frame(body_of(frame(SECRET)), cluster_id="c1", secret=receiver_secret)
    assert caught.value.kind == kind
    assert not caught.value.fatal


def test_an_unsigned_frame_is_refused_by_a_node_with_a_secret() -> None:
    with pytest.raises(FrameError) as caught:
        open_frame(body_of(frame(None)), cluster_id="c1", secret=SECRET)
    assert caught.value.kind == "bad_mac"


def test_one_flipped_bit_anywhere_fails_the_mac() -> None:
    body = bytearray(body_of(frame()))
    for position in (0, TAG_BYTES, len(body) - 1):
        tampered = bytearray(body)
        tampered[position] ^= 1
        with pytest.raises(FrameError) as caught:
            open_frame(bytes(tampered), cluster_id="c1", secret=SECRET)
        assert caught.value.kind == "bad_mac"


def test_another_cluster_and_another_version_are_refused() -> None:
    with pytest.raises(FrameError) as caught:
        open_frame(body_of(frame(cluster="c2")), cluster_id="c1", secret=SECRET)
    assert caught.value.kind == "other_cluster"
    envelope = msgpack.packb([99, "c1", "n1", PAYLOAD])
    import hashlib
    import hmac
    tag = hmac.new(SECRET, envelope, hashlib.sha256).digest()
    with pytest.raises(FrameError) as caught:
        open_frame(tag + envelope, cluster_id="c1", secret=SECRET)
    assert caught.value.kind == "version"


def test_an_oversized_length_is_fatal_before_the_body_arrives() -> None:
    decoder = FrameDecoder(frame_bytes_max=1024)
    decoder.feed(struct.pack(">I", 1025))
    with pytest.raises(FrameError) as caught:
        decoder.next_body()
    assert caught.value.kind == "oversized"
    assert caught.value.fatal


def test_a_truncated_frame_waits_for_more_bytes() -> None:
    data = frame()
    decoder = FrameDecoder()
    decoder.feed(data[:-1])
    assert decoder.next_body() is None
    decoder.feed(data[-1:])
    assert decoder.next_body() == data[4:]


@given(st.lists(st.integers(min_value=1, max_value=50), max_size=40), st.integers(1, 5))
def test_any_split_of_a_stream_yields_the_same_frames(cuts: list[int], count: int) -> None:
    stream = b"".join(frame(payload=PAYLOAD + bytes([i])) for i in range(count))
    decoder = FrameDecoder()
    bodies = []
    position = 0
    for size in cuts + [len(stream)]:
        decoder.feed(stream[position:position + size])
        position += size
        while (body := decoder.next_body()) is not None:
            bodies.append(body)
    assert len(bodies) == count
    assert decoder.buffered_bytes == 0


@given(st.binary(max_size=200))
def test_random_bodies_raise_frame_errors_only(garbage: bytes) -> None:
    try:
        open_frame(garbage, cluster_id="c1", secret=SECRET)
    except FrameError:
        pass
    try:
        open_frame(garbage, cluster_id="c1", secret=None)
    except FrameError:
        pass
