"""Execution leases and the clock-drift bound they rely on.

An attempt runs under a lease that ends at `deadline` (milliseconds on the clock of the
leader that granted or last renewed it). Two rules, applied on two different clocks:

- the leader proposes `Expire` only when ITS clock reads more than `deadline + D`;
- the agent stops (abandons) the run as soon as ITS clock reads `deadline - D` and no
  renewal has reached it.

The bound. Assume any two server clocks differ by at most D at every moment:

    D = max_offset_ms + 2 * drift_rate_max * lease_ms

where `max_offset_ms` (δ) is how far apart clock synchronisation keeps the servers, and
`2ρ·lease_ms` is how far two clocks whose rates are each within 1 ± ρ can drift apart
during one lease (between renewals). Claim: the agent stops strictly before any leader can
expire the lease, hence before the retry can start elsewhere.
Proof: the agent stops at true time a with C_agent(a) = deadline - D. Then
C_leader(a) <= C_agent(a) + D = deadline < deadline + D, so no leader has expired the lease
at time a; clocks are monotonic, so the expiry (and the retry, which needs the committed
Expire) comes later. The argument still holds if clocks differ by anything below 2D: the
second D is slack for a real process's kill latency.

What breaks beyond it: a leader whose clock runs more than 2D ahead of an agent's can expire
a lease the agent still believes in, and two attempts of one execution run at once. The
`lease-no-drift` bug switch sets D = 0 on both sides; then any skew does it
(tests/sim/test_scheduler_sim.py shows the overlap in the ledger).

Liveness needs the renewals to land in time: an agent whose clock leads the leader's by D
stops at leader time deadline - 2D, so `renew_every_ms` plus the commit latency must be
below `lease_ms - 2D` (`validate` checks the first part).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["LeasePolicy"]


@dataclass(frozen=True, slots=True)
class LeasePolicy:
    lease_ms: int = 12_000
    renew_every_ms: int = 2_000
    max_offset_ms: int = 4_000  # δ: covers the simulator's skew faults (±500 ms, jumps ±2 s)
    drift_rate_max: float = 200e-6  # ρ: the simulator's drift is within ±200 ppm
    no_drift_margin: bool = False  # the `lease-no-drift` bug: D = 0 on both sides

    @property
    def drift_bound_ms(self) -> int:
        """D, in whole milliseconds (rounded up)."""
        if self.no_drift_margin:
            return 0
        return math.ceil(self.max_offset_ms + 2 * self.drift_rate_max * self.lease_ms)

    def expire_after_ms(self, deadline_ms: int) -> int:
        """The leader may expire the lease once its clock is past this."""
        return deadline_ms + self.drift_bound_ms

    def stop_at_ms(self, deadline_ms: int) -> int:
        """The agent must have stopped the run when its clock reads this."""
        return deadline_ms - self.drift_bound_ms

    def validate(self) -> None:
        if self.lease_ms <= 0 or self.renew_every_ms <= 0:
            raise ValueError("lease_ms and renew_every_ms must be positive")
        if not 0 <= self.drift_rate_max < 0.01 or self.max_offset_ms < 0:
            raise ValueError("need 0 <= drift_rate_max < 1% and max_offset_ms >= 0")
        if self.renew_every_ms >= self.lease_ms - 2 * self.drift_bound_ms:
            raise ValueError(
                f"renew_every_ms ({self.renew_every_ms}) must be below lease_ms - 2D "
                f"({self.lease_ms} - 2*{self.drift_bound_ms}): an agent whose clock leads "
                f"would otherwise stop before its renewal lands")
