"""The schedule language: cron (5 or 6 fields), descriptors, `@every`, `@at`, `@manually`.

Rules of this module (h11 style, so reviewers can hold us to them):

1. It never reads a clock. Every time is an argument: integer milliseconds since the Unix
   epoch, UTC. The only time-dependent input is `anchor_ms`, the job's creation or update time
   taken from the replicated log, which fixes the phase of `@every`.
2. Same inputs, same ticks, on every node: nothing depends on the host's local zone. (It does
   depend on the tz database the host has; docs/schedules.md says so.)
3. Bad input raises `ScheduleError` (a `ValueError`) naming the spec and what is wrong. Any
   other exception escaping `parse_schedule` is a bug.

Cron expressions are validated by our own small field parser (for exact error messages), then
expanded and iterated by croniter over *naive wall-clock seconds*. Daylight-saving time is
handled here, not in croniter, so that the rule is ours, written down and tested: see
`_next_in_zone` and docs/schedules.md ("Vixie cron" rule, cron(8)).
"""

from __future__ import annotations

import abc
import datetime as dt
import functools
import re
import sys
import threading
from dataclasses import dataclass, field
from typing import Final
from zoneinfo import ZoneInfo

from croniter import CroniterError, croniter  # type: ignore[import-untyped]

from scheduler.durations import DurationError, format_duration_ms, parse_duration_ms

__all__ = [
    "Schedule",
    "CronSchedule",
    "EverySchedule",
    "AtSchedule",
    "ManualSchedule",
    "WindowedSchedule",
    "ScheduleError",
    "parse_schedule",
    "parse_rfc3339_ms",
    "load_timezone",
    "format_instant",
    "format_utc",
    "ticks_between",
    "windowed",
]

SPEC_LENGTH_MAX: Final = 256
_EPOCH = dt.datetime(1970, 1, 1)
_UTC_KEYS: Final = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal",
                              "Etc/Zulu", "Zulu", "GMT", "Etc/GMT", "Etc/GMT0", "GMT0"})
# Host-dependent links in the tz directory: a schedule must not change with /etc/localtime.
_HOST_DEPENDENT_ZONES: Final = frozenset({"localtime", "posixrules"})
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+)*")
_ZONE_NAME_LENGTH_MAX: Final = 64


class ScheduleError(ValueError):
    """An invalid schedule spec or timezone; the message names the spec or field."""


def _quote(text: str) -> str:
    """Quote user text for an error message, cut short so garbage cannot flood a log line."""
    return repr(text if len(text) <= 80 else text[:77] + "...")


# --------------------------------------------------------------------------- time helpers


def load_timezone(name: str) -> ZoneInfo:
    """Load an IANA zone by name, or raise ScheduleError naming the `timezone` field."""
    if not isinstance(name, str):
        raise ScheduleError(f"timezone: expected an IANA name string, got {type(name).__name__}")
    return _load_timezone(name)


@functools.lru_cache(maxsize=1024)
def _load_timezone(name: str) -> ZoneInfo:
    if len(name) > _ZONE_NAME_LENGTH_MAX or not _ZONE_NAME.fullmatch(name):
        raise ScheduleError(
            f"timezone {_quote(name)}: not an IANA zone name (e.g. 'Europe/Berlin')")
    if name in _HOST_DEPENDENT_ZONES:
        raise ScheduleError(f"timezone {name!r}: depends on the host; use an IANA name")
    try:
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise ScheduleError(f"timezone {_quote(name)}: unknown IANA time zone") from None


def _is_utc(zone: ZoneInfo) -> bool:
    return zone.key in _UTC_KEYS


def _offset_s(instant_s: int, zone: ZoneInfo) -> int:
    offset = dt.datetime.fromtimestamp(instant_s, zone).utcoffset()
    assert offset is not None
    return int(offset.total_seconds())


