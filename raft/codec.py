"""The wire and disk format: msgpack arrays for every Raft message, entry, hard state and
snapshot meta.

Why this shape:
  * A frame is one msgpack array whose first element is the message's type tag, a small
    positive int, so it costs one byte; fields follow in declaration order (see `FIELDS`).
    Arrays, not maps: field names would double the size of a heartbeat.
  * Bytes stay bytes (`use_bin_type`), node ids are str; an entry is `[term, index, kind, data]`.
  * Decoding is strict: a frame from a peer is untrusted input, so anything that is not
    exactly what `encode_message` produces (wrong tag or arity, a str or a bool where an int
    belongs, an int outside its range, nested garbage, truncated bytes, a frame larger than
    `max_frame_bytes`) raises `ProtocolError` and nothing else. Entries must also be
    contiguous after `prev_log_index` with terms that never decrease and never exceed the
    message's term, because the core relies on that shape and must not crash on a peer's bug.
  * Fast: each message type has a hand-written decoder that does one tuple unpack and a single
    boolean check; only when that check fails do we walk `FIELDS` to say which field is wrong.

Encoding trusts its input (our own, constructed dataclasses); decoding trusts nothing.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any, Final

import msgpack

from raft.errors import ProtocolError
from raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Configuration,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    SnapshotMeta,
    TimeoutNow,
)

__all__ = [
    "FIELDS", "FRAME_BYTES_MAX_DEFAULT", "INT_MAX", "NODE_ID_CHARS_MAX", "TAGS",
    "decode_entry", "decode_hard_state", "decode_message", "decode_snapshot_meta",
    "encode_entry", "encode_hard_state", "encode_message", "encode_snapshot_meta",
]

FRAME_BYTES_MAX_DEFAULT: Final = 16 * 1024 * 1024
INT_MAX: Final = (1 << 63) - 1  # terms, indexes and offsets fit a signed 64-bit int (and LMDB keys)
NODE_ID_CHARS_MAX: Final = 255

# The type tag of each message. Never renumber: the tag is the wire format.
TAGS: Final[dict[type, int]] = {
    RequestVote: 1,
    RequestVoteResponse: 2,
    AppendEntries: 3,
    AppendEntriesResponse: 4,
    InstallSnapshot: 5,
    InstallSnapshotResponse: 6,
    TimeoutNow: 7,
}

# Field kinds, used to explain a rejected frame (and by tests to check coverage of messages.py).
ID, NAT, NAT_OR_MINUS_ONE, BOOL, BYTES, ENTRIES, META = (
    "node id", "int", "int or -1", "bool", "bytes", "entries", "snapshot meta")

# Frame layout after the tag, in order. Tests assert these are exactly each dataclass's fields,
# so a field added to messages.py cannot be silently dropped on the wire.
FIELDS: Final[dict[type, tuple[tuple[str, str], ...]]] = {
    RequestVote: (("src", ID), ("dst", ID), ("term", NAT), ("last_log_index", NAT),
                  ("last_log_term", NAT), ("pre_vote", BOOL), ("transfer", BOOL)),
    RequestVoteResponse: (("src", ID), ("dst", ID), ("term", NAT), ("granted", BOOL),
                          ("pre_vote", BOOL)),
    AppendEntries: (("src", ID), ("dst", ID), ("term", NAT), ("prev_log_index", NAT),
                    ("prev_log_term", NAT), ("commit", NAT), ("read_context", NAT),
                    ("entries", ENTRIES)),
    AppendEntriesResponse: (("src", ID), ("dst", ID), ("term", NAT), ("success", BOOL),
                            ("match_index", NAT), ("reject_index", NAT_OR_MINUS_ONE),
                            ("conflict_index", NAT), ("conflict_term", NAT),
                            ("read_context", NAT)),
    InstallSnapshot: (("src", ID), ("dst", ID), ("term", NAT), ("meta", META), ("offset", NAT),
                      ("data", BYTES), ("done", BOOL)),
    InstallSnapshotResponse: (("src", ID), ("dst", ID), ("term", NAT), ("index", NAT),
                              ("next_offset", NAT_OR_MINUS_ONE), ("success", BOOL)),
    TimeoutNow: (("src", ID), ("dst", ID), ("term", NAT)),
}

_KINDS: Final = tuple(EntryKind)
assert [kind.value for kind in _KINDS] == list(range(len(_KINDS))), "EntryKind values must be 0..n-1"
# `_decode_entries` fills Entry's slots directly (skipping the frozen dataclass __init__, which
# is twice as slow and an AppendEntries may carry hundreds); it must know every field.
assert [f.name for f in dataclasses.fields(Entry)] == ["term", "index", "kind", "data"]


def _slot_setter(name: str) -> Callable[[Entry, Any], None]:
    """The slot descriptor's setter, which a frozen dataclass's __setattr__ does not guard."""
    setter: Callable[[Entry, Any], None] = getattr(Entry, name).__set__
    return setter


_new = object.__new__


def _slots_writable() -> bool:
    """Whether entries can be built slot by slot: not when sim/native.py's compiled build made
    Entry a native class (it refuses `object.__new__`); then the decoder calls Entry(...)."""
    try:
        _new(Entry)
    except TypeError:
        return False
    return True


_SLOTS_WRITABLE = _slots_writable()
_set_term, _set_index, _set_kind, _set_data = (
    _slot_setter(name) for name in ("term", "index", "kind", "data"))


# ---- encoding -------------------------------------------------------------------------------

_PACKERS = threading.local()


def pack(obj: Any) -> bytes:
    """msgpack with bin types, from a Packer kept per thread: `msgpack.packb` builds a Packer
    per call, two thirds of the time it takes to encode a small entry (0.36 vs 0.12 us here).
    Per thread, since a save may run in a worker thread (RuntimeOptions.save_in_thread)."""
    try:
        packer = _PACKERS.pack
    except AttributeError:
        packer = _PACKERS.pack = msgpack.Packer(use_bin_type=True).pack
    packed: bytes = packer(obj)
    return packed


def _meta_fields(meta: SnapshotMeta) -> tuple[int, int, list[str], list[str]]:
    # Sorted, so that equal metas encode to equal bytes (snapshot checksums, golden traces).
    return (meta.index, meta.term, sorted(meta.config.voters), sorted(meta.config.learners))


def _fields_append_entries(m: AppendEntries) -> tuple[Any, ...]:
    return (3, m.src, m.dst, m.term, m.prev_log_index, m.prev_log_term, m.commit, m.read_context,
            [(e.term, e.index, e.kind, e.data) for e in m.entries])


_ENCODERS: Final[dict[type, Callable[[Any], tuple[Any, ...]]]] = {
    RequestVote: lambda m: (1, m.src, m.dst, m.term, m.last_log_index, m.last_log_term,
                            m.pre_vote, m.transfer),
    RequestVoteResponse: lambda m: (2, m.src, m.dst, m.term, m.granted, m.pre_vote),
    AppendEntries: _fields_append_entries,
    AppendEntriesResponse: lambda m: (4, m.src, m.dst, m.term, m.success, m.match_index,
                                      m.reject_index, m.conflict_index, m.conflict_term,
                                      m.read_context),
    InstallSnapshot: lambda m: (5, m.src, m.dst, m.term, _meta_fields(m.meta), m.offset, m.data,
                                m.done),
    InstallSnapshotResponse: lambda m: (6, m.src, m.dst, m.term, m.index, m.next_offset,
                                        m.success),
    TimeoutNow: lambda m: (7, m.src, m.dst, m.term),
}


def encode_message(message: Message, max_frame_bytes: int = FRAME_BYTES_MAX_DEFAULT) -> bytes:
    """One frame for `message`. Refuses (ProtocolError) a frame the peer's decoder would refuse
    for its size, so the limit is checked on both sides of the wire."""
    encoder = _ENCODERS.get(type(message))
    if encoder is None:
        raise ProtocolError(f"cannot encode {type(message).__name__}: not a Raft message")
    try:
        frame = pack(encoder(message))
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolError(f"cannot encode {message!r}: {exc}") from exc
    if len(frame) > max_frame_bytes:
        raise ProtocolError(f"{type(message).__name__} frame of {len(frame)} bytes exceeds "
                            f"max_frame_bytes={max_frame_bytes}")
    return frame


def encode_entry(entry: Entry) -> bytes:
    return pack((entry.term, entry.index, entry.kind, entry.data))


def encode_hard_state(hard_state: HardState) -> bytes:
    return pack((hard_state.term, hard_state.vote, hard_state.commit))


def encode_snapshot_meta(meta: SnapshotMeta) -> bytes:
    return pack(_meta_fields(meta))


# ---- decoding -------------------------------------------------------------------------------

def _unpack(data: bytes, max_frame_bytes: int, what: str) -> Any:
    """msgpack with every limit set from `max_frame_bytes`; any failure becomes ProtocolError.
    Catching Exception is deliberate: this is third-party code parsing untrusted bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ProtocolError(f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) > max_frame_bytes:
        raise ProtocolError(f"{what}: {len(data)} bytes exceeds max_frame_bytes={max_frame_bytes}")
    try:
        return msgpack.unpackb(
            data, use_list=False, raw=False, strict_map_key=True,
            max_str_len=max_frame_bytes, max_bin_len=max_frame_bytes,
            max_array_len=max_frame_bytes, max_map_len=0, max_ext_len=0,
        )
    except Exception as exc:  # noqa: BLE001 - see docstring
        raise ProtocolError(f"{what}: undecodable msgpack ({len(data)} bytes): {exc}") from exc


