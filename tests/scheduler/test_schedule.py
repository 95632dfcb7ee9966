"""Tests for scheduler.schedule: every form, DST, DOM/DOW, @every anchoring, errors, the CLI.

Expected times are written out by hand as ISO strings in the job's zone, so a reader can
check them against a calendar. Two independent oracles back the hand-written cases:
croniter itself (in UTC, where there is no DST to disagree about) and a brute-force
minute-by-minute model of the documented DST rule.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable

import pytest
from croniter import croniter  # type: ignore[import-untyped]
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from raftcron.cli import main
from scheduler.durations import (
    DURATION_MS_MAX,
    DurationError,
    format_duration_ms,
    parse_duration_ms,
)
from scheduler.schedule import (
    AtSchedule,
    CronSchedule,
    EverySchedule,
    ManualSchedule,
    Schedule,
    ScheduleError,
    format_instant,
    load_timezone,
    parse_rfc3339_ms,
    parse_schedule,
    ticks_between,
    windowed,
)

T2026 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
DAY_MS = 86_400_000


def at(text: str, tz: str = "UTC") -> int:
    return parse_rfc3339_ms(text, load_timezone(tz))


def upcoming(spec: str, start: str, count: int, tz: str = "UTC") -> list[str]:
    """The next `count` ticks after `start` (wall time in tz), as ISO strings in tz."""
    schedule = parse_schedule(spec, timezone=tz, anchor_ms=at(start, tz))
    ticks = ticks_between(schedule, at(start, tz), 2**62, count)
    return [format_instant(tick, load_timezone(tz)) for tick in ticks]


# --------------------------------------------------------------------------- each form

FORM_CASES = [
    ("*/15 * * * *", "2026-01-01T00:07:00", ["2026-01-01T00:15:00+00:00",
                                              "2026-01-01T00:30:00+00:00"]),
    ("0 9 * * mon-fri", "2026-01-02T10:00:00", ["2026-01-05T09:00:00+00:00",   # Fri -> Mon
                                                 "2026-01-06T09:00:00+00:00"]),
    ("0 0 * JAN,Jul SUN", "2026-01-01T00:00:00", ["2026-01-04T00:00:00+00:00",
                                                   "2026-01-11T00:00:00+00:00"]),
    ("0 0 29 2 *", "2026-01-01T00:00:00", ["2028-02-29T00:00:00+00:00",
                                            "2032-02-29T00:00:00+00:00"]),
    ("  0   12\t* * *  ", "2026-01-01T00:00:00", ["2026-01-01T12:00:00+00:00",
                                                   "2026-01-02T12:00:00+00:00"]),
    ("0 0 * * 7", "2026-01-01T00:00:00", ["2026-01-04T00:00:00+00:00",   # 7 is Sunday
                                           "2026-01-11T00:00:00+00:00"]),
    ("0 0 * * 7-7", "2026-01-01T00:00:00", ["2026-01-04T00:00:00+00:00",  # croniter: daily!
                                             "2026-01-11T00:00:00+00:00"]),
    ("5-5 * * * *", "2026-01-01T00:00:00", ["2026-01-01T00:05:00+00:00",  # croniter: hourly!
                                             "2026-01-01T01:05:00+00:00"]),
    ("0 0 * * 5-7", "2026-01-01T00:00:00", ["2026-01-02T00:00:00+00:00",  # Fri Sat Sun
                                             "2026-01-03T00:00:00+00:00",
                                             "2026-01-04T00:00:00+00:00",
                                             "2026-01-09T00:00:00+00:00"]),
    ("10/20 * * * *", "2026-01-01T00:00:00", ["2026-01-01T00:10:00+00:00",
                                               "2026-01-01T00:30:00+00:00",
                                               "2026-01-01T00:50:00+00:00",
                                               "2026-01-01T01:10:00+00:00"]),
    # 6 fields: seconds FIRST (Dkron/robfig). Read seconds-last, this would be minute 5 of hour 0.
    ("5 0 * * * *", "2026-01-01T00:00:00", ["2026-01-01T00:00:05+00:00",
                                             "2026-01-01T01:00:05+00:00"]),
    ("30 */10 * * * *", "2026-01-01T00:00:00", ["2026-01-01T00:00:30+00:00",
                                                 "2026-01-01T00:10:30+00:00"]),
    ("0 0 12 * * ?", "2026-01-01T12:00:00", ["2026-01-02T12:00:00+00:00"]),
    ("*/20 * * * * *", "2026-01-01T00:00:00.500", ["2026-01-01T00:00:20+00:00",
                                                    "2026-01-01T00:00:40+00:00"]),
    ("@yearly", "2026-06-01T00:00:00", ["2027-01-01T00:00:00+00:00"]),
    ("@annually", "2026-06-01T00:00:00", ["2027-01-01T00:00:00+00:00"]),
    ("@monthly", "2026-01-01T00:00:00", ["2026-02-01T00:00:00+00:00"]),
    ("@weekly", "2026-01-01T00:00:00", ["2026-01-04T00:00:00+00:00"]),  # Sunday
    ("@daily", "2026-01-01T00:00:00", ["2026-01-02T00:00:00+00:00"]),
    ("@midnight", "2026-01-01T13:00:00", ["2026-01-02T00:00:00+00:00"]),
    ("@hourly", "2026-01-01T00:59:59.999", ["2026-01-01T01:00:00+00:00"]),
    ("@minutely", "2026-01-01T00:00:30", ["2026-01-01T00:01:00+00:00",
                                           "2026-01-01T00:02:00+00:00"]),
    ("@every 90s", "2026-01-01T00:00:00", ["2026-01-01T00:01:30+00:00",
                                            "2026-01-01T00:03:00+00:00"]),
    ("@at 2026-11-24T10:00:00Z", "2026-01-01T00:00:00", ["2026-11-24T10:00:00+00:00"]),
    ("@manually", "2026-01-01T00:00:00", []),
]


@pytest.mark.parametrize(("spec", "start", "expected"), FORM_CASES)
def test_each_form_fires_at_the_expected_times(spec: str, start: str, expected: list[str]) -> None:
    assert upcoming(spec, start, len(expected) + (1 if not expected else 0)) == expected


@pytest.mark.parametrize(("spec", "kind", "normalised"), [
    ("  */5  *  * * *", "cron", "*/5 * * * *"),
    ("0 0 * JAN MON", "cron", "0 0 * jan mon"),
    ("@DAILY", "cron", "@daily"),
    ("@every 90s", "every", "@every 1m30s"),
    ("@every 1.5h", "every", "@every 1h30m"),
    ("@every 1500ms", "every", "@every 1s500ms"),
    ("@at 2026-11-24T10:00:00+01:00", "at", "@at 2026-11-24T09:00:00Z"),
    ("@at 2026-11-24t10:00:00.250z", "at", "@at 2026-11-24T10:00:00.250Z"),
    ("@manually", "manually", "@manually"),
])
def test_kind_and_normalised_spec(spec: str, kind: str, normalised: str) -> None:
    schedule = parse_schedule(spec, anchor_ms=0)
    assert (schedule.kind, schedule.spec) == (kind, normalised)
    again = parse_schedule(schedule.spec, anchor_ms=0)
    assert again == schedule, "the normalised spec must parse back to an equal schedule"


def test_schedules_are_immutable_and_types_are_exposed() -> None:
    schedule = parse_schedule("*/5 * * * *", anchor_ms=0)
    assert isinstance(schedule, CronSchedule) and isinstance(schedule, Schedule)
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.spec = "x"  # type: ignore[misc]
    assert isinstance(parse_schedule("@every 1s", anchor_ms=0), EverySchedule)
    assert isinstance(parse_schedule("@at 2026-01-01T00:00:00Z", anchor_ms=0), AtSchedule)
    assert isinstance(parse_schedule("@manually", anchor_ms=0), ManualSchedule)


def test_first_at_or_after_includes_the_instant_itself() -> None:
    schedule = parse_schedule("0 * * * *", anchor_ms=0)
    hour = at("2026-01-01T05:00:00")
    assert schedule.first_at_or_after(hour) == hour
    assert schedule.next_after(hour) == hour + 3_600_000
    assert schedule.first_at_or_after(hour + 1) == hour + 3_600_000


def test_cron_ticks_end_with_the_datetime_range() -> None:
    schedule = parse_schedule("0 0 1 1 *", anchor_ms=0)
    assert schedule.next_after(at("9998-06-01T00:00:00Z")) == at("9999-01-01T00:00:00Z")
    assert schedule.next_after(at("9999-01-01T00:00:00Z")) is None
    leap_day = parse_schedule("0 0 29 2 *", anchor_ms=0)
    assert leap_day.next_after(at("9998-01-01T00:00:00Z")) is None  # next would be year 10000
    assert schedule.next_after(2**60) is None
    assert schedule.next_after(-10**12) == 0  # ticks start at the epoch


# --------------------------------------------------------------------------- DOM / DOW


@pytest.mark.parametrize(("spec", "expected_days"), [
    # Both restricted: OR. The 13th, and every Friday (Jan 2026: Fridays are 2, 9, 16, 23, 30).
    ("0 0 13 * 5", [2, 9, 13, 16, 23, 30]),
    # */2 counts as restricted (as in croniter and Dkron's robfig/cron; Vixie cron would AND).
    ("0 0 */2 * 1", [1, 3, 5, 7, 9, 11, 12, 13, 15, 17, 19, 21, 23, 25, 26, 27, 29, 31]),
    # A `*`, `*/1` or `?` side is unrestricted: the other side alone decides (robfig/cron
    # and Vixie agree on `*/1`; croniter alone would read `0 0 13 * */1` as every day).
    ("0 0 13 * *", [13]), ("0 0 13 * ?", [13]), ("0 0 ? * 5", [2, 9, 16, 23, 30]),
    ("0 0 13 * */1", [13]), ("0 0 13 * 1,*", [13]), ("0 0 */1 * 5", [2, 9, 16, 23, 30]),
    # A full range on one restricted side makes the union every day.
    ("0 0 1-31 * 1", list(range(1, 32))), ("0 0 13 * 0-6", list(range(1, 32))),
    ("0 0 */2 * 0-6", list(range(1, 32))),  # croniter 7: odd days only (it ANDs here)
])
def test_day_of_month_and_day_of_week_combine_with_or(spec: str,
                                                      expected_days: list[int]) -> None:
    schedule = parse_schedule(spec, anchor_ms=0)
    ticks = ticks_between(schedule, T2026 - 1, at("2026-01-31T23:59:59"), 100)
    assert [dt.datetime.fromtimestamp(t / 1000, dt.UTC).day for t in ticks] == expected_days


# --------------------------------------------------------------------------- DST

DST_CASES = [
    # Spring forward in New York, 2026-03-08: 02:00 EST -> 03:00 EDT; 02:30 does not exist.
    # A fixed time in the gap fires once, at the first instant after the jump (03:00 EDT).
    ("30 2 * * *", "America/New_York", "2026-03-07T00:00:00", [
        "2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
    # Two fixed times in the gap still fire once (same instant), not twice.
    ("0,30 2 * * *", "America/New_York", "2026-03-08T00:00:00", [
        "2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"]),
    # Interval specs follow the clock: the skipped half hours are simply not there.
    ("*/30 * * * *", "America/New_York", "2026-03-08T01:00:00", [
        "2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"]),
    ("0 */2 * * *", "America/New_York", "2026-03-08T00:00:00", [
        "2026-03-08T04:00:00-04:00", "2026-03-08T06:00:00-04:00"]),
    # Fall back in New York, 2026-11-01: 02:00 EDT -> 01:00 EST; 01:30 happens twice.
    # A fixed time fires once, at its first occurrence (EDT).
    ("30 1 * * *", "America/New_York", "2026-10-31T12:00:00", [
        "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
    # Interval specs fire in both passes of the repeated hour: every 30 min of real time.
    ("*/30 * * * *", "America/New_York", "2026-11-01T00:45:00", [
        "2026-11-01T01:00:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-01T01:00:00-05:00",
        "2026-11-01T01:30:00-05:00", "2026-11-01T02:00:00-05:00"]),
    ("@hourly", "America/New_York", "2026-11-01T00:30:00", [
        "2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"]),
    # Berlin, 2026-03-29: 02:00 CET -> 03:00 CEST.
    ("30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00", [
        "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
    ("0 30 2 * * *", "Europe/Berlin", "2026-03-28T12:00:00", [   # 6-field, same rule
        "2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
    ("15 * * * *", "Europe/Berlin", "2026-03-29T01:00:00", [
        "2026-03-29T01:15:00+01:00", "2026-03-29T03:15:00+02:00"]),
    # Berlin, 2026-10-25: 03:00 CEST -> 02:00 CET; 02:30 happens twice.
    ("30 2 * * *", "Europe/Berlin", "2026-10-24T12:00:00", [
        "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
    ("30 2 * * *", "Europe/Berlin", "2026-10-25T02:45:00+01:00", [   # from inside the repeat
        "2026-10-26T02:30:00+01:00"]),
    ("*/30 2 * * *", "Europe/Berlin", "2026-10-25T00:00:00", [   # `*` in minute: both passes
        "2026-10-25T02:00:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-25T02:00:00+01:00",
        "2026-10-25T02:30:00+01:00", "2026-10-26T02:00:00+01:00"]),
    # Lord Howe Island shifts by 30 minutes: 2026-10-04 02:00 -> 02:30.
    ("15 2 * * *", "Australia/Lord_Howe", "2026-10-03T12:00:00", [
        "2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"]),
]


@pytest.mark.parametrize(("spec", "tz", "start", "expected"), DST_CASES)
def test_dst_follows_the_vixie_cron_rule(spec: str, tz: str, start: str,
                                         expected: list[str]) -> None:
    assert upcoming(spec, start, len(expected), tz) == expected


def test_interval_spec_in_the_first_pass_sees_the_repeat_of_an_earlier_wall_time() -> None:
    """At 01:45 EDT the next `*/30` tick is 01:00 EST, a wall time earlier than now."""
    schedule = parse_schedule("*/30 * * * *", timezone="America/New_York", anchor_ms=0)
    first_pass = at("2026-11-01T01:45:00-04:00")
    assert schedule.next_after(first_pass) == at("2026-11-01T01:00:00-05:00")


def _reference_matcher(spec: str) -> tuple[bool, Callable[[dt.datetime], bool]]:
    """An independent 5-field matcher over croniter's expansion, for the DST model below."""
    expanded = croniter.expand(spec)[0]
    sets = [None if field == ["*"] else {int(v) for v in field} for field in expanded]
    minutes, hours, days, months, weekdays = sets

    def matches(wall: dt.datetime) -> bool:
        if (minutes is not None and wall.minute not in minutes) or (
                hours is not None and wall.hour not in hours) or (
                months is not None and wall.month not in months):
            return False
        day_ok = days is None or wall.day in days
        weekday_ok = weekdays is None or (wall.isoweekday() % 7) in weekdays
        if days is not None and weekdays is not None:
            return day_ok or weekday_ok
        return day_ok and weekday_ok

    interval = any(field.startswith("*") for field in spec.split()[:2])
    return interval, matches