def _wall_instants(wall_s: int, zone: ZoneInfo) -> tuple[int, int]:
    """The two PEP 495 readings of a wall-clock time: (fold=0 instant, fold=1 instant).

    Equal: an ordinary time. First < second: the time happens twice (clocks went back).
    First > second: the time does not exist (clocks jumped over it).
    """
    naive = _EPOCH + dt.timedelta(seconds=wall_s)
    offset_fold0 = naive.replace(tzinfo=zone).utcoffset()
    offset_fold1 = naive.replace(tzinfo=zone, fold=1).utcoffset()
    assert offset_fold0 is not None and offset_fold1 is not None
    return (wall_s - int(offset_fold0.total_seconds()), wall_s - int(offset_fold1.total_seconds()))


def _transition_after(low_s: int, high_s: int, zone: ZoneInfo) -> int:
    """The first instant in (low_s, high_s] whose UTC offset differs from low_s's (bisection).

    Used only near a DST change, where the span is at most a few hours (about 14 steps).
    """
    offset_low = _offset_s(low_s, zone)
    assert _offset_s(high_s, zone) != offset_low
    while high_s - low_s > 1:
        middle = (low_s + high_s) // 2
        if _offset_s(middle, zone) == offset_low:
            low_s = middle
        else:
            high_s = middle
    return high_s


def _wall_to_instant_s(wall_s: int, zone: ZoneInfo) -> int:
    """A wall-clock time named once: first occurrence if repeated, end of the gap if skipped."""
    first, second = _wall_instants(wall_s, zone)
    if first <= second:
        return first
    return _transition_after(second, first, zone)


_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))?"
)


def parse_rfc3339_ms(text: str, zone: ZoneInfo) -> int:
    """Parse an RFC 3339 date-time into epoch ms; without an offset it is wall time in `zone`.

    A naive wall time that happens twice means its first occurrence; one skipped by a DST jump
    means the first instant after the jump (the same rule as fixed-time cron entries).
    Raises ValueError with a human message (callers add the field name).
    """
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"{_quote(str(text))} is not an RFC 3339 time like 2026-11-24T10:00:00Z")
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction = (match.group(7) or "").ljust(9, "0")
    if fraction[3:] != "000000":
        raise ValueError(f"{_quote(text)} has sub-millisecond digits (raftcron times are in ms)")
    try:
        naive = dt.datetime(year, month, day, hour, minute, second)
    except ValueError as error:
        raise ValueError(f"{_quote(text)}: {error}") from None
    wall_s = (naive - _EPOCH) // dt.timedelta(seconds=1)
    if match.group(8):
        instant_s = wall_s
    elif match.group(9):
        hours, minutes = int(match.group(10)), int(match.group(11))
        if hours > 23 or minutes > 59:
            raise ValueError(f"{_quote(text)}: UTC offset out of range")
        sign = -1 if match.group(9) == "-" else 1
        instant_s = wall_s - sign * (hours * 3600 + minutes * 60)
    else:
        instant_s = _wall_to_instant_s(wall_s, zone)
    return instant_s * 1000 + int(fraction[:3])


def format_instant(instant_ms: int, zone: ZoneInfo) -> str:
    """ISO 8601 with the zone's offset; milliseconds only when non-zero."""
    moment = dt.datetime.fromtimestamp(instant_ms // 1000, zone)
    if instant_ms % 1000:
        moment = moment.replace(microsecond=(instant_ms % 1000) * 1000)
        return moment.isoformat(timespec="milliseconds")
    return moment.isoformat(timespec="seconds")


def format_utc(instant_ms: int) -> str:
    """RFC 3339 in UTC with a `Z` (the canonical form in specs and job JSON)."""
    return format_instant(instant_ms, load_timezone("UTC")).replace("+00:00", "Z")


# --------------------------------------------------------------------------- cron fields


@dataclass(frozen=True, slots=True)
class _FieldRule:
    label: str
    low: int
    high: int
    names: tuple[str, ...] = ()  # names[i] means the value low + i
    question_allowed: bool = False


_SECOND = _FieldRule("second", 0, 59)
_MINUTE = _FieldRule("minute", 0, 59)
_HOUR = _FieldRule("hour", 0, 23)
_DAY_OF_MONTH = _FieldRule("day-of-month", 1, 31, question_allowed=True)
_MONTH = _FieldRule("month", 1, 12, names=("jan", "feb", "mar", "apr", "may", "jun",
                                           "jul", "aug", "sep", "oct", "nov", "dec"))
# 0 and 7 are both Sunday, as in Vixie cron and robfig/cron.
_DAY_OF_WEEK = _FieldRule("day-of-week", 0, 7, names=("sun", "mon", "tue", "wed", "thu",
                                                      "fri", "sat"), question_allowed=True)
_RULES_5: Final = (_MINUTE, _HOUR, _DAY_OF_MONTH, _MONTH, _DAY_OF_WEEK)
_RULES_6: Final = (_SECOND, *_RULES_5)
_ITEM = re.compile(r"(?:(\*)|([0-9a-z]+)(?:-([0-9a-z]+))?)(?:/([0-9a-z]*))?")
_DAYS_IN_MONTH_MAX: Final = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

DESCRIPTORS: Final[dict[str, str]] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
    "@minutely": "0 * * * * *",  # Dkron's: every minute at second 0
}


