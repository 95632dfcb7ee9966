"""The trace: one JSON object per line, the same schema for simulated and real nodes.

Fields: `t` (true ms, when known), `node`, `local` (the node's clock, ms), `kind`, then the
event's own fields. Lines are built with sorted-free, insertion-ordered dicts and fixed float
rounding, so the same seed yields the same bytes, and `sha256` fingerprints a run: it is the
SHA-256 of exactly the bytes a `--trace` file holds.

Speed (papers/perf/README.md, "sim"): a line used to cost ~3 us, a fifth of the simulator's
time at 100 proposals/s. `json.JSONEncoder.encode` builds a C encoder object on every call,
so we build one once; and lines are hashed in batches (SHA-256 is a stream: hashing
"a\\nb\\n" at once or line by line gives the same digest), so the hash stays byte-identical.
"""

from __future__ import annotations

import hashlib
import json
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import IO, Any

_BATCH = 256  # lines hashed per update


class TraceWriter:
    def __init__(self, sink: IO[str] | None = None, *, keep: bool = False) -> None:
        self._sink = sink
        self._hash = hashlib.sha256()
        self._pending: list[str] = []  # lines not yet hashed
        self.lines = 0
        self.kept: list[dict[str, Any]] | None = [] if keep else None

    def write(self, true_ms: float, node: str, local_ms: float, kind: str, fields: dict[str, Any]) -> None:
        record: dict[str, Any] = {"t": round(true_ms, 3), "node": node, "local": round(local_ms, 3), "kind": kind}
        record.update(fields)
        line = "".join(_chunks(record, 0))
        pending = self._pending
        pending.append(line)
        self.lines += 1
        if len(pending) >= _BATCH:
            self._flush()
        if self._sink is not None:
            self._sink.write(line)
            self._sink.write("\n")
        if self.kept is not None:
            self.kept.append(record)

    def _flush(self) -> None:
        pending = self._pending
        if pending:
            pending.append("")  # so the join ends with the last line's newline
            self._hash.update("\n".join(pending).encode())
            pending.clear()

    def sha256(self) -> str:
        self._flush()
        return self._hash.hexdigest()


def _default(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"not JSON serialisable in a trace: {type(value).__name__}")


def read_trace(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def _make_chunks() -> Any:
    """`chunks(record, 0)` -> the pieces of what `json.JSONEncoder(separators=(",", ":"),
    default=_default).encode(record)` returns, with the encoder built once: the same arguments
    to the same C encoder (no circular-reference markers: trace records are fresh dicts), hence
    the same bytes."""
    if c_make_encoder is None:  # a Python without the C accelerator
        encoder = json.JSONEncoder(separators=(",", ":"), default=_default)
        return lambda record, _level: (encoder.encode(record),)
    return c_make_encoder(None, _default, encode_basestring_ascii, None, ":", ",", False, False, True)


_chunks = _make_chunks()
