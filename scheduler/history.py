"""Compact storage for a job's short histories (its last outcomes and last executions).

Why: every job keeps up to 32 outcomes and 16 ended executions, and after a while all of them
are full. As Python objects that was ~7 KB per job (an `Outcome` or a list per row, plus an
int object per time), 700 MB for 100k jobs. Here a history is one `bytes` object: the rows as
concatenated msgpack arrays, the repeated texts (outcome kind, reason, trigger; execution end
state) replaced by small codes from fixed vocabularies. A fired tick costs ~15 bytes.

Only the in-memory form changes: readers get the same `Outcome`s and `[tick, slot, state,
attempts]` lists as before, so the snapshot and the API are unchanged. Texts outside the
vocabularies are stored inline, so correctness never depends on the vocabulary lists.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any, Final

import msgpack

from scheduler.results import Outcome

__all__ = ["append_row", "decode_executions", "decode_outcomes", "encode_execution",
           "encode_outcome", "execution_row", "outcome_row", "pack_rows"]

_KINDS: Final = ("fired", "skipped", "missed")
_REASONS: Final = ("", "late", "disabled", "overlap", "superseded")
_TRIGGERS: Final = ("schedule", "run-now", "parent")
OUTCOME_TEXTS: Final = tuple(itertools.product(_KINDS, _REASONS, _TRIGGERS))
_OUTCOME_CODES: Final = {texts: code for code, texts in enumerate(OUTCOME_TEXTS)}
EXECUTION_STATES: Final = ("succeeded", "failed", "unreachable", "waiting", "active")
_EXECUTION_CODES: Final = {state: code for code, state in enumerate(EXECUTION_STATES)}

_pack = msgpack.Packer(use_bin_type=True).pack


def encode_outcome(outcome: Outcome, job: str) -> bytes:
    row: bytes = _pack(outcome_row(outcome, job))
    return row


def outcome_row(outcome: Outcome, job: str) -> list[Any]:
    """[first, last - first, count, slots, code], or the texts inline when they are not in
    the vocabulary (and the job name too if it is not the owner's)."""
    o = outcome
    code = _OUTCOME_CODES.get((o.kind, o.reason, o.trigger))
    if code is not None and o.job == job:
        return [o.first_ms, o.last_ms - o.first_ms, o.count, o.slots, code]
    row: list[Any] = [o.first_ms, o.last_ms - o.first_ms, o.count, o.slots, o.kind, o.reason,
                      o.trigger]
    if o.job != job:
        row.append(o.job)
    return row


def decode_outcomes(blob: bytes, job: str) -> list[Outcome]:
    out: list[Outcome] = []
    for row in _rows(blob):
        first, span, count, slots = row[0], row[1], row[2], row[3]
        if len(row) == 5:
            kind, reason, trigger = OUTCOME_TEXTS[row[4]]
            out.append(Outcome(job, kind, first, first + span, count, reason, trigger, slots))
        else:
            owner = row[7] if len(row) == 8 else job
            out.append(Outcome(owner, row[4], first, first + span, count, row[5], row[6], slots))
    return out


def encode_execution(tick: int, slot: int, state: str, attempts: int) -> bytes:
    row: bytes = _pack(execution_row(tick, slot, state, attempts))
    return row


def execution_row(tick: int, slot: int, state: str, attempts: int) -> list[Any]:
    code = _EXECUTION_CODES.get(state)
    return [tick, slot, state if code is None else code, attempts]


def pack_rows(rows: Iterable[list[Any]], keep: int | None = None) -> tuple[bytes, int]:
    """The history of the last `keep` rows (all if None), packed in one buffer (a restore
    writes 100k histories: no short-lived bytes object per row between the long-lived ones)."""
    kept = list(rows)
    if keep is not None:
        kept = kept[len(kept) - keep:] if len(kept) > keep else kept
    packer = msgpack.Packer(use_bin_type=True, autoreset=False)
    for row in kept:
        packer.pack(row)
    return packer.bytes(), len(kept)


def decode_executions(blob: bytes) -> list[list[Any]]:
    return [[tick, slot, EXECUTION_STATES[state] if isinstance(state, int) else state, attempts]
            for tick, slot, state, attempts in _rows(blob)]


def append_row(blob: bytes, count: int, row: bytes, keep: int) -> tuple[bytes, int]:
    """The history with `row` appended and the oldest rows dropped beyond `keep`."""
    blob += row
    count += 1
    while count > keep:
        unpacker = msgpack.Unpacker()
        unpacker.feed(blob[:64])  # a row of ours is shorter, unless its texts are inline
        try:
            unpacker.skip()
        except msgpack.OutOfData:
            unpacker = msgpack.Unpacker()
            unpacker.feed(blob)
            unpacker.skip()
        blob = blob[unpacker.tell():]
        count -= 1
    return blob, count


def _rows(blob: bytes) -> Iterator[Any]:
    if not blob:
        return iter(())
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(blob)
    return iter(unpacker)