def _field_value(rule: _FieldRule, token: str, spec: str) -> int:
    if token.isascii() and token.isdigit():
        value = int(token) if len(token) <= 6 else rule.high + 1
    elif token in rule.names:
        value = rule.low + rule.names.index(token)
    else:
        hint = (f"(names: {' '.join(rule.names)})" if rule.names
                else f"(expected a number {rule.low}-{rule.high})")
        raise ScheduleError(f"schedule {_quote(spec)}: {rule.label}: bad value {token!r} {hint}")
    if not rule.low <= value <= rule.high:
        raise ScheduleError(f"schedule {_quote(spec)}: {rule.label} value {token} out of range "
                            f"{rule.low}-{rule.high}")
    return value


def _expand_item(rule: _FieldRule, item: str, spec: str) -> set[int]:
    """Expand one list item: `*`, `a`, `a-b`, each optionally `/step` (`a/step` = `a-high/step`)."""
    match = _ITEM.fullmatch(item)
    if match is None:
        raise ScheduleError(
            f"schedule {_quote(spec)}: {rule.label}: unsupported syntax {item!r} (use numbers, "
            f"names, '*', ranges a-b, steps /n and lists a,b)")
    star, first, last, step_text = match.groups()
    step = 1
    if step_text is not None:
        if not (step_text.isascii() and step_text.isdigit()) or len(step_text) > 6:
            raise ScheduleError(f"schedule {_quote(spec)}: {rule.label}: step {step_text!r} "
                                f"is not a number")
        step = int(step_text)
        if step < 1:
            raise ScheduleError(f"schedule {_quote(spec)}: {rule.label}: step must be at least 1")
    if star:
        low, high = rule.low, rule.high
    else:
        low = _field_value(rule, first, spec)
        high = _field_value(rule, last, spec) if last is not None else low
        if last is None and step_text is not None:
            high = rule.high
        if low > high:
            raise ScheduleError(f"schedule {_quote(spec)}: {rule.label}: range {first}-{last} "
                                f"is reversed (write it as two ranges)")
    values = set(range(low, high + 1, step))
    if rule is _DAY_OF_WEEK:
        values = {value % 7 for value in values}
    return values


def _expand_field(rule: _FieldRule, text: str, spec: str) -> frozenset[int] | None:
    """The set of values a field allows, or None if the field is unrestricted.

    Unrestricted means an item is `*`, `*/1` or `?`, as in robfig/cron (Dkron) and croniter.
    It matters only for day-of-month/day-of-week: `0-6` allows every weekday but is still a
    restriction, so `0 0 13 * 0-6` means "the 13th OR any weekday", i.e. every day.
    """
    if text == "?":
        if not rule.question_allowed:
            raise ScheduleError(f"schedule {_quote(spec)}: {rule.label}: '?' is only allowed in "
                                f"day-of-month and day-of-week")
        return None
    values: set[int] = set()
    unrestricted = False
    for item in text.split(","):
        if item == "":
            raise ScheduleError(f"schedule {_quote(spec)}: {rule.label}: empty list item")
        values |= _expand_item(rule, item, spec)
        unrestricted = unrestricted or item in ("*", "*/1")
    return None if unrestricted else frozenset(values)


