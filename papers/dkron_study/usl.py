"""The Universal Scalability Law (Gunther): fit, quality, and what it implies.

    X(N) = λ N / (1 + a (N - 1) + b N (N - 1))

a is contention (the serial fraction: work every request queues for, here the leader's event
loop and disk), b is coherency (crosstalk: work that grows with every pair of members, here
per-member replication and reports, and the claims every agent makes for one queued run).
λ = X(1), the throughput of one resource; the issue's normalised form is C(N) = X(N) / λ.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = ["UslFit", "fit_usl", "usl"]


def usl(n: Any, lam: float, a: float, b: float) -> Any:
    n = np.asarray(n, dtype=float)
    return lam * n / (1.0 + a * (n - 1.0) + b * n * (n - 1.0))


@dataclass(frozen=True, slots=True)
class UslFit:
    lam: float  # X(1): throughput of one resource
    a: float  # contention
    b: float  # coherency
    r2: float  # 1 - SS_res / SS_tot on X
    rmse: float
    n_peak: float | None  # sqrt((1 - a) / b): where X(N) peaks (None if it never does)
    x_peak: float | None
    points: int

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}


def fit_usl(ns: Sequence[float], xs: Sequence[float]) -> UslFit:
    """Least squares of X on N with λ, a, b ≥ 0 (bounded trust-region), started from the
    linearisation (N/C - 1)/(N - 1) = a + b N with λ taken from the N = 1 point or the
    smallest N."""
    from scipy.optimize import least_squares  # type: ignore[import-untyped]

    n = np.asarray(ns, dtype=float)
    x = np.asarray(xs, dtype=float)
    if len(n) < 3:
        raise ValueError("a USL fit needs at least three points")
    order = np.argsort(n)
    n, x = n[order], x[order]
    lam0 = float(x[0] / n[0]) if n[0] > 0 else float(x[0])
    a0, b0 = 0.01, 0.0001
    mask = n > 1
    if mask.sum() >= 2 and lam0 > 0:
        capacity = x[mask] / lam0
        y = (n[mask] / np.maximum(capacity, 1e-12) - 1.0) / (n[mask] - 1.0)
        slope, intercept = np.polyfit(n[mask], y, 1)
        a0, b0 = max(intercept, 1e-6), max(slope, 1e-8)

    def residual(p: Any) -> Any:
        return usl(n, p[0], p[1], p[2]) - x

    best = None
    for start in ((lam0, a0, b0), (lam0, 0.05, 1e-4), (lam0 * 1.2, 0.2, 1e-3), (lam0, 1e-4, 1e-6)):
        result = least_squares(residual, np.array(start, dtype=float), bounds=([0.0, 0.0, 0.0], [np.inf, np.inf, np.inf]),
                               x_scale="jac", xtol=1e-14, ftol=1e-14, gtol=1e-14, max_nfev=20_000)
        if best is None or result.cost < best.cost:
            best = result
    assert best is not None
    lam, a, b = (float(v) for v in best.x)
    fitted = usl(n, lam, a, b)
    ss_res = float(np.sum((x - fitted) ** 2))
    ss_tot = float(np.sum((x - x.mean()) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0
    n_peak = x_peak = None
    if b > 1e-9 and a < 1:
        n_peak = math.sqrt((1.0 - a) / b)
        x_peak = float(usl(n_peak, lam, a, b))
    return UslFit(lam, a, b, r2, math.sqrt(ss_res / len(n)), n_peak, x_peak, len(n))
