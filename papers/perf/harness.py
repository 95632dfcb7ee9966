"""The benchmark harness: alternating repeats, medians with min/max, ratios, targets.

Rules:
  1. Ours and the peer run in the same invocation, alternating (ours, peer, then peer, ours,
     ...), so slow drift on a shared, noisy machine lands on both sides alike. Numbers from two
     invocations are never compared: every ratio is computed inside one.
  2. A sample is a nested dict of numbers (`{"64": {"ops_s": 812.0, "p50_ms": 3.1}}`). The
     summary keeps the shape: each number becomes the median over repeats, and `NAME_min` /
     `NAME_max` sit beside it. Ratios are ours/peer on the medians, same shape again.
  3. A peer that cannot be had (no package, no binary) is not an error: the result says why in
     `skipped`, `peer` is None, and the ratio is None. Our side always runs.
  4. Targets are data: each says what was required, what was measured, and whether it held.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

Sample = dict[str, Any]
Side = Callable[[], Sample]

REPEATS_MIN = 3


@dataclass(frozen=True, slots=True)
class BenchContext:
    """What every bench is told: how often to repeat, how big to be, and may it install."""

    repeats: int = REPEATS_MIN
    quick: bool = False
    install: bool = True
    verbose: bool = True

    def say(self, text: str) -> None:
        """Progress goes to stderr, so `--json` output stays one clean object on stdout."""
        if self.verbose:
            print(f"  {text}", file=sys.stderr, flush=True)


@dataclass(slots=True)
class Target:
    """One line of the issue's targets: `value` compared with `threshold` by `relation`."""

    name: str
    value: float | None
    threshold: float | None
    relation: str  # ">=" or "<="
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None or self.threshold is None:
            return None
        if self.relation == ">=":
            return self.value >= self.threshold
        assert self.relation == "<=", self.relation
        return self.value <= self.threshold

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"name": self.name, "value": _round(self.value),
                                  "threshold": _round(self.threshold), "relation": self.relation,
                                  "met": self.met}
        if self.note:
            record["note"] = self.note
        return record


@dataclass(slots=True)
class BenchResult:
    bench: str
    settings: dict[str, Any]
    ours: Sample
    peers: dict[str, Sample | None] = field(default_factory=dict)
    strongest: str | None = None  # the peer that `peer` and `ratio` refer to
    skipped: dict[str, str] = field(default_factory=dict)  # peer name -> why it did not run
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repeats: int = 0
    wall_seconds: float = 0.0

    @property
    def peer(self) -> Sample | None:
        return self.peers.get(self.strongest) if self.strongest is not None else None

    def ratio(self) -> Sample | None:
        peer = self.peer
        return None if peer is None else ratios(self.ours, peer)

    def to_json(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "settings": self.settings,
            "repeats": self.repeats,
            "ours": self.ours,
            "peer": self.peer,
            "peer_name": self.strongest,
            "peers": self.peers,
            "ratio": self.ratio(),
            "skipped": self.skipped,
            "targets": [target.to_json() for target in self.targets],
            "notes": self.notes,
            "wall_seconds": round(self.wall_seconds, 3),
        }


# ---- running ---------------------------------------------------------------------------------
def alternate(repeats: int, sides: Mapping[str, Side], say: Callable[[str], None] | None = None
              ) -> dict[str, list[Sample]]:
    """Run every side `repeats` times, reversing the order on every other repeat."""
    assert repeats >= 1
    names = list(sides)
    samples: dict[str, list[Sample]] = {name: [] for name in names}
    for repeat in range(repeats):
        order = names if repeat % 2 == 0 else names[::-1]
        for name in order:
            started = time.perf_counter()
            samples[name].append(sides[name]())
            if say is not None:
                say(f"repeat {repeat + 1}/{repeats}: {name} in {time.perf_counter() - started:.1f} s")
    return samples


