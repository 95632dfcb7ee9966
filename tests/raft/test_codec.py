"""raft.codec: every message round-trips, and nothing but ProtocolError ever comes out of a
decoder, whatever bytes a peer (or a damaged disk) hands it."""

from __future__ import annotations

import dataclasses
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raft.codec import (
    FIELDS,
    INT_MAX,
    TAGS,
    decode_entry,
    decode_hard_state,
    decode_message,
    decode_snapshot_meta,
    encode_entry,
    encode_hard_state,
    encode_message,
    encode_snapshot_meta,
)
from raft.errors import ProtocolError
from raft.messages import (
    MESSAGE_TYPES,
    AppendEntries,
    AppendEntriesResponse,
    Configuration,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)

# ---- strategies -------------------------------------------------------------------------------

node_ids = st.text(min_size=1, max_size=12)
# Mostly small numbers (what Raft really sends), sometimes the extremes of the range.
nats = st.one_of(st.integers(0, 1000), st.integers(0, INT_MAX))
bools = st.booleans()
payloads = st.binary(max_size=200)


@st.composite
def configurations(draw: st.DrawFn) -> Configuration:
    members = draw(st.lists(node_ids, unique=True, max_size=7))
    split = draw(st.integers(0, len(members)))
    return Configuration(voters=frozenset(members[:split]), learners=frozenset(members[split:]))


snapshot_metas = st.builds(SnapshotMeta, index=nats, term=nats, config=configurations())
entries_kinds = st.sampled_from(list(EntryKind))
standalone_entries = st.builds(Entry, term=st.integers(1, INT_MAX), index=st.integers(1, INT_MAX),
                               kind=entries_kinds, data=payloads)


@st.composite
def append_entries(draw: st.DrawFn) -> AppendEntries:
    """A leader's AppendEntries: contiguous entries, terms rising to at most the leader's."""
    term = draw(st.integers(0, 1000))
    prev_log_term = draw(st.integers(0, term))
    prev_log_index = draw(st.integers(0, 1000) if prev_log_term == 0 else st.integers(1, 1000))
    count = draw(st.integers(0, 8)) if term >= 1 else 0
    terms = sorted(draw(st.lists(st.integers(max(prev_log_term, 1), max(term, 1)),
                                 min_size=count, max_size=count)))
    entries = tuple(Entry(term=t, index=prev_log_index + 1 + k, kind=draw(entries_kinds),
                          data=draw(payloads)) for k, t in enumerate(terms))
    return AppendEntries(src=draw(node_ids), dst=draw(node_ids), term=term,
                         prev_log_index=prev_log_index, prev_log_term=prev_log_term,
                         entries=entries, commit=draw(nats), read_context=draw(nats))


minus_one_or_nat = st.one_of(st.just(-1), nats)
messages = st.one_of(
    st.builds(RequestVote, src=node_ids, dst=node_ids, term=nats, last_log_index=nats,
              last_log_term=nats, pre_vote=bools, transfer=bools),
    st.builds(RequestVoteResponse, src=node_ids, dst=node_ids, term=nats, granted=bools,
              pre_vote=bools),
    append_entries(),
    st.builds(AppendEntriesResponse, src=node_ids, dst=node_ids, term=nats, success=bools,
              match_index=nats, reject_index=minus_one_or_nat, conflict_index=nats,
              conflict_term=nats, read_context=nats),
    st.builds(InstallSnapshot, src=node_ids, dst=node_ids, term=nats, meta=snapshot_metas,
              offset=nats, data=payloads, done=bools),
    st.builds(InstallSnapshotResponse, src=node_ids, dst=node_ids, term=nats, index=nats,
              next_offset=minus_one_or_nat, success=bools),
    st.builds(TimeoutNow, src=node_ids, dst=node_ids, term=nats),
)

# Anything msgpack can carry, including what our frames never contain (maps, floats, nil).
msgpack_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(),
              st.text(max_size=10), st.binary(max_size=10)),
    lambda children: st.one_of(st.lists(children, max_size=6),
                               st.dictionaries(st.text(max_size=4), children, max_size=3)),
    max_leaves=20,
)