def _reference_ticks(spec: str, tz: str, start_s: int, end_s: int) -> list[int]:
    """Brute force over every minute of real time, applying docs/schedules.md literally."""
    zone = load_timezone(tz)
    interval, matches = _reference_matcher(spec)
    ticks: set[int] = set()
    previous_offset: dt.timedelta | None = None
    for instant in range(start_s, end_s, 60):
        local = dt.datetime.fromtimestamp(instant, zone)
        offset = local.utcoffset()
        assert offset is not None
        wall = local.replace(tzinfo=None, fold=0)
        repeated = wall.replace(tzinfo=zone, fold=1).utcoffset() != wall.replace(
            tzinfo=zone).utcoffset()
        if matches(wall) and (interval or not repeated or local.fold == 0):
            ticks.add(instant)
        if previous_offset is not None and offset > previous_offset and not interval:
            gap_start = wall - (offset - previous_offset)
            skipped = [gap_start + dt.timedelta(minutes=m)
                       for m in range((offset - previous_offset) // dt.timedelta(minutes=1))]
            if any(matches(w) for w in skipped):
                ticks.add(instant)  # the first instant after the jump
        previous_offset = offset
    return sorted(ticks)


@pytest.mark.parametrize("spec", ["30 2 * * *", "30 1 * * *", "0,15,30,45 1-3 * * *",
                                  "*/10 * * * *", "45 * * * *", "*/20 2 * * *", "0 */2 * * *",
                                  "5 2 * * 0", "59 1 * * *", "0 3 * * *"])
@pytest.mark.parametrize(("tz", "day"), [
    ("America/New_York", "2026-03-08"), ("America/New_York", "2026-11-01"),
    ("Europe/Berlin", "2026-03-29"), ("Europe/Berlin", "2026-10-25"),
    ("Australia/Lord_Howe", "2026-04-05"), ("Australia/Lord_Howe", "2026-10-04"),
])
def test_dst_matches_a_brute_force_model_of_the_documented_rule(spec: str, tz: str,
                                                                day: str) -> None:
    start_ms = at(f"{day}T00:00:00", tz) - 3 * 3_600_000
    end_ms = start_ms + 9 * 3_600_000
    schedule = parse_schedule(spec, timezone=tz, anchor_ms=0)
    got = ticks_between(schedule, start_ms - 1, end_ms - 1, 1000)
    assert [t // 1000 for t in got] == _reference_ticks(spec, tz, start_ms // 1000,
                                                        end_ms // 1000)


# --------------------------------------------------------------------------- croniter oracle

_FIELD_RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 6)]


@st.composite
def cron_fields(draw: st.DrawFn, low: int, high: int) -> str:
    """A random field: `*`, `*/n`, values, ranges and steps.

    Avoids where croniter 7 differs from us (each pinned by a hand-written case above):
    day-of-week 7 and one-value ranges such as `5-5`, which croniter expands to every value,
    and `*/1`, which croniter treats as a day restriction (robfig/cron and Vixie do not).
    """
    def item() -> str:
        kind = draw(st.sampled_from(["value", "range", "step", "star-step"]))
        a = draw(st.integers(low, high))
        if kind == "value" or a == high:
            return str(a)
        b = draw(st.integers(a + 1, high))
        if kind == "range":
            return f"{a}-{b}"
        n = draw(st.integers(2, high - low + 1))
        return f"{a}-{b}/{n}" if kind == "step" else f"*/{n}"

    if draw(st.booleans()):
        return "*"
    return ",".join(item() for _ in range(draw(st.integers(1, 3))))


@st.composite
def cron_specs(draw: st.DrawFn) -> str:
    fields = [draw(cron_fields(low, high)) for low, high in _FIELD_RANGES]
    if draw(st.booleans()):
        fields.insert(0, draw(cron_fields(0, 59)))
    return " ".join(fields)


def _croniter_next(spec: str, t_ms: int) -> int | None:
    start = dt.datetime.fromtimestamp(t_ms / 1000, dt.UTC)
    iterator = croniter(spec, start, second_at_beginning=len(spec.split()) == 6)
    return int(iterator.get_next(float) * 1000)


@settings(max_examples=150, deadline=None)
@given(spec=cron_specs(), t_ms=st.integers(T2026 - 20 * 365 * DAY_MS, T2026 + 20 * 365 * DAY_MS))
def test_utc_cron_agrees_with_croniter(spec: str, t_ms: int) -> None:
    try:
        schedule = parse_schedule(spec, anchor_ms=0)
    except ScheduleError as error:
        assert "never fire" in str(error)  # e.g. day 30 in February only
        return
    assert isinstance(schedule, CronSchedule)
    day_fields, canonical_days = spec.split()[-5::2][1:], schedule.expression.split()[-5::2][1:]
    # Both day fields restricted and one covers every day: we say "every day" (robfig/cron's
    # OR); croniter may AND them, depending on whether the other field's text contains `*`.
    assume(not ("*" not in day_fields and canonical_days == ["*", "*"]))
    assert schedule.next_after(t_ms) == _croniter_next(spec, t_ms)


# --------------------------------------------------------------------------- @every


def test_every_is_anchored_at_the_anchor_not_at_the_query_time() -> None:
    anchor = at("2026-01-01T00:00:07Z")
    schedule = parse_schedule("@every 1m", anchor_ms=anchor)
    assert schedule.next_after(anchor) == anchor + 60_000
    assert schedule.next_after(anchor - 10**9) == anchor + 60_000  # tick 1 is the first
    assert schedule.next_after(anchor + 60_000) == anchor + 120_000
    assert schedule.next_after(anchor + 61_234) == anchor + 120_000
    # Whoever asks, whenever: ticks keep the :07 phase.
    assert all((tick - anchor) % 60_000 == 0
               for tick in ticks_between(schedule, anchor + 12_345_678, 2**62, 5))


@given(anchor=st.integers(0, 2**45), period=st.integers(1, 10**10), t_ms=st.integers(0, 2**50))
def test_every_next_after_is_the_smallest_tick_after(anchor: int, period: int, t_ms: int) -> None:
    schedule = EverySchedule(spec="@every x", timezone="UTC", anchor_ms=anchor, period_ms=period)
    tick = schedule.next_after(t_ms)
    assert tick is not None and tick > t_ms
    k, remainder = divmod(tick - anchor, period)
    assert remainder == 0 and k >= 1
    assert k == 1 or anchor + (k - 1) * period <= t_ms


def test_every_with_a_huge_tick_index() -> None:
    schedule = parse_schedule("@every 1ms", anchor_ms=5)
    assert schedule.next_after(10**15) == 10**15 + 1
    hourly = parse_schedule("@every 1h", anchor_ms=0)
    assert hourly.next_after(10**17 + 1) == (10**17 // 3_600_000 + 1) * 3_600_000


@pytest.mark.parametrize(("text", "ms"), [
    ("90s", 90_000), ("1h30m", 5_400_000), ("500ms", 500), ("2h45m10s", 9_910_000),
    ("1.5h", 5_400_000), (".5s", 500), ("1.s", 1_000), ("+5m", 300_000), ("1000us", 1),
    ("1000\u00b5s", 1), ("1000\u03bcs", 1), ("1000000ns", 1), ("1h0.5m", 3_630_000),
    ("0.001s", 1), ("1.1h", 3_960_000),
])
def test_go_durations(text: str, ms: int) -> None:
    assert parse_duration_ms(text) == ms


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "empty"), ("0", "zero"), ("0s", "zero"), ("0.0h", "zero"), ("-5s", "negative"),
    ("5", "missing unit"), ("5x", "unknown unit 'x'"), ("1us", "whole number of milli"),
    ("1.5ms", "whole number of milli"), ("1h 30m", "unknown unit 'h '"), ("h", "expected a"),
    (".s", "expected a"), ("1e3s", "unknown unit 'e'"), ("3000000h", "out of range"),
    ("1" * 70 + "s", "longer than"),
])
def test_bad_go_durations_are_rejected_with_a_reason(text: str, fragment: str) -> None:
    with pytest.raises(DurationError, match=fragment):
        parse_duration_ms(text)