def decode_message(data: bytes, max_frame_bytes: int = FRAME_BYTES_MAX_DEFAULT) -> Message:
    """The message in one frame, fully validated; ProtocolError for anything else."""
    frame = _unpack(data, max_frame_bytes, "frame")
    if type(frame) is not tuple or not frame:
        raise ProtocolError(f"frame must be a non-empty array, got {_show(frame)}")
    tag = frame[0]
    if type(tag) is not int or not 1 <= tag <= len(_DECODERS):
        raise ProtocolError(f"frame has unknown type tag {_show(tag)}")
    message = _DECODERS[tag - 1](frame)
    assert TAGS[type(message)] == tag
    return message


def _ids_ok(src: Any, dst: Any) -> bool:
    return (type(src) is str and type(dst) is str
            and 0 < len(src) <= NODE_ID_CHARS_MAX and 0 < len(dst) <= NODE_ID_CHARS_MAX)


def _decode_request_vote(f: tuple[Any, ...]) -> RequestVote:
    if len(f) == 8:
        _, src, dst, term, lli, llt, pre_vote, transfer = f
        if (_ids_ok(src, dst) and type(term) is type(lli) is type(llt) is int
                and 0 <= term <= INT_MAX and 0 <= lli <= INT_MAX and 0 <= llt <= INT_MAX
                and type(pre_vote) is type(transfer) is bool):
            return RequestVote(src=src, dst=dst, term=term, last_log_index=lli,
                               last_log_term=llt, pre_vote=pre_vote, transfer=transfer)
    raise _explain(RequestVote, f)