def summarise(samples: list[Sample]) -> Sample:
    """Median of each number over the samples, with `_min`/`_max` beside it; same shape."""
    assert samples, "nothing to summarise"
    first = samples[0]
    summary: Sample = {}
    for key, value in first.items():
        values = [sample[key] for sample in samples if key in sample]
        if isinstance(value, Mapping):
            summary[key] = summarise(values)
        elif _is_number(value):
            numbers = [v for v in values if _is_number(v)]
            if len(numbers) == 1:
                summary[key] = _round(numbers[0])
                continue
            summary[key] = _round(statistics.median(numbers))
            summary[f"{key}_min"] = _round(min(numbers))
            summary[f"{key}_max"] = _round(max(numbers))
        else:
            summary[key] = value  # labels and counts that do not vary are kept as they are
    return summary


def ratios(ours: Mapping[str, Any], peer: Mapping[str, Any]) -> Sample:
    """ours/peer for every median present on both sides (not for `_min`/`_max`)."""
    result: Sample = {}
    for key, value in ours.items():
        if key.endswith(("_min", "_max")) or key not in peer:
            continue
        other = peer[key]
        if isinstance(value, Mapping) and isinstance(other, Mapping):
            nested = ratios(value, other)
            if nested:
                result[key] = nested
        elif _is_number(value) and _is_number(other) and other:
            result[key] = _round(value / other)
    return result


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _round(value: float | None) -> float | None:
    if value is None or isinstance(value, int):
        return value
    if value == 0 or abs(value) >= 100:
        return round(value, 1)
    return float(f"{value:.4g}")


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a non-empty list (what p50/p90/p99 mean in these tables)."""
    assert values, "percentile of nothing"
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(fraction * len(ordered) + 0.5)) - 1))
    return ordered[rank]


# ---- printing --------------------------------------------------------------------------------
def render(result: dict[str, Any]) -> str:
    """A one-screen table: every median of ours, the peer's, and the ratio, then the targets."""
    lines = [f"raftcron bench {result['bench']}: {result['repeats']} repeats, "
             f"medians [min-max], ratio = ours/{result['peer_name'] or 'peer'}"]
    peer, ratio = result.get("peer") or {}, result.get("ratio") or {}
    rows = [("metric", "ours", result["peer_name"] or "peer", "ratio")]
    for path, value in _leaves(result["ours"]):
        rows.append((path, _cell(result["ours"], path), _cell(peer, path), _plain(_get(ratio, path))))
    for path, _value in _leaves(peer):
        if _get(result["ours"], path) is None:
            rows.append((path, "-", _cell(peer, path), "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        lines.append("  " + "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    for name, sample in (result.get("peers") or {}).items():
        if name != result["peer_name"] and sample:
            lines.append(f"  other peer {name}: " + json.dumps(sample, separators=(",", ":"))[:400])
    for name, why in (result.get("skipped") or {}).items():
        lines.append(f"  peer {name} skipped: {why}")
    for target in result.get("targets", []):
        note = f" ({target['note']})" if target.get("note") else ""
        if target["threshold"] is None:  # a figure listed beside the targets, with none of its own
            lines.append(f"  figure {target['name']}: {target['value']}{note}")
            continue
        mark = {True: "MET", False: "MISSED", None: "n/a"}[target["met"]]
        lines.append(f"  target [{mark}] {target['name']}: {target['value']} "
                     f"{target['relation']} {target['threshold']}{note}")
    for note in result.get("notes", []):
        lines.append(f"  note: {note}")
    return "\n".join(lines)


def _leaves(sample: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    found: list[tuple[str, Any]] = []
    for key, value in sample.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found += _leaves(value, path + ".")
        elif _is_number(value) and not key.endswith(("_min", "_max")):
            found.append((path, value))
    return found


def _get(sample: Mapping[str, Any] | None, path: str) -> Any:
    node: Any = sample
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _cell(sample: Mapping[str, Any] | None, path: str) -> str:
    value = _get(sample, path)
    if value is None:
        return "-"
    low, high = _get(sample, path + "_min"), _get(sample, path + "_max")
    if low is None or high is None:
        return _plain(value)
    return f"{_plain(value)} [{_plain(low)}-{_plain(high)}]"


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.3e}"
    return str(value)


def process_cpu_s(pid: int) -> float:
    """A process's CPU time so far, user + system, in seconds (from /proc/PID/stat; OSError
    once it is gone)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