# --------------------------------------------------------------------------- compiled cron


@dataclass(frozen=True, slots=True)
class _CronExpr:
    """A validated cron expression and the croniter that walks its wall-clock matches.

    `wall_clock_interval` is Vixie cron's "wildcard job" flag, the one cron(8) uses for DST:
    true when the second, minute or hour field starts with `*`. Such jobs follow the clock
    across DST changes (skipped times are skipped, repeated times run again); all others name
    fixed times of day, which run exactly once (see `_next_in_zone`).
    """

    canonical: str
    wall_clock_interval: bool
    _iterator: croniter = field(compare=False, repr=False)
    _lock: threading.Lock = field(compare=False, repr=False)

    def next_wall(self, wall_s: int) -> int | None:
        """The first matching wall-clock second strictly after `wall_s` (None past year 9999)."""
        with self._lock:  # the croniter is shared per expression and is not reentrant
            try:
                result = self._iterator.get_next(float, start_time=float(wall_s))
            except (CroniterError, ValueError, OverflowError):
                return None
        next_s = int(result)
        assert next_s > wall_s
        return next_s


def _canonical_field(values: frozenset[int] | None) -> str:
    return "*" if values is None else ",".join(str(value) for value in sorted(values))


def _check_some_day_exists(days: frozenset[int] | None, months: frozenset[int] | None,
                           spec: str) -> None:
    """Reject `0 0 30 2 *` and friends, which would never fire (croniter would search 50 years)."""
    if days is None:
        return
    for month in months if months is not None else range(1, 13):
        if min(days) <= _DAYS_IN_MONTH_MAX[month - 1]:
            return
    raise ScheduleError(f"schedule {_quote(spec)}: day-of-month never occurs in the given "
                        f"month(s), so it would never fire")


@functools.lru_cache(maxsize=8192)
def _compile_cron(spec: str) -> _CronExpr:
    """Validate a normalised 5- or 6-field expression and build its matcher (cached per text)."""
    texts = spec.split(" ")
    if len(texts) not in (5, 6):
        raise ScheduleError(f"schedule {_quote(spec)}: expected 5 fields (minute hour "
                            f"day-of-month month day-of-week) or 6 (with seconds first), "
                            f"got {len(texts)}")
    rules = _RULES_6 if len(texts) == 6 else _RULES_5
    sets = [_expand_field(rule, text, spec) for rule, text in zip(rules, texts)]
    days, months, weekdays = sets[-3], sets[-2], sets[-1]
    if days is not None and weekdays is not None:
        # Both restricted: a day matches if EITHER matches (robfig/cron, Dkron's parser).
        # If either side already allows every day, so does the union: say so with `*`, so
        # croniter never has to guess what a full explicit list means (it sometimes ANDs).
        if len(days) == 31 or len(weekdays) == 7:
            days, weekdays = None, None
    else:
        _check_some_day_exists(days, months, spec)
    canonical = " ".join(_canonical_field(values) for values in (*sets[:-3], days, months,
                                                                  weekdays))
    interval_fields = texts[:3] if len(texts) == 6 else texts[:2]
    interval = any(text.startswith("*") for text in interval_fields)
    # second_at_beginning: croniter reads a 6th field as seconds LAST unless told otherwise.
    iterator = croniter(canonical, 0.0, second_at_beginning=len(texts) == 6)
    return _CronExpr(canonical=canonical, wall_clock_interval=interval, _iterator=iterator,
                     _lock=threading.Lock())


