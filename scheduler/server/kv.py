"""`KVStore`: versioned registers behind `/v1/kv/{key}`, replicated like every other command.

Why it exists: a Jepsen-style register workload needs reads, writes and compare-and-set on a
few keys, checked for linearizability (jepsen_like/). It is also the cheapest command for
measuring raw write latency, since applying it costs almost nothing.

Semantics (docs/operations.md repeats them for clients):
  * A value is any JSON document, stored as its canonical text (sorted keys, no spaces), so
    two nodes compare values byte for byte.
  * A key's `version` is the Raft index of the entry that last wrote it: unique, increasing,
    and the same on every node. A missing key has version 0.
  * `put` may carry `expect_version` (HTTP `If-Match`) and/or `expect_value`; the write happens
    only if every given expectation holds, otherwise the result says `ok: false` and shows the
    current value and version. `expect_version=0` means "only if absent".
Everything here is deterministic: the only inputs are the command and its log index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import msgpack

__all__ = ["KEY_BYTES_MAX", "KVStore", "KeyValue", "VALUE_BYTES_MAX", "canonical_json",
           "encode_delete", "encode_put"]

KEY_BYTES_MAX: Final = 256
VALUE_BYTES_MAX: Final = 64 * 1024
KEYS_MAX: Final = 100_000  # a bound on replicated memory; a put of a new key beyond it fails
_ABSENT: Final = -1  # "no expectation" on the wire (versions are >= 0)


@dataclass(frozen=True, slots=True)
class KeyValue:
    value: str  # canonical JSON text
    version: int


def canonical_json(value: Any) -> str:
    """The one text form of a JSON value; raises ValueError for NaN/Infinity."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def encode_put(key: str, value: str, *, expect_version: int | None = None,
               expect_value: str | None = None) -> bytes:
    """The replicated command for a put; `value` and `expect_value` are canonical JSON."""
    version = _ABSENT if expect_version is None else expect_version
    packed: bytes = msgpack.packb(["put", key, value, version, expect_value], use_bin_type=True)
    return packed


def encode_delete(key: str, *, expect_version: int | None = None) -> bytes:
    version = _ABSENT if expect_version is None else expect_version
    packed: bytes = msgpack.packb(["delete", key, None, version, None], use_bin_type=True)
    return packed


class KVStore:
    """The register map. `apply` returns a plain dict for the HTTP layer to show."""

    def __init__(self) -> None:
        self.items: dict[str, KeyValue] = {}

    def get(self, key: str) -> KeyValue | None:
        return self.items.get(key)

    def apply(self, index: int, data: bytes) -> dict[str, Any]:
        try:
            op, key, value, expect_version, expect_value = msgpack.unpackb(data, raw=False)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            return {"ok": False, "error": f"malformed kv command: {exc}"}
        current = self.items.get(key)
        version = current.version if current is not None else 0
        if (expect_version != _ABSENT and expect_version != version) or (
                expect_value is not None and (current is None or current.value != expect_value)):
            return _result(False, key, current, "precondition failed")
        if op == "delete":
            self.items.pop(key, None)
            return _result(True, key, None)
        if op != "put" or not isinstance(value, str):
            return {"ok": False, "error": f"unknown kv operation {op!r}"}
        if current is None and len(self.items) >= KEYS_MAX:
            return _result(False, key, None, f"the store holds its maximum of {KEYS_MAX} keys")
        stored = KeyValue(value=value, version=index)
        self.items[key] = stored
        return _result(True, key, stored)

    def snapshot_state(self) -> list[list[Any]]:
        return [[key, kv.value, kv.version] for key, kv in sorted(self.items.items())]

    def restore_state(self, state: list[list[Any]]) -> None:
        self.items = {key: KeyValue(value=value, version=version) for key, value, version in state}


def _result(ok: bool, key: str, current: KeyValue | None, error: str | None = None) -> dict[str, Any]:
    result: dict[str, Any] = {
        "ok": ok, "key": key,
        "value": json.loads(current.value) if current is not None else None,
        "version": current.version if current is not None else 0,
        "exists": current is not None,
    }
    if error is not None:
        result["error"] = error
    return result
