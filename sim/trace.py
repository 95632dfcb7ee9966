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
_NAMES_MAX = 4096  # JSON of node ids and event kinds remembered (a few dozen in practice)


class TraceWriter:
    def __init__(self, sink: IO[str] | None = None, *, keep: bool = False) -> None:
        self._sink = sink
        self._hash = hashlib.sha256()
        self._pending: list[str] = []  # lines not yet hashed
        self.lines = 0
        self.kept: list[dict[str, Any]] | None = [] if keep else None
        self._names: dict[str, str] = {}  # node id or event kind -> its JSON string

    def write(self, true_ms: float, node: str, local_ms: float, kind: str, fields: dict[str, Any]) -> None:
        t, local = round(true_ms, 3), round(local_ms, 3)
        names = self._names
        node_json, kind_json = names.get(node), names.get(kind)
        # (t - t) + (local - local) is 0.0 for finite times, NaN for an infinite or NaN one.
        if node_json is None or kind_json is None or (t - t) + (local - local) != 0.0 or (
                "t" in fields or "node" in fields or "local" in fields or "kind" in fields):
            line = self._slow_line(t, node, local, kind, fields)
        else:
            # The four fixed fields formatted here, the event's own by the encoder: the bytes
            # the encoder gives for the whole record (a finite float is its repr, a name its
            # `encode_basestring_ascii`), one dict and ~0.5 us fewer per line.
            line = f'{{"t":{t!r},"node":{node_json},"local":{local!r},"kind":{kind_json}'
            line = line + "," + "".join(_chunks(fields, 0))[1:] if fields else line + "}"
        pending = self._pending
        pending.append(line)
        self.lines += 1
        if len(pending) >= _BATCH:
            self._flush()
        if self._sink is not None:
            self._sink.write(line)
            self._sink.write("\n")
        if self.kept is not None:
            record: dict[str, Any] = {"t": t, "node": node, "local": local, "kind": kind}
            record.update(fields)
            self.kept.append(record)

    def _slow_line(self, t: float, node: str, local: float, kind: str, fields: dict[str, Any]) -> str:
        """The whole record through the encoder; learns the JSON of names it had not met."""
        names = self._names
        if len(names) < _NAMES_MAX and type(node) is str and type(kind) is str:
            names.setdefault(node, encode_basestring_ascii(node))
            names.setdefault(kind, encode_basestring_ascii(kind))
        record: dict[str, Any] = {"t": t, "node": node, "local": local, "kind": kind}
        record.update(fields)
        return "".join(_chunks(record, 0))

    def _flush(self) -> None:
        pending = self._pending
        if pending:
            pending.append("")  # so the join ends with the last line's newline
            self._hash.update("\n".join(pending).encode())
            pending.clear()

    def sha256(self) -> str:
        self._flush()
        return self._hash.hexdigest()


class NullTrace(TraceWriter):
    """Writes and hashes nothing: for batches of runs that need no trace (Figure 16's trials),
    where formatting every event would cost more than Raft itself. Here, not in the caller, so
    that it is compiled with `TraceWriter` (sim/native.py): compiled classes refuse interpreted
    subclasses."""

    def write(self, true_ms: float, node: str, local_ms: float, kind: str, fields: dict[str, Any]) -> None:
        return None


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