def _next_in_zone(expr: _CronExpr, zone: ZoneInfo, after_s: int) -> int | None:
    """The first tick strictly after `after_s` for a cron expression read in `zone`.

    Each matching wall-clock time W contributes ticks by the Vixie cron rule (cron(8)):
    an ordinary W fires at its instant; a W that happens twice fires at its first occurrence,
    and also at its second if the expression is a wall-clock interval (`*` in s/m/h); a W that
    is skipped by a DST jump fires once at the first instant after the jump for fixed-time
    expressions and not at all for interval ones. Walls are visited in order; as soon as one
    yields a tick after `after_s` no later wall can yield an earlier one (first occurrences
    only grow, second occurrences come after every first one of the same fold).
    """
    local = dt.datetime.fromtimestamp(after_s, zone)
    offset = local.utcoffset()
    assert offset is not None
    wall_s = after_s + int(offset.total_seconds())
    best: int | None = None
    if expr.wall_clock_interval and local.fold == 0:
        best = _repeat_of_earlier_wall(expr, zone, after_s, wall_s)
    cursor = wall_s
    for _ in range(8):  # each pass fires or jumps past a DST change; a few always suffice
        wall = expr.next_wall(cursor)
        if wall is None:
            return best
        first, second = _wall_instants(wall, zone)
        if first > second:  # wall time skipped by a jump forward
            jump_s = _transition_after(second, first, zone)
            if expr.wall_clock_interval:
                cursor = jump_s + (wall - second) - 1  # resume at the end of the gap
                continue
            ticks: tuple[int, ...] = (jump_s,)
        elif first < second:  # wall time repeated after a jump back
            if not expr.wall_clock_interval and first <= after_s:
                # We are inside the repeat already; fixed times do not run twice.
                back_s = _transition_after(first, second, zone)
                cursor = back_s + (wall - first) - 1  # resume at the end of the repeat
                continue
            ticks = (first, second) if expr.wall_clock_interval else (first,)
        else:
            ticks = (first,)
        later = [tick for tick in ticks if tick > after_s]
        if later:
            return min(later) if best is None else min(best, *later)
        cursor = wall
    raise AssertionError(f"no tick found after {after_s} in 8 steps for {expr.canonical!r}")


def _repeat_of_earlier_wall(expr: _CronExpr, zone: ZoneInfo, after_s: int,
                            wall_s: int) -> int | None:
    """In the first pass of a repeated hour, an interval job's earliest repeat is a candidate.

    Example: `*/30 * * * *`, clocks go back at 02:00 to 01:00, and it is 01:45 (first pass):
    the next tick is 01:00 second pass, from a wall time that is *earlier* than now.
    """
    first, second = _wall_instants(wall_s, zone)
    if first >= second:
        return None
    assert first == after_s
    back_s = _transition_after(first, second, zone)
    offset_after_s = wall_s - second
    earliest = expr.next_wall(back_s + offset_after_s - 1)
    if earliest is None or earliest > wall_s:
        return None
    return earliest - offset_after_s


# --------------------------------------------------------------------------- schedules

# Cron ticks are computed for instants in [epoch, 9999-01-01): Python's datetime ends in 9999.
_CRON_HORIZON_MS: Final = (dt.datetime(9999, 1, 1) - _EPOCH) // dt.timedelta(milliseconds=1)


class Schedule(abc.ABC):
    """When a job fires: an immutable function from a time to the next tick, with no clock.

    Every schedule has `kind` ("cron", "every", "at" or "manually"), `spec` (the normalised
    text, which parses back to an equal schedule) and `timezone` (an IANA name).
    """

    __slots__ = ()
    kind: str
    spec: str
    timezone: str

    @abc.abstractmethod
    def next_after(self, t_ms: int) -> int | None:
        """The first tick strictly after `t_ms`, or None if the schedule never fires again."""

    def first_at_or_after(self, t_ms: int) -> int | None:
        """The first tick at or after `t_ms` (ticks are integers, so this is next_after(t-1))."""
        return self.next_after(t_ms - 1)


