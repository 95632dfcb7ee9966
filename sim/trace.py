"""The trace: one JSON object per line, the same schema for simulated and real nodes.

Fields: `t` (true ms, when known), `node`, `local` (the node's clock, ms), `kind`, then the
event's own fields. Lines are built with sorted-free, insertion-ordered dicts and fixed float
rounding, so the same seed yields the same bytes, and `sha256` fingerprints a run.
"""

from __future__ import annotations

import hashlib
import json
from typing import IO, Any


class TraceWriter:
    def __init__(self, sink: IO[str] | None = None, *, keep: bool = False) -> None:
        self._sink = sink
        self._hash = hashlib.sha256()
        self.lines = 0
        self.kept: list[dict[str, Any]] | None = [] if keep else None

    def write(self, true_ms: float, node: str, local_ms: float, kind: str, fields: dict[str, Any]) -> None:
        record: dict[str, Any] = {"t": round(true_ms, 3), "node": node, "local": round(local_ms, 3), "kind": kind}
        record.update(fields)
        line = _ENCODER.encode(record)  # json.dumps(record, separators=..., default=_default) builds one per call
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        self.lines += 1
        if self._sink is not None:
            self._sink.write(line)
            self._sink.write("\n")
        if self.kept is not None:
            self.kept.append(record)

    def sha256(self) -> str:
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


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_default)