@given(st.integers(1, DURATION_MS_MAX))
def test_duration_format_round_trips(ms: int) -> None:
    assert parse_duration_ms(format_duration_ms(ms)) == ms


# --------------------------------------------------------------------------- @at, @manually


def test_at_fires_once_and_a_past_at_never_fires() -> None:
    schedule = parse_schedule("@at 2026-11-24T10:00:00Z", anchor_ms=T2026)
    instant = at("2026-11-24T10:00:00Z")
    assert schedule.next_after(T2026) == instant
    assert schedule.first_at_or_after(instant) == instant
    assert schedule.next_after(instant) is None
    past = parse_schedule("@at 2020-01-01T00:00:00Z", anchor_ms=T2026)
    assert past.next_after(T2026) is None  # accepted, like Dkron, but it will never fire


@pytest.mark.parametrize(("spec", "tz", "expected"), [
    ("@at 2026-11-24T10:00:00+01:00", "UTC", "2026-11-24T09:00:00Z"),
    ("@at 2026-11-24T10:00:00", "Europe/Berlin", "2026-11-24T09:00:00Z"),  # naive: job zone
    ("@at 2026-07-01T10:00:00", "America/New_York", "2026-07-01T14:00:00Z"),
    ("@at 2026-03-08T02:30:00", "America/New_York", "2026-03-08T07:00:00Z"),  # gap: 03:00 EDT
    ("@at 2026-11-01T01:30:00", "America/New_York", "2026-11-01T05:30:00Z"),  # first 01:30
    ("@at 2026-11-01T01:30:00-05:00", "America/New_York", "2026-11-01T06:30:00Z"),
])
def test_at_offsets_and_naive_times(spec: str, tz: str, expected: str) -> None:
    schedule = parse_schedule(spec, timezone=tz, anchor_ms=0)
    assert schedule.next_after(0) == at(expected)
    assert schedule.spec == f"@at {expected}"