def _pack(obj: Any) -> bytes:
    packed: bytes = msgpack.packb(obj, use_bin_type=True)
    return packed


def _decode_or_protocol_error(data: bytes) -> None:
    """The only two acceptable outcomes of decoding untrusted bytes."""
    try:
        message = decode_message(data)
    except ProtocolError:
        return
    assert type(message) in MESSAGE_TYPES


# ---- the format is what the tables say ---------------------------------------------------------

def test_fields_table_covers_every_dataclass_field() -> None:
    """A field added to messages.py must be added to the wire format, not dropped silently."""
    assert set(FIELDS) == set(MESSAGE_TYPES) == set(TAGS)
    for cls, spec in FIELDS.items():
        assert len({name for name, _ in spec}) == len(spec), cls
        assert sorted(name for name, _ in spec) == sorted(f.name for f in dataclasses.fields(cls))


def test_tags_are_unique_one_byte_and_lead_the_frame() -> None:
    assert sorted(TAGS.values()) == list(range(1, len(TAGS) + 1))
    frame = encode_message(TimeoutNow(src="n1", dst="n2", term=3))
    assert frame == bytes([0x94, TAGS[TimeoutNow]]) + b"\xa2n1\xa2n2\x03"  # fixarray(4), tag, ...


def test_frame_layout_follows_fields_table() -> None:
    message = AppendEntriesResponse(src="a", dst="b", term=1, success=False, match_index=2,
                                    reject_index=-1, conflict_index=3, conflict_term=4,
                                    read_context=5)
    raw = msgpack.unpackb(encode_message(message))
    assert raw == [TAGS[AppendEntriesResponse]] + [getattr(message, name)
                                                   for name, _ in FIELDS[AppendEntriesResponse]]


# ---- round trips ---------------------------------------------------------------------------------

@given(messages)
def test_every_message_round_trips(message: Any) -> None:
    frame = encode_message(message)
    decoded = decode_message(frame)
    assert decoded == message
    assert type(decoded) is type(message)
    assert encode_message(decoded) == frame  # canonical: equal messages, equal bytes


@given(append_entries())
def test_decoded_entries_are_real_frozen_entries(message: AppendEntries) -> None:
    """The codec builds entries without Entry.__init__; they must be indistinguishable."""
    decoded = decode_message(encode_message(message))
    assert isinstance(decoded, AppendEntries)
    for got, want in zip(decoded.entries, message.entries, strict=True):
        assert got == want and hash(got) == hash(want)
        assert type(got.kind) is EntryKind
        with pytest.raises(dataclasses.FrozenInstanceError):
            got.term = 99  # type: ignore[misc]


@given(standalone_entries)
def test_entry_round_trips(entry: Entry) -> None:
    assert decode_entry(encode_entry(entry)) == entry


@given(st.builds(HardState, term=nats, vote=st.one_of(st.none(), node_ids), commit=nats))
def test_hard_state_round_trips(hard_state: HardState) -> None:
    assert decode_hard_state(encode_hard_state(hard_state)) == hard_state


@given(snapshot_metas)
def test_snapshot_meta_round_trips(meta: SnapshotMeta) -> None:
    assert decode_snapshot_meta(encode_snapshot_meta(meta)) == meta


# ---- nothing but ProtocolError -------------------------------------------------------------------

@settings(max_examples=300)
@given(st.binary(max_size=64))
def test_random_bytes_raise_only_protocol_error(data: bytes) -> None:
    _decode_or_protocol_error(data)


@settings(max_examples=300)
@given(msgpack_values)
def test_random_msgpack_values_raise_only_protocol_error(value: Any) -> None:
    _decode_or_protocol_error(_pack(value))


@settings(max_examples=300)
@given(st.sampled_from(sorted(TAGS.values())), st.lists(msgpack_values, max_size=10))
def test_random_fields_after_a_valid_tag_raise_only_protocol_error(tag: int, fields: list[Any]) -> None:
    _decode_or_protocol_error(_pack([tag, *fields]))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(messages, st.data())