def _decode_request_vote_response(f: tuple[Any, ...]) -> RequestVoteResponse:
    if len(f) == 6:
        _, src, dst, term, granted, pre_vote = f
        if (_ids_ok(src, dst) and type(term) is int and 0 <= term <= INT_MAX
                and type(granted) is type(pre_vote) is bool):
            return RequestVoteResponse(src=src, dst=dst, term=term, granted=granted,
                                       pre_vote=pre_vote)
    raise _explain(RequestVoteResponse, f)


def _decode_append_entries(f: tuple[Any, ...]) -> AppendEntries:
    if len(f) == 9:
        _, src, dst, term, pli, plt, commit, read_context, raw = f
        if (_ids_ok(src, dst) and type(term) is type(pli) is type(plt) is int
                and type(commit) is type(read_context) is int and type(raw) is tuple
                and 0 <= term <= INT_MAX and 0 <= pli <= INT_MAX and 0 <= plt <= term
                and 0 <= commit <= INT_MAX and 0 <= read_context <= INT_MAX):
            entries = _decode_entries(raw, pli, plt, term)
            return AppendEntries(src=src, dst=dst, term=term, prev_log_index=pli,
                                 prev_log_term=plt, entries=entries, commit=commit,
                                 read_context=read_context)
    raise _explain(AppendEntries, f)


def _decode_entries(raw: tuple[Any, ...], prev_index: int, prev_term: int,
                    term_max: int) -> tuple[Entry, ...]:
    """Entries must follow `prev_index` without gaps, with terms in [max(prev_term, 1), term_max]
    that never decrease: the shape of any leader's log (Log Matching, §5.3). The hot loop of
    the codec, hence the local aliases and the direct slot writes (every field is checked
    first, so this builds exactly what Entry(...) would)."""
    entries: list[Entry] = []
    append, kinds, kinds_count = entries.append, _KINDS, len(_KINDS)
    new, set_term, set_index, set_kind, set_data = _new, _set_term, _set_index, _set_kind, _set_data
    index, term_min = prev_index, max(prev_term, 1)
    for item in raw:
        index += 1
        if type(item) is tuple and len(item) == 4:
            term, got_index, kind, data = item
            if (type(term) is type(got_index) is type(kind) is int and type(data) is bytes
                    and got_index == index and term_min <= term <= term_max
                    and 0 <= kind < kinds_count):
                if _SLOTS_WRITABLE:
                    entry = new(Entry)
                    set_term(entry, term)
                    set_index(entry, index)
                    set_kind(entry, kinds[kind])
                    set_data(entry, data)
                else:
                    entry = Entry(term=term, index=index, kind=kinds[kind], data=data)
                append(entry)
                term_min = term
                continue
        raise _explain_entry(item, index, term_min, term_max)
    if index > INT_MAX:
        raise ProtocolError(f"entries run past the largest index {INT_MAX}")
    return tuple(entries)