@dataclass(frozen=True, slots=True)
class CronSchedule(Schedule):
    """A cron expression read as wall-clock time in `timezone`; ticks fall on whole seconds."""

    spec: str
    timezone: str
    expression: str  # canonical expanded form, as handed to croniter
    _expr: _CronExpr = field(repr=False, compare=False)
    _zone: ZoneInfo = field(repr=False, compare=False)
    kind: str = field(default="cron", init=False)

    def next_after(self, t_ms: int) -> int | None:
        if t_ms >= _CRON_HORIZON_MS:
            return None
        after_s = max(t_ms, -1) // 1000  # ticks are whole seconds and not before the epoch
        if _is_utc(self._zone):
            tick_s = self._expr.next_wall(after_s)
        else:
            tick_s = _next_in_zone(self._expr, self._zone, after_s)
        if tick_s is None:
            return None
        assert tick_s * 1000 > t_ms
        return tick_s * 1000


@dataclass(frozen=True, slots=True)
class EverySchedule(Schedule):
    """`@every d`: tick k is `anchor_ms + k * period_ms` for k >= 1, whoever computes it."""

    spec: str
    timezone: str
    anchor_ms: int
    period_ms: int
    kind: str = field(default="every", init=False)

    def next_after(self, t_ms: int) -> int | None:
        if t_ms < self.anchor_ms:
            return self.anchor_ms + self.period_ms
        k = (t_ms - self.anchor_ms) // self.period_ms + 1
        tick = self.anchor_ms + k * self.period_ms
        assert t_ms < tick <= t_ms + self.period_ms
        return tick


@dataclass(frozen=True, slots=True)
class AtSchedule(Schedule):
    """`@at <time>`: one tick at `at_ms`. A time already past at creation never fires."""

    spec: str
    timezone: str
    at_ms: int
    kind: str = field(default="at", init=False)

    def next_after(self, t_ms: int) -> int | None:
        return self.at_ms if self.at_ms > t_ms else None


@dataclass(frozen=True, slots=True)
class ManualSchedule(Schedule):
    """`@manually`: no ticks of its own; the job runs only when triggered."""

    spec: str
    timezone: str
    kind: str = field(default="manually", init=False)

    def next_after(self, t_ms: int) -> int | None:
        return None


@dataclass(frozen=True, slots=True)
class WindowedSchedule(Schedule):
    """Another schedule's ticks restricted to [start_ms, end_ms] (a job's starts_at/expires_at).

    Ticks outside the window are not ticks at all (nothing to record as missed), which is how
    Dkron's `starts_at`/`expires_at` behave too.
    """

    inner: Schedule
    start_ms: int | None
    end_ms: int | None
    spec: str = field(init=False)
    timezone: str = field(init=False)
    kind: str = field(init=False)

    def __post_init__(self) -> None:
        assert not isinstance(self.inner, WindowedSchedule)
        object.__setattr__(self, "spec", self.inner.spec)
        object.__setattr__(self, "timezone", self.inner.timezone)
        object.__setattr__(self, "kind", self.inner.kind)

    def next_after(self, t_ms: int) -> int | None:
        if self.start_ms is not None:
            t_ms = max(t_ms, self.start_ms - 1)
        tick = self.inner.next_after(t_ms)
        if tick is None or (self.end_ms is not None and tick > self.end_ms):
            return None
        return tick


def windowed(schedule: Schedule, start_ms: int | None, end_ms: int | None) -> Schedule:
    """Restrict `schedule` to ticks in [start_ms, end_ms]; either bound may be None."""
    if start_ms is None and end_ms is None:
        return schedule
    return WindowedSchedule(inner=schedule, start_ms=start_ms, end_ms=end_ms)


def ticks_between(schedule: Schedule, after_ms: int, until_ms: int, limit: int) -> list[int]:
    """The ticks in (after_ms, until_ms], oldest first, at most `limit` of them.

    The planner uses it to record a missed range compactly: ask for limit+1 to learn whether
    the range held more ticks than it wants to list one by one.
    """
    assert limit >= 0
    ticks: list[int] = []
    cursor = after_ms
    while len(ticks) < limit:
        tick = schedule.next_after(cursor)
        if tick is None or tick > until_ms:
            break
        assert tick > cursor
        ticks.append(tick)
        cursor = tick
    return ticks


