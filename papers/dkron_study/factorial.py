"""2^(k-p) fractional factorial designs with replication (Jain, *The Art of Computer Systems
Performance Analysis*, chapters 17-19): the sign table, the alias structure, effects,
allocation of variation and confidence intervals.

The Dkron study's design is 2^(6-3): three base factors A, B, C in a full 2^3 and three more
confounded with their interactions, D = AB, E = AC, F = BC (resolution III: main effects are
free of each other, but each is aliased with two-factor interactions).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Design", "DKRON_DESIGN", "analyse"]


def _word(letters: str) -> str:
    return "".join(sorted(letters))


def _multiply(x: str, y: str) -> str:
    """Product of two effects: letters appearing an odd number of times (A·A = I)."""
    return _word("".join(sorted(set(x) ^ set(y))))


@dataclass(frozen=True, slots=True)
class Design:
    base: tuple[str, ...]  # factors of the full 2^(k-p) design, e.g. ("A", "B", "C")
    generators: tuple[tuple[str, str], ...]  # (factor, base interaction), e.g. ("D", "AB")

    @property
    def factors(self) -> tuple[str, ...]:
        return self.base + tuple(f for f, _w in self.generators)

    @property
    def runs(self) -> int:
        return int(2 ** len(self.base))

    def columns(self) -> list[str]:
        """Every effect column of the base design, in Jain's order: I, A, B, C, AB, AC, BC, ABC."""
        cols = ["I"]
        for size in range(1, len(self.base) + 1):
            cols += ["".join(c) for c in itertools.combinations(self.base, size)]
        return cols

    def sign_table(self) -> dict[str, list[int]]:
        """Signs per column, runs in standard order (the first base factor alternates fastest)."""
        rows = self.runs
        base_signs = {f: [1 if (i >> j) & 1 else -1 for i in range(rows)] for j, f in enumerate(self.base)}
        table: dict[str, list[int]] = {}
        for col in self.columns():
            if col == "I":
                table[col] = [1] * rows
            else:
                table[col] = [math.prod(base_signs[f][i] for f in col) for i in range(rows)]
        return table

    def factor_signs(self) -> dict[str, list[int]]:
        """The level (−1/+1) of every factor, base and generated, in each run."""
        table = self.sign_table()
        out = {f: table[f] for f in self.base}
        for factor, word in self.generators:
            out[factor] = table[word]
        return out

    def defining_relation(self) -> list[str]:
        """All words equal to I: the generators' words (e.g. ABD) and their products."""
        words = [_word(w + f) for f, w in self.generators]
        relation: set[str] = set()
        for size in range(1, len(words) + 1):
            for combo in itertools.combinations(words, size):
                product = ""
                for w in combo:
                    product = _multiply(product, w)
                relation.add(product)
        return sorted(relation, key=lambda w: (len(w), w))

    def aliases(self, column: str, max_order: int = 2) -> list[str]:
        """The effects confounded with `column` (up to `max_order` letters), the column first."""
        own = "" if column == "I" else column
        found = {_multiply(own, w) for w in self.defining_relation()} | {own}
        named = sorted((w for w in found if w and len(w) <= max_order), key=lambda w: (len(w), w))
        return named

    def label(self, column: str) -> str:
        """A column named by its lowest-order aliases, e.g. 'D = AB' or 'AD = BE = CF'."""
        if column == "I":
            return "I"
        names = self.aliases(column, max_order=2)
        if not names:
            names = self.aliases(column, max_order=3)[:3]
        return " = ".join(names) if names else column


DKRON_DESIGN = Design(base=("A", "B", "C"), generators=(("D", "AB"), ("E", "AC"), ("F", "BC")))


def t_quantile(confidence: float, df: int) -> float:
    from scipy.stats import t  # type: ignore[import-untyped]

    return float(t.ppf(0.5 + confidence / 2.0, df))


def analyse(design: Design, responses: Sequence[Sequence[float]], *,
            confidence: float = 0.90) -> dict[str, Any]:
    """Effects and allocation of variation for `responses[run][replication]`.

    q_j = (1/2^(k-p)) Σ_i s_ij ȳ_i; SS_j = 2^(k-p) r q_j²; SSE = Σ_ij (y_ij − ȳ_i)²;
    SST = Σ_j SS_j + SSE. With r > 1 each effect gets a confidence interval
    q_j ± t[1−α/2; 2^(k−p)(r−1)] · s_e / sqrt(2^(k−p) r), s_e² = SSE / (2^(k−p)(r−1))."""
    runs = design.runs
    y = np.asarray(responses, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    if y.shape[0] != runs:
        raise ValueError(f"expected {runs} runs, got {y.shape[0]}")
    r = y.shape[1]
    means = y.mean(axis=1)
    table = design.sign_table()
    effects = {col: float(np.dot(table[col], means) / runs) for col in table}
    ss = {col: runs * r * q * q for col, q in effects.items() if col != "I"}
    sse = float(((y - means[:, None]) ** 2).sum())
    sst = float(((y - y.mean()) ** 2).sum())
    out_effects = []
    df = runs * (r - 1)
    s_q = t = None
    if r > 1 and df > 0:
        s_e = math.sqrt(sse / df)
        s_q = s_e / math.sqrt(runs * r)
        t = t_quantile(confidence, df)
    for col in table:
        q = effects[col]
        entry: dict[str, Any] = {"column": col, "label": design.label(col), "effect": q}
        if col != "I":
            entry["ss"] = ss[col]
            entry["variation"] = ss[col] / sst if sst > 0 else 0.0
        if s_q is not None and t is not None:
            entry["ci"] = [q - t * s_q, q + t * s_q]
            entry["significant"] = not (q - t * s_q <= 0.0 <= q + t * s_q)
        out_effects.append(entry)
    return {"runs": runs, "replications": r, "effects": out_effects, "sse": sse, "sst": sst,
            "error_variation": sse / sst if sst > 0 else 0.0, "confidence": confidence if r > 1 else None,
            "mean": float(y.mean())}


def levels_of(design: Design, run: int) -> Mapping[str, int]:
    signs = design.factor_signs()
    return {f: signs[f][run] for f in design.factors}