def test_manually_never_fires() -> None:
    schedule = parse_schedule("@manually", timezone="Asia/Tokyo", anchor_ms=0)
    assert schedule.next_after(0) is None and schedule.first_at_or_after(T2026) is None


# --------------------------------------------------------------------------- ticks_between


def test_ticks_between_is_half_open_and_bounded() -> None:
    schedule = parse_schedule("0 * * * *", anchor_ms=0)
    hour = 3_600_000
    assert ticks_between(schedule, T2026, T2026 + 3 * hour, 10) == [
        T2026 + hour, T2026 + 2 * hour, T2026 + 3 * hour]
    assert ticks_between(schedule, T2026 - 1, T2026 + 3 * hour, 2) == [T2026, T2026 + hour]
    assert ticks_between(schedule, T2026, T2026 + hour - 1, 10) == []
    assert ticks_between(schedule, T2026, T2026 + 5 * hour, 0) == []


def test_windowed_schedule_has_no_ticks_outside_the_window() -> None:
    inner = parse_schedule("@every 1h", anchor_ms=T2026)
    hour = 3_600_000
    bounded = windowed(inner, T2026 + 2 * hour, T2026 + 4 * hour)
    assert ticks_between(bounded, 0, 2**62, 10) == [T2026 + 2 * hour, T2026 + 3 * hour,
                                                    T2026 + 4 * hour]
    assert (bounded.kind, bounded.spec) == ("every", "@every 1h")
    assert windowed(inner, None, None) is inner


