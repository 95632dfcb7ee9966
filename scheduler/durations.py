"""Go-style durations (`1h30m`, `500ms`, `1.5h`), parsed exactly into integer milliseconds.

Why our own parser: `@every` specs come from Dkron users, who write Go's `time.ParseDuration`
syntax. Python has no parser for it, and float arithmetic would make `0.1s * 3` drift. We use
`fractions.Fraction` so `1.1h` is exactly 3_960_000 ms, and we refuse (rather than round) any
duration that is not a whole number of milliseconds, because every time in raftcron is an
integer count of milliseconds: a silently rounded period would drift from what the user wrote.
"""

from __future__ import annotations

import re
from fractions import Fraction

__all__ = ["DurationError", "parse_duration_ms", "format_duration_ms", "DURATION_MS_MAX"]

# Go's Duration is an int64 of nanoseconds; we keep the same ceiling (about 292 years).
DURATION_MS_MAX: int = (2**63 - 1) // 1_000_000
_TEXT_LENGTH_MAX = 64

_UNIT_NANOSECONDS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # µ MICRO SIGN, accepted by Go
    "\u03bcs": 1_000,  # μ GREEK SMALL LETTER MU, accepted by Go
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3_600 * 1_000_000_000,
}
# One component: digits, an optional fraction, then a unit (any run of non-digit, non-dot text,
# checked against the table afterwards so the error can name the bad unit, as Go does).
_COMPONENT = re.compile(r"([0-9]*)(?:\.([0-9]*))?([^0-9.]*)")


class DurationError(ValueError):
    """A duration Go's `time.ParseDuration` would reject, or one raftcron cannot use."""


def parse_duration_ms(text: str) -> int:
    """Parse a Go duration into a positive whole number of milliseconds.

    Accepts what Go accepts (`90s`, `1h30m`, `2h45m10s`, `1.5h`, `.5s`, `+5m`) and additionally
    requires the result to be > 0, a whole number of ms, and at most Go's int64 range.
    """
    if not isinstance(text, str):
        raise DurationError(f"duration must be a string, got {type(text).__name__}")
    if text == "":
        raise DurationError("empty duration (write e.g. '90s', '1h30m' or '500ms')")
    if len(text) > _TEXT_LENGTH_MAX:
        raise DurationError(f"duration longer than {_TEXT_LENGTH_MAX} characters")
    body = text
    negative = False
    if body[0] in "+-":
        negative = body[0] == "-"
        body = body[1:]
    if body == "0":
        raise DurationError(f"duration {text!r} is zero; it must be at least 1ms")
    total_nanoseconds = _sum_components(text, body)
    if negative and total_nanoseconds != 0:
        raise DurationError(f"duration {text!r} is negative; it must be at least 1ms")
    if total_nanoseconds == 0:
        raise DurationError(f"duration {text!r} is zero; it must be at least 1ms")
    total_ms = total_nanoseconds / 1_000_000
    if total_ms.denominator != 1:
        raise DurationError(
            f"duration {text!r} is not a whole number of milliseconds (raftcron times are in ms)"
        )
    if total_ms > DURATION_MS_MAX:
        raise DurationError(f"duration {text!r} is out of range (max about 2562047h)")
    assert total_ms >= 1
    return int(total_ms)


def _sum_components(text: str, body: str) -> Fraction:
    """Sum `<number><unit>` components exactly, with Go's error cases."""
    if body == "":
        raise DurationError(f"invalid duration {text!r}: no number")
    total = Fraction(0)
    position = 0
    while position < len(body):
        match = _COMPONENT.match(body, position)
        assert match is not None  # every part of the pattern may be empty
        whole, fraction, unit = match.group(1), match.group(2), match.group(3)
        if whole == "" and not fraction:
            raise DurationError(
                f"invalid duration {text!r}: expected a number at {body[position:]!r}")
        if unit == "":
            raise DurationError(f"missing unit in duration {text!r} (units: ns us ms s m h)")
        if unit not in _UNIT_NANOSECONDS:
            raise DurationError(
                f"unknown unit {unit!r} in duration {text!r} (units: ns us ms s m h)")
        number = Fraction(int(whole or "0"))
        if fraction:
            number += Fraction(int(fraction), 10 ** len(fraction))
        total += number * _UNIT_NANOSECONDS[unit]
        assert match.end() > position  # a unit was consumed, so the loop advances
        position = match.end()
    return total


def format_duration_ms(duration_ms: int) -> str:
    """Canonical text for a duration: non-zero `h`, `m`, `s`, `ms` parts (`1h30m`, `1s500ms`).

    Go prints `2h0m0s`; we drop zero parts, and the result still parses in Go and here.
    """
    assert isinstance(duration_ms, int)
    assert duration_ms >= 1
    parts: list[str] = []
    remaining = duration_ms
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    assert remaining == 0
    return "".join(parts)
