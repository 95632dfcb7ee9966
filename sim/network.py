"""The simulated network: latency, loss, duplication, reordering, and partitions.

Partitions are a set of blocked *directed* links, so one-way partitions are as easy as
symmetric ones. Each message draws its own latency, so messages on one link reorder whenever
latencies overlap; `reorder_probability` adds a long extra delay to some of them (labrpc's
"long reordering").
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(slots=True)
class NetworkOptions:
    latency_ms_min: float = 1.0
    latency_ms_max: float = 5.0
    loss_probability: float = 0.0
    duplicate_probability: float = 0.0
    reorder_probability: float = 0.0
    reorder_delay_ms_max: float = 200.0

    def validate(self) -> None:
        if not 0.0 <= self.latency_ms_min <= self.latency_ms_max:
            raise ValueError("need 0 <= latency_ms_min <= latency_ms_max")
        for name in ("loss_probability", "duplicate_probability", "reorder_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {value}")


class Network:
    def __init__(self, options: NetworkOptions, rng: random.Random) -> None:
        options.validate()
        self.options = options
        self._rng = rng
        self.blocked: set[tuple[str, str]] = set()
        self.sent = 0
        self.dropped_loss = 0
        self.dropped_partition = 0
        self.duplicated = 0

    def plain_delay(self, src: str, dst: str) -> float | None:
        """The one delay of a message on a network with no loss, duplication or reordering
        (the common case, one call per message), or None when `deliveries` must decide. Draws
        exactly what `deliveries` would, so either path gives the same run."""
        opts = self.options
        if opts.loss_probability or opts.duplicate_probability or opts.reorder_probability:
            return None
        blocked = self.blocked
        if blocked and (src, dst) in blocked:  # most runs have no partition: no tuple then
            return None
        self.sent += 1
        low = opts.latency_ms_min  # Random.uniform's formula, minus a Python call
        return low + (opts.latency_ms_max - low) * self._rng.random()

    def deliveries(self, src: str, dst: str) -> list[float]:
        """Delays (ms) after which copies of one message arrive: none, one, or two."""
        self.sent += 1
        if (src, dst) in self.blocked:
            self.dropped_partition += 1
            return []
        opts = self.options
        rng = self._rng
        if opts.loss_probability and rng.random() < opts.loss_probability:
            self.dropped_loss += 1
            return []
        delays = [self._delay()]
        if opts.duplicate_probability and rng.random() < opts.duplicate_probability:
            self.duplicated += 1
            delays.append(self._delay())
        return delays

    def _delay(self) -> float:
        opts = self.options
        delay = self._rng.uniform(opts.latency_ms_min, opts.latency_ms_max)
        if opts.reorder_probability and self._rng.random() < opts.reorder_probability:
            delay += self._rng.uniform(0.0, opts.reorder_delay_ms_max)
        return delay

    # ---- partitions ---------------------------------------------------------------------------
    def partition(self, side_a: set[str], side_b: set[str], *, one_way: bool = False) -> None:
        """Block a->b for every a in side_a and b in side_b (and b->a unless one_way)."""
        for a in side_a:
            for b in side_b:
                if a != b:
                    self.blocked.add((a, b))
                    if not one_way:
                        self.blocked.add((b, a))

    def isolate(self, node: str, others: set[str]) -> None:
        self.partition({node}, others - {node})

    def heal(self) -> None:
        self.blocked.clear()

    def connected(self, a: str, b: str) -> bool:
        return (a, b) not in self.blocked and (b, a) not in self.blocked
