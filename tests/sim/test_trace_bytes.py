"""`TraceWriter` formats a line's fixed fields itself (sim/trace.py): every line must still be
the bytes `json.dumps(record, separators=(",", ":"), default=...)` gives, whatever the record."""

from __future__ import annotations

import hashlib
import io
import json
import math
from typing import Any

from sim.trace import TraceWriter, _default

RECORDS: list[tuple[float, Any, float, Any, dict[str, Any]]] = [
    (12345.678912, "n3", 12340.1234567, "commit", {"index": 123, "term": 2}),
    (12345.678912, "n3", 12340.1234567, "commit", {"index": 124, "term": 2}),  # names cached now
    (0.0, "n1", -0.0001, "start", {"lifetime": 1}),  # rounds to -0.0
    (1e-5, "n1", 5e-4, "role", {"role": "leader", "term": 1, "leader": None, "reason": "won"}),
    (2.5, "net", 2.5, "partition", {"sides": [["n1"], ["n2", "n3"]], "one_way": False}),
    (3.0, "n2", 3.0, "heal", {}),
    (math.inf, "n2", 4.0, "odd", {"x": 1}),  # non-finite true time
    (5.0, "n2", math.nan, "odd", {"x": 1}),  # non-finite local time
    (6.0, "n2", 6.0, "clash", {"node": "n9", "kind": "other", "t": 1, "local": 2}),  # fixed names
    (7.0, "nœud-é", 7.0, "ünï", {"data": b"\x00\xff", "set": {"b", "a"}}),  # non-ASCII, default()
    (8.0, None, 8.0, "nameless", {"k": 1}),  # a node that is not a str
    (1e17, "n1", 123456789.0004, "big", {"f": 0.1, "neg": -3, "flag": True}),
    (9, "n1", 9, "ints", {"v": 2**70}),  # int times
]


def expected_line(t: float, node: Any, local: float, kind: Any, fields: dict[str, Any]) -> str:
    record: dict[str, Any] = {"t": round(t, 3), "node": node, "local": round(local, 3), "kind": kind}
    record.update(fields)
    return json.dumps(record, separators=(",", ":"), default=_default)


def test_lines_and_hash_are_the_encoders_bytes() -> None:
    sink = io.StringIO()
    writer = TraceWriter(sink, keep=True)
    for record in RECORDS:
        writer.write(*record)
    lines = [expected_line(*record) for record in RECORDS]
    assert sink.getvalue().splitlines() == lines
    assert writer.sha256() == hashlib.sha256("".join(line + "\n" for line in lines).encode()).hexdigest()
    assert writer.kept is not None and len(writer.kept) == len(RECORDS)
    for kept, line in zip(writer.kept, lines):
        assert json.dumps(kept, separators=(",", ":"), default=_default) == line