def _decode_append_entries_response(f: tuple[Any, ...]) -> AppendEntriesResponse:
    if len(f) == 10:
        _, src, dst, term, success, match, reject, c_index, c_term, read_context = f
        if (_ids_ok(src, dst) and type(success) is bool
                and type(term) is type(match) is type(reject) is int
                and type(c_index) is type(c_term) is type(read_context) is int
                and 0 <= term <= INT_MAX and 0 <= match <= INT_MAX and -1 <= reject <= INT_MAX
                and 0 <= c_index <= INT_MAX and 0 <= c_term <= INT_MAX
                and 0 <= read_context <= INT_MAX):
            return AppendEntriesResponse(src=src, dst=dst, term=term, success=success,
                                         match_index=match, reject_index=reject,
                                         conflict_index=c_index, conflict_term=c_term,
                                         read_context=read_context)
    raise _explain(AppendEntriesResponse, f)


def _decode_install_snapshot(f: tuple[Any, ...]) -> InstallSnapshot:
    if len(f) == 8:
        _, src, dst, term, raw_meta, offset, data, done = f
        if (_ids_ok(src, dst) and type(term) is type(offset) is int and type(data) is bytes
                and type(done) is bool and 0 <= term <= INT_MAX and 0 <= offset <= INT_MAX):
            return InstallSnapshot(src=src, dst=dst, term=term, meta=_meta(raw_meta),
                                   offset=offset, data=data, done=done)
    raise _explain(InstallSnapshot, f)


def _decode_install_snapshot_response(f: tuple[Any, ...]) -> InstallSnapshotResponse:
    if len(f) == 7:
        _, src, dst, term, index, next_offset, success = f
        if (_ids_ok(src, dst) and type(term) is type(index) is type(next_offset) is int
                and type(success) is bool and 0 <= term <= INT_MAX and 0 <= index <= INT_MAX
                and -1 <= next_offset <= INT_MAX):
            return InstallSnapshotResponse(src=src, dst=dst, term=term, index=index,
                                           next_offset=next_offset, success=success)
    raise _explain(InstallSnapshotResponse, f)


def _decode_timeout_now(f: tuple[Any, ...]) -> TimeoutNow:
    if len(f) == 4:
        _, src, dst, term = f
        if _ids_ok(src, dst) and type(term) is int and 0 <= term <= INT_MAX:
            return TimeoutNow(src=src, dst=dst, term=term)
    raise _explain(TimeoutNow, f)


# Indexed by tag - 1.
_DECODERS: Final[tuple[Callable[[tuple[Any, ...]], Message], ...]] = (
    _decode_request_vote, _decode_request_vote_response, _decode_append_entries,
    _decode_append_entries_response, _decode_install_snapshot,
    _decode_install_snapshot_response, _decode_timeout_now,
)
assert len(_DECODERS) == len(TAGS) == max(TAGS.values())


def _meta(raw: Any) -> SnapshotMeta:
    """A snapshot meta `[index, term, voters, learners]`; ids unique, no voter also a learner."""
    if type(raw) is tuple and len(raw) == 4:
        index, term, voters, learners = raw
        if (type(index) is type(term) is int and 0 <= index <= INT_MAX and 0 <= term <= INT_MAX
                and _id_list_ok(voters) and _id_list_ok(learners)):
            voter_set, learner_set = frozenset(voters), frozenset(learners)
            if voter_set & learner_set:
                raise ProtocolError(f"snapshot meta: nodes both voter and learner: "
                                    f"{sorted(voter_set & learner_set)}")
            return SnapshotMeta(index=index, term=term,
                                config=Configuration(voters=voter_set, learners=learner_set))
    raise ProtocolError(f"snapshot meta must be [index >= 0, term >= 0, [unique node ids], "
                        f"[unique node ids]], got {_show(raw)}")