# --------------------------------------------------------------------------- parsing


def parse_schedule(spec: str, *, timezone: str = "UTC", anchor_ms: int) -> Schedule:
    """Parse a schedule spec; `anchor_ms` (the job's creation/update time) phases `@every`.

    Forms: `m h dom mon dow`, `s m h dom mon dow`, `@yearly` `@annually` `@monthly` `@weekly`
    `@daily` `@midnight` `@hourly` `@minutely`, `@every <Go duration>`, `@at <RFC 3339>`,
    `@manually`. Raises ScheduleError with a message naming the spec and the problem.
    """
    if isinstance(anchor_ms, bool) or not isinstance(anchor_ms, int):
        raise TypeError(f"anchor_ms must be an int of epoch milliseconds, got {anchor_ms!r}")
    if not isinstance(spec, str):
        raise ScheduleError(f"schedule: expected a string, got {type(spec).__name__}")
    load_timezone(timezone)
    if len(spec) > SPEC_LENGTH_MAX:
        raise ScheduleError(f"schedule {_quote(spec)}: longer than {SPEC_LENGTH_MAX} characters")
    words = spec.split()
    if not words:
        raise ScheduleError("schedule '': empty (write e.g. '*/5 * * * *' or '@every 1m')")
    if words[0].lower() == "@every":
        return _parse_every(spec, " ".join(words[1:]), timezone, anchor_ms)
    return _parse_anchorless(spec, timezone)


@functools.lru_cache(maxsize=8192)
def _parse_anchorless(spec: str, timezone: str) -> Schedule:
    """Every form but `@every` ignores the anchor, so jobs with the same spec and zone share
    one immutable schedule object (100k jobs need not hold 100k equal ones)."""
    zone = load_timezone(timezone)
    words = spec.split()
    if not words[0].startswith("@"):
        return _parse_cron(" ".join(words).lower(), timezone, zone)
    keyword, argument = words[0].lower(), " ".join(words[1:])
    if keyword in DESCRIPTORS or keyword == "@manually":
        if argument:
            raise ScheduleError(f"schedule {_quote(spec)}: {keyword} takes no argument")
        if keyword == "@manually":
            return ManualSchedule(spec=keyword, timezone=timezone)
        return _parse_cron(DESCRIPTORS[keyword], timezone, zone, shown_as=keyword)
    if keyword == "@at":
        return _parse_at(spec, argument, timezone, zone)
    known = " ".join([*DESCRIPTORS, "@every", "@at", "@manually"])
    raise ScheduleError(f"schedule {_quote(spec)}: unknown descriptor {_quote(keyword)} "
                        f"(known: {known})")


def _parse_cron(text: str, timezone: str, zone: ZoneInfo, shown_as: str | None = None
                ) -> CronSchedule:
    expr = _compile_cron(text)
    return CronSchedule(spec=shown_as or text, timezone=timezone, expression=expr.canonical,
                        _expr=expr, _zone=zone)


def _parse_every(spec: str, argument: str, timezone: str, anchor_ms: int) -> EverySchedule:
    try:
        text, period_ms = _every_period(argument)
    except DurationError as error:
        raise ScheduleError(f"schedule {_quote(spec)}: @every: {error}") from None
    return EverySchedule(spec=text, timezone=timezone, anchor_ms=anchor_ms, period_ms=period_ms)


@functools.lru_cache(maxsize=8192)
def _every_period(argument: str) -> tuple[str, int]:
    """The normalised `@every` text and period: shared objects for jobs with equal periods."""
    period_ms = parse_duration_ms(argument)
    return sys.intern(f"@every {format_duration_ms(period_ms)}"), period_ms


def _parse_at(spec: str, argument: str, timezone: str, zone: ZoneInfo) -> AtSchedule:
    try:
        at_ms = parse_rfc3339_ms(argument, zone)
    except ValueError as error:
        raise ScheduleError(f"schedule {_quote(spec)}: @at: {error}") from None
    return AtSchedule(spec=f"@at {format_utc(at_ms)}", timezone=timezone, at_ms=at_ms)