def test_one_field_mutated_raises_only_protocol_error(message: Any, data: st.DataObject) -> None:
    """The sharpest fuzz: a valid frame with exactly one field (or one entry field) replaced."""
    raw = msgpack.unpackb(encode_message(message))
    position = data.draw(st.integers(0, len(raw) - 1))
    if isinstance(raw[position], list) and raw[position] and data.draw(st.booleans()):
        inner = raw[position][data.draw(st.integers(0, len(raw[position]) - 1))]
        if isinstance(inner, list) and inner:
            inner[data.draw(st.integers(0, len(inner) - 1))] = data.draw(msgpack_values)
    else:
        raw[position] = data.draw(msgpack_values)
    _decode_or_protocol_error(_pack(raw))


@given(messages, st.data())
def test_truncated_frames_raise_protocol_error(message: Any, data: st.DataObject) -> None:
    frame = encode_message(message)
    cut = data.draw(st.integers(0, len(frame) - 1))
    with pytest.raises(ProtocolError):
        decode_message(frame[:cut])


@given(st.binary(max_size=40))
def test_storage_decoders_raise_only_protocol_error(data: bytes) -> None:
    for decode in (decode_entry, decode_hard_state, decode_snapshot_meta):
        try:
            decode(data)
        except ProtocolError:
            pass


# ---- specific malformed frames, each with the reason it must give --------------------------------

HEARTBEAT = [3, "n1", "n2", 5, 10, 4, 9, 0, []]


def _with(frame: list[Any], position: int, value: Any) -> list[Any]:
    return frame[:position] + [value] + frame[position + 1:]


MALFORMED: list[tuple[str, Any, str]] = [
    ("not an array", {"tag": 3}, "max_map_len"),
    ("empty array", [], "non-empty array"),
    ("bare int", 3, "non-empty array"),
    ("unknown tag 0", [0, "a"], "unknown type tag"),
    ("unknown tag 99", [99, "a"], "unknown type tag"),
    ("str tag", ["3", "a"], "unknown type tag"),
    ("bool tag", [True, "n1", "n2", 1], "unknown type tag"),
    ("too few fields", HEARTBEAT[:-1], "needs 9 elements"),
    ("too many fields", HEARTBEAT + [0], "needs 9 elements"),
    ("str where an int belongs", _with(HEARTBEAT, 3, "5"), "AppendEntries.term must be an int"),
    ("bool where an int belongs", _with(HEARTBEAT, 3, True), "AppendEntries.term must be an int"),
    ("float where an int belongs", _with(HEARTBEAT, 6, 9.0), "AppendEntries.commit must be an int"),
    ("negative index", _with(HEARTBEAT, 4, -1), "prev_log_index must be an int in [0"),
    ("huge int", _with(HEARTBEAT, 6, 2**64 - 1), "commit must be an int in [0, 2**63-1]"),
    ("empty node id", _with(HEARTBEAT, 1, ""), "AppendEntries.src must be a node id"),
    ("bytes node id", _with(HEARTBEAT, 2, b"n2"), "AppendEntries.dst must be a node id"),
    ("long node id", _with(HEARTBEAT, 2, "n" * 256), "AppendEntries.dst must be a node id"),
    ("prev_log_term above term", _with(HEARTBEAT, 5, 6), "prev_log_term 6 exceeds its term 5"),
    ("entries not an array", _with(HEARTBEAT, 8, b"xx"), "entries must be an array"),
    ("entry of wrong arity", _with(HEARTBEAT, 8, [[5, 11, 0]]), "entry must be [term: int"),
    ("entry is a map", _with(HEARTBEAT, 8, [{"t": 1}]), "max_map_len"),
    ("entry data as str", _with(HEARTBEAT, 8, [[5, 11, 0, "x"]]), "entry must be [term: int"),
    ("entry gap", _with(HEARTBEAT, 8, [[5, 12, 0, b""]]), "index 12 breaks the sequence"),
    ("entries out of order", _with(HEARTBEAT, 8, [[5, 11, 0, b""], [5, 11, 0, b""]]), "expected 12"),
    ("entry term above message term", _with(HEARTBEAT, 8, [[6, 11, 0, b""]]), "has term 6"),
    ("entry term below prev_log_term", _with(HEARTBEAT, 8, [[3, 11, 0, b""]]), "has term 3"),
    ("entry terms decrease", _with(HEARTBEAT, 8, [[5, 11, 0, b""], [4, 12, 0, b""]]), "has term 4"),
    ("unknown entry kind", _with(HEARTBEAT, 8, [[5, 11, 7, b""]]), "unknown kind 7"),
    ("int where a bool belongs", [1, "a", "b", 1, 0, 0, 1, False], "RequestVote.pre_vote must be a bool"),
    ("reject_index below -1", [4, "a", "b", 1, False, 0, -2, 0, 0, 0], "reject_index must be an int in [-1"),
    ("snapshot meta garbage", [5, "a", "b", 1, [1, 1, ["x"]], 0, b"", True], "snapshot meta must be"),
    ("snapshot voter also learner", [5, "a", "b", 1, [1, 1, ["x"], ["x"]], 0, b"", True],
     "both voter and learner"),
    ("snapshot duplicate voters", [5, "a", "b", 1, [1, 1, ["x", "x"], []], 0, b"", True],
     "snapshot meta must be"),
    ("snapshot data as str", [5, "a", "b", 1, [1, 1, [], []], 0, "d", True],
     "InstallSnapshot.data must be bytes"),
    ("ext type", msgpack.ExtType(1, b"x"), "max_ext_len"),
]