def _id_list_ok(ids: Any) -> bool:
    return (type(ids) is tuple
            and all(type(i) is str and 0 < len(i) <= NODE_ID_CHARS_MAX for i in ids)
            and len(frozenset(ids)) == len(ids))


def decode_entry(data: bytes, max_frame_bytes: int = FRAME_BYTES_MAX_DEFAULT) -> Entry:
    raw = _unpack(data, max_frame_bytes, "entry")
    if type(raw) is tuple and len(raw) == 4 and type(raw[1]) is int and 1 <= raw[1] <= INT_MAX:
        return _decode_entries((raw,), raw[1] - 1, 1, INT_MAX)[0]
    raise ProtocolError(f"entry must be [term >= 1, index >= 1, kind, data], got {_show(raw)}")


def decode_hard_state(data: bytes) -> HardState:
    raw = _unpack(data, FRAME_BYTES_MAX_DEFAULT, "hard state")
    if type(raw) is tuple and len(raw) == 3:
        term, vote, commit = raw
        vote_ok = vote is None or (type(vote) is str and 0 < len(vote) <= NODE_ID_CHARS_MAX)
        if (type(term) is type(commit) is int and vote_ok
                and 0 <= term <= INT_MAX and 0 <= commit <= INT_MAX):
            return HardState(term=term, vote=vote, commit=commit)
    raise ProtocolError(f"hard state must be [term >= 0, node id or nil, commit >= 0], "
                        f"got {_show(raw)}")


def decode_snapshot_meta(data: bytes) -> SnapshotMeta:
    return _meta(_unpack(data, FRAME_BYTES_MAX_DEFAULT, "snapshot meta"))


# ---- explaining a rejected frame (slow path only) ---------------------------------------------

def _show(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


def _field_problem(kind: str, value: Any) -> str | None:
    """Why `value` is not a valid `kind`, or None when it is (shape only, for messages)."""
    t = type(value)
    if kind == ID:
        ok = t is str and 0 < len(value) <= NODE_ID_CHARS_MAX
        return None if ok else f"must be a node id (1..{NODE_ID_CHARS_MAX} chars)"
    if kind in (NAT, NAT_OR_MINUS_ONE):
        low = 0 if kind == NAT else -1
        return None if t is int and low <= value <= INT_MAX else f"must be an int in [{low}, 2**63-1]"
    if kind == BOOL:
        return None if t is bool else "must be a bool"
    if kind == BYTES:
        return None if t is bytes else "must be bytes"
    if kind == ENTRIES:
        return None if t is tuple else "must be an array of [term, index, kind, data]"
    assert kind == META, kind
    return None if t is tuple else "must be [index, term, voters, learners]"


def _explain(cls: type, frame: tuple[Any, ...]) -> ProtocolError:
    spec = FIELDS[cls]
    name = cls.__name__
    if len(frame) != len(spec) + 1:
        return ProtocolError(f"{name} frame needs {len(spec) + 1} elements (tag + "
                             f"{', '.join(n for n, _ in spec)}), got {len(frame)}")
    for (field, kind), value in zip(spec, frame[1:]):
        problem = _field_problem(kind, value)
        if problem is not None:
            return ProtocolError(f"{name}.{field} {problem}, got {_show(value)}")
    if cls is AppendEntries and frame[5] > frame[3]:
        return ProtocolError(f"AppendEntries.prev_log_term {frame[5]} exceeds its term {frame[3]}")
    return ProtocolError(f"{name} frame rejected: {_show(frame)}")  # pragma: no cover


def _explain_entry(item: Any, index: int, term_min: int, term_max: int) -> ProtocolError:
    shape = (type(item) is tuple and len(item) == 4 and type(item[0]) is int
             and type(item[1]) is int and type(item[2]) is int and type(item[3]) is bytes)
    if not shape:
        return ProtocolError(f"entry must be [term: int, index: int, kind: int, data: bytes], "
                             f"got {_show(item)}")
    term, got_index, kind, _ = item
    if got_index != index:
        return ProtocolError(f"entry index {got_index} breaks the sequence: expected {index}")
    if not term_min <= term <= term_max:
        return ProtocolError(f"entry {index} has term {term}, outside [{term_min}, {term_max}] "
                             f"(terms start at 1, never decrease, never pass the message's term)")
    return ProtocolError(f"entry {index} has unknown kind {kind} (known: 0..{len(_KINDS) - 1})")