# --------------------------------------------------------------------------- errors

ERROR_CASES = [
    ("61 * * * *", "'61 * * * *': minute value 61 out of range 0-59"),
    ("* 24 * * *", "hour value 24 out of range 0-23"),
    ("* * 0 * *", "day-of-month value 0 out of range 1-31"),
    ("* * * 13 *", "month value 13 out of range 1-12"),
    ("* * * * 8", "day-of-week value 8 out of range 0-7"),
    ("60 * * * * *", "second value 60 out of range 0-59"),
    ("99999999999 * * * *", "minute value 99999999999 out of range"),
    ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week) or 6 "
                "(with seconds first), got 4"),
    ("* * * * * * *", "got 7"),
    ("*/0 * * * *", "step must be at least 1"),
    ("*/x * * * *", "step 'x' is not a number"),
    ("5-1 * * * *", "range 5-1 is reversed"),
    ("? * * * *", "minute: '?' is only allowed in day-of-month and day-of-week"),
    ("0 0 L * *", "day-of-month: bad value 'l' (expected a number 1-31)"),
    ("0 0 15W * *", "day-of-month: bad value '15w'"),
    ("0 0 * * 1#2", "day-of-week: unsupported syntax '1#2'"),
    ("0 0 * * fry", "day-of-week: bad value 'fry'"),
    ("0 0 * foo *", "month: bad value 'foo'"),
    ("1,,2 * * * *", "empty list item"),
    ("0 0 30 2 *", "never fire"),
    ("0 0 31 4,6,9,11 *", "never fire"),
    ("@fortnightly", "unknown descriptor '@fortnightly'"),
    ("@daily 5", "@daily takes no argument"),
    ("@every", "@every: empty duration"),
    ("@every 0s", "@every: duration '0s' is zero"),
    ("@every -1m", "negative"),
    ("@every 5parsecs", "unknown unit 'parsecs'"),
    ("@every 1h 30m", "unknown unit 'h '"),
    ("@at tomorrow", "@at: 'tomorrow' is not an RFC 3339 time"),
    ("@at 2026-02-30T00:00:00Z", "day is out of range"),
    ("@at 2026-01-01T00:00:00.0001Z", "sub-millisecond"),
    ("@at 2026-01-01T00:00:00+24:00", "offset out of range"),
    ("", "empty"),
    ("   ", "empty"),
    ("x" * 300, "longer than 256"),
    ("* * * * \u0661", "unsupported syntax"),  # an Arabic-Indic digit is not a digit here
]