@pytest.mark.parametrize(("case", "value", "reason"), MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_frame_is_rejected_with_its_reason(case: str, value: Any, reason: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        decode_message(_pack(value))
    assert reason in str(caught.value), (case, str(caught.value))


def test_trailing_bytes_are_rejected() -> None:
    frame = encode_message(TimeoutNow(src="a", dst="b", term=1))
    with pytest.raises(ProtocolError, match="undecodable"):
        decode_message(frame + b"\x00")


def test_frame_size_limit_applies_on_both_sides() -> None:
    big = InstallSnapshot(src="a", dst="b", term=1, offset=0, data=b"x" * 2000, done=False,
                          meta=SnapshotMeta(index=1, term=1, config=Configuration(voters=frozenset({"a"}))))
    frame = encode_message(big)
    with pytest.raises(ProtocolError, match="max_frame_bytes=1000"):
        decode_message(frame, max_frame_bytes=1000)
    with pytest.raises(ProtocolError, match="max_frame_bytes=1000"):
        encode_message(big, max_frame_bytes=1000)
    assert decode_message(frame, max_frame_bytes=len(frame)) == big


def test_non_bytes_input_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="expected bytes"):
        decode_message("not bytes")  # type: ignore[arg-type]


def test_encoding_a_non_message_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match="not a Raft message"):
        encode_message(HardState())  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="cannot encode"):
        encode_message(TimeoutNow(src="a", dst="b", term=2**70))


@pytest.mark.parametrize(("decode", "value"), [
    (decode_entry, [0, 1, 0, b""]),  # term 0 is the empty log's sentinel, never an entry's
    (decode_entry, [1, 0, 0, b""]),
    (decode_entry, [1, 1, 0, "s"]),
    (decode_entry, [1, True, 0, b""]),
    (decode_hard_state, [1, "", 0]),
    (decode_hard_state, [1, None, -1]),
    (decode_hard_state, [1, None]),
    (decode_snapshot_meta, [1, 1, ["a"], ["a"]]),
    (decode_snapshot_meta, [1, 1, [1], []]),
])
def test_malformed_storage_values_are_rejected(decode: Any, value: Any) -> None:
    with pytest.raises(ProtocolError):
        decode(_pack(value))
