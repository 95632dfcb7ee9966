"""The packed job histories (scheduler/history.py) read back exactly what was written, keep
only the newest rows, and leave the snapshot's bytes as they were with plain lists."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.commands import PutJob
from scheduler.history import (
    append_row, decode_executions, decode_outcomes, encode_execution, encode_outcome, pack_rows,
    execution_row,
)
from scheduler.machine import SchedulerStateMachine
from scheduler.results import Outcome
from scheduler.state import RECENT_MAX, SchedulerState, _outcome_fields

texts = st.sampled_from(["fired", "skipped", "missed", "", "late", "overlap", "schedule",
                         "run-now", "parent", "something else", "x" * 300])
times = st.integers(min_value=0, max_value=2**62)
outcomes = st.builds(
    lambda job, kind, first, span, count, reason, trigger, slots: Outcome(
        job, kind, first, first + span, count, reason, trigger, slots),
    st.sampled_from(["job-a", "job-b", "a-much-longer-job-name-" + "z" * 150]), texts, times,
    st.integers(0, 10**9), st.integers(1, 10**6), texts, texts, st.integers(0, 64))
executions = st.tuples(times, st.integers(0, 1000),
                       st.sampled_from(["succeeded", "failed", "unreachable", "odd state"]),
                       st.integers(1, 101))


@settings(max_examples=200, deadline=None)
@given(st.lists(outcomes, max_size=80), st.integers(1, 40))
def test_outcomes_read_back_as_written_newest_kept(written: list[Outcome], keep: int) -> None:
    blob, count = b"", 0
    for outcome in written:
        blob, count = append_row(blob, count, encode_outcome(outcome, "job-a"), keep)
    assert decode_outcomes(blob, "job-a") == written[-keep:]
    assert count == len(written[-keep:])


@settings(max_examples=200, deadline=None)
@given(st.lists(executions, max_size=40), st.integers(1, 20))
def test_executions_read_back_as_written_newest_kept(written: list[tuple[Any, ...]],
                                                     keep: int) -> None:
    blob, count = b"", 0
    for row in written:
        blob, count = append_row(blob, count, encode_execution(*row), keep)
    assert decode_executions(blob) == [list(row) for row in written[-keep:]]
    packed, packed_count = pack_rows((execution_row(*row) for row in written), keep)
    assert (packed, packed_count) == (blob, count)


def _state_with_full_histories() -> SchedulerState:
    m = SchedulerStateMachine()
    for i in range(3):
        assert m.apply_command(PutJob(now_ms=1_000, job={"name": f"j{i}",
                                                         "schedule": "@every 1s"})).ok
    job = m.state.jobs["j1"]
    for k in range(RECENT_MAX + 5):
        tick = 2_000 + 1_000 * k
        job.note(Outcome("j1", "fired", tick, tick, 1, "", "schedule", 1))
        job.note_execution(tick, 0, "succeeded" if k % 3 else "odd", 1, 16)
    job.note(Outcome("j1", "missed", 90_000, 99_000, 10, "late"))
    job.note(Outcome("other", "fired", 99_000, 99_000, 1, "new-reason", "new-trigger", 2))
    return m.state


def test_snapshot_format_2_holds_the_packed_histories_as_they_are() -> None:
    """Format 2 packs each job row with its two history buffers and their counts; the bytes
    are what packing the whole structure of plain lists at once gives."""
    state = _state_with_full_histories()
    rows = [[j.spec.to_json(), j.version, j.anchor_ms, j.cursor_ms, j.state, j.fired, j.skipped,
             j.missed, j.live_executions, j.last_run_ms, j.last_success_ms, j.last_error_ms,
             j._recent, j._recent_count, j._executions, j._executions_count]
            for j in state.jobs.values()]
    expected = msgpack.packb([2, state.applied_index, rows, [], [], [], [], [], [], state.totals],
                             use_bin_type=True)
    assert state.snapshot() == expected
    job = state.jobs["j1"]
    assert len(job.recent) == RECENT_MAX and len(job.recent_executions) == 16
    restored = SchedulerState.restore(expected)
    assert restored.snapshot() == expected
    assert restored.jobs["j1"].recent == job.recent
    assert restored.jobs["j1"].recent_executions == job.recent_executions


def test_a_format_1_snapshot_still_restores_to_the_same_state() -> None:
    """Snapshots written before format 2 (histories as rows of plain fields) are still read."""
    state = _state_with_full_histories()
    rows = [[j.spec.to_json(), j.version, j.anchor_ms, j.cursor_ms, j.state, j.fired, j.skipped,
             j.missed, j.live_executions, j.last_run_ms, j.last_success_ms, j.last_error_ms,
             [_outcome_fields(o) for o in j.recent], j.recent_executions]
            for j in state.jobs.values()]
    format_1 = msgpack.packb([1, state.applied_index, rows, [], [], [], [], [], [], state.totals],
                             use_bin_type=True)
    restored = SchedulerState.restore(format_1)
    assert restored.snapshot() == state.snapshot()
    assert restored.jobs["j1"].recent == state.jobs["j1"].recent


def test_an_unknown_snapshot_format_or_a_malformed_job_row_is_refused() -> None:
    state = _state_with_full_histories()
    with pytest.raises(ValueError, match="unknown scheduler snapshot format 3"):
        SchedulerState.restore(msgpack.packb([3, 0, [], [], [], [], [], [], [], {}]))
    row = msgpack.unpackb(state.snapshot(), raw=False, strict_map_key=False)[2][0]
    row[12] = "not bytes"
    with pytest.raises(ValueError, match="malformed job row"):
        SchedulerState.restore(msgpack.packb([2, 0, [row], [], [], [], [], [], [], {}],
                                             use_bin_type=True))
