"""Per-node clocks: offset, drift rate and jumps, as piecewise-linear maps from true time.

A node's clock reads `local = local_base + rate * (true - true_base)`. Raft timers are set in
local time, so the simulator needs the inverse to know *when* (in true time) a node's timer
fires. A jump starts a new linear piece; rate changes likewise.
"""

from __future__ import annotations

import math


class NodeClock:
    __slots__ = ("true_base", "local_base", "rate")

    def __init__(self, offset_ms: float = 0.0, rate: float = 1.0) -> None:
        assert rate > 0.0, "a clock that stops or runs backwards is not a clock"
        self.true_base = 0.0
        self.local_base = offset_ms
        self.rate = rate

    def local(self, true_ms: float) -> float:
        return self.local_base + self.rate * (true_ms - self.true_base)

    def true_at(self, local_ms: float) -> float:
        """The true time at which this clock will read `local_ms` (inf stays inf)."""
        if local_ms == math.inf:
            return math.inf
        return self.true_base + (local_ms - self.local_base) / self.rate

    def jump(self, true_ms: float, delta_ms: float) -> None:
        """Step the clock by `delta_ms` at true time `true_ms` (NTP step, VM migration...)."""
        self.local_base = self.local(true_ms) + delta_ms
        self.true_base = true_ms

    def set_rate(self, true_ms: float, rate: float) -> None:
        assert rate > 0.0
        self.local_base = self.local(true_ms)
        self.true_base = true_ms
        self.rate = rate

    @property
    def offset_ms(self) -> float:
        """Local minus true time at true time 0 of the current piece (for reports)."""
        return self.local_base - self.true_base