@pytest.mark.parametrize(("spec", "fragment"), ERROR_CASES)
def test_invalid_specs_raise_schedule_error_naming_the_problem(spec: str, fragment: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        parse_schedule(spec, anchor_ms=0)
    assert fragment in str(caught.value)
    assert type(caught.value) is ScheduleError  # not croniter's own exception types
    assert isinstance(caught.value, ValueError)
    assert str(caught.value).startswith("schedule ")


@pytest.mark.parametrize(("tz", "pattern"), [
    ("Mars/Base", "timezone 'Mars/Base': unknown IANA time zone"),
    ("", "timezone '': not an IANA zone name"),
    ("../../etc/passwd", "not an IANA zone name"),
    ("/usr/share/zoneinfo/UTC", "not an IANA zone name"),
    ("localtime", "depends on the host"),
    ("America", "unknown IANA time zone"),  # a directory, not a zone
    ("Europe/Berlin\x00", "not an IANA zone name"),
])
def test_invalid_timezones_are_rejected_naming_the_field(tz: str, pattern: str) -> None:
    with pytest.raises(ScheduleError, match=pattern):
        parse_schedule("* * * * *", timezone=tz, anchor_ms=0)


def test_non_string_inputs() -> None:
    with pytest.raises(ScheduleError, match="expected a string"):
        parse_schedule(5, anchor_ms=0)  # type: ignore[arg-type]
    with pytest.raises(ScheduleError, match="timezone"):
        parse_schedule("* * * * *", timezone=None, anchor_ms=0)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse_schedule("* * * * *", anchor_ms=1.5)  # type: ignore[arg-type]


_CRON_ALPHABET = "0123456789*/,-? @LW#abcdefghijklmnopqrstuvwxyzJFMASOND:.TZ+\t\u00b5"


@settings(max_examples=300, deadline=None)
@given(spec=st.one_of(st.text(max_size=60), st.text(alphabet=_CRON_ALPHABET, max_size=40)),
       tz=st.sampled_from(["UTC", "America/New_York", "Europe/Berlin"]),
       t_ms=st.integers(-(2**40), 2**48))
def test_garbage_never_raises_anything_but_schedule_error(spec: str, tz: str, t_ms: int) -> None:
    try:
        schedule = parse_schedule(spec, timezone=tz, anchor_ms=T2026)
    except ScheduleError:
        return
    tick = schedule.next_after(t_ms)
    assert tick is None or tick > t_ms


@settings(max_examples=100, deadline=None)
@given(tz=st.text(max_size=30))
def test_garbage_timezones_never_raise_anything_but_schedule_error(tz: str) -> None:
    try:
        load_timezone(tz)
    except ScheduleError:
        pass


# --------------------------------------------------------------------------- the CLI


def test_cli_next_prints_times_in_the_zone(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["cron", "next", "30 2 * * *", "--tz", "America/New_York",
                 "--from", "2026-03-07T00:00:00", "--count", "3"])
    assert code == 0
    assert capsys.readouterr().out.splitlines() == [
        "2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]


def test_cli_next_json_and_every_anchored_at_from(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["cron", "next", "@every 90s", "--from", "2026-01-01T00:00:07Z", "--count", "2",
                 "--json"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document == {
        "spec": "@every 1m30s", "kind": "every", "timezone": "UTC",
        "from": "2026-01-01T00:00:07+00:00",
        "times": ["2026-01-01T00:01:37+00:00", "2026-01-01T00:03:07+00:00"],
        "times_ms": [T2026 + 97_000, T2026 + 187_000]}


def test_cli_next_six_fields(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cron", "next", "*/20 * * * * *", "--from", "2026-01-01T00:00:00Z",
                 "--count", "2"]) == 0
    assert capsys.readouterr().out.split() == ["2026-01-01T00:00:20+00:00",
                                               "2026-01-01T00:00:40+00:00"]


def test_cli_next_one_shot_says_when_there_is_no_more(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cron", "next", "@at 2026-05-01T12:00:00", "--tz", "Europe/Berlin",
                 "--from", "2026-01-01T00:00:00Z", "--count", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == ["2026-05-01T12:00:00+02:00"]
    assert "no further fire times" in captured.err


@pytest.mark.parametrize(("argv", "fragment"), [
    (["61 * * * *"], "minute value 61 out of range 0-59"),
    (["* * * * *", "--tz", "Mars/Base"], "--tz: timezone 'Mars/Base'"),
    (["* * * * *", "--from", "yesterday"], "--from: 'yesterday' is not an RFC 3339 time"),
    (["* * * * *", "--count", "0"], "--count must be between 1 and"),
])
def test_cli_next_errors_are_one_line_and_exit_2(argv: list[str], fragment: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    start = [] if "--from" in argv else ["--from", "2026-01-01T00:00:00Z"]
    assert main(["cron", "next", *argv, *start]) == 2
    err = capsys.readouterr().err
    assert fragment in err and err.count("\n") == 1 and err.startswith("raftcron cron: error:")


def test_cli_help_explains_the_syntax(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["cron", "next", "--help"])
    out = capsys.readouterr().out
    for fragment in ("@every <Go duration>", "@at <RFC 3339 time>", "seconds first",
                     "anchor is --from", "Vixie cron", "raftcron cron next"):
        assert fragment in out
