"""The exactly-once, liveness and no-SPOF checkers, each shown failing on a hand-written
history that breaks its guarantee (and passing on the history that keeps it)."""

from __future__ import annotations

from jepsen_like.exactly_once import (
    FaultWindows, FinishRecord, JobTimeline, LedgerEvent, OutcomeRecord, check_exactly_once,
    check_no_spof, check_tick_liveness,
)
from scheduler.schedule import parse_schedule

EVERY = parse_schedule("@every 1s", anchor_ms=0)
JOB = JobTimeline("tick", EVERY, anchor_ms=0)
A1, A2 = ("tick", 1_000, 0, 1), ("tick", 1_000, 0, 2)
NODES = ["n1", "n2", "n3", "n4", "n5"]


def fired(tick: int, index: int = 0, t: float | None = None) -> OutcomeRecord:
    return OutcomeRecord("tick", "fired", tick, tick, 1, "schedule", index,
                         float(tick) if t is None else t)


def kinds(violations: list) -> list[str]:  # type: ignore[type-arg]
    return [v.kind for v in violations]


# ---- guarantee 2 -------------------------------------------------------------------------------


def test_a_clean_history_has_no_violations() -> None:
    ledger = [LedgerEvent(1_000, "n1", "start", A1), LedgerEvent(2_000, "n1", "abandon", A1),
              LedgerEvent(9_000, "n2", "start", A2), LedgerEvent(9_500, "n2", "finish", A2, True)]
    assert check_exactly_once([fired(1_000, 5)], [FinishRecord(A2, 9)], ledger) == []


def test_two_committed_fires_of_one_tick_are_a_duplicate_fire() -> None:
    violations = check_exactly_once([fired(1_000, 5), fired(1_000, 8)], [], [])
    assert kinds(violations) == ["duplicate_fire"]
    assert violations[0].tick_ms == 1_000 and "[5, 8]" in violations[0].detail


def test_two_committed_finishes_of_one_attempt_are_a_violation() -> None:
    violations = check_exactly_once([], [FinishRecord(A1, 5), FinishRecord(A1, 9, False)], [])
    assert kinds(violations) == ["duplicate_finish"] and violations[0].attempt == A1


def test_an_attempt_started_twice_is_a_duplicate_start() -> None:
    ledger = [LedgerEvent(1_000, "n1", "start", A1), LedgerEvent(1_500, "n1", "finish", A1),
              LedgerEvent(1_200, "n3", "start", A1), LedgerEvent(1_700, "n3", "finish", A1)]
    assert kinds(check_exactly_once([], [], ledger)) == ["duplicate_start"]


def test_two_attempts_of_one_execution_running_at_once_overlap() -> None:
    ledger = [LedgerEvent(1_000, "n1", "start", A1), LedgerEvent(5_000, "n1", "abandon", A1),
              LedgerEvent(4_000, "n2", "start", A2), LedgerEvent(6_000, "n2", "finish", A2)]
    violations = check_exactly_once([], [], ledger)
    assert kinds(violations) == ["overlapping_attempts"]
    assert "until 5000.0 ms" in violations[0].detail


def test_a_run_never_stopped_overlaps_any_later_attempt() -> None:
    ledger = [LedgerEvent(1_000, "n1", "start", A1), LedgerEvent(60_000, "n2", "start", A2)]
    assert kinds(check_exactly_once([], [], ledger)) == ["overlapping_attempts"]


def test_a_frozen_run_is_not_running_and_touching_intervals_do_not_overlap() -> None:
    ledger = [LedgerEvent(1_000, "n1", "start", A1), LedgerEvent(2_000, "n1", "suspend", A1),
              LedgerEvent(3_000, "n2", "start", A2), LedgerEvent(4_000, "n2", "finish", A2),
              LedgerEvent(9_000, "n1", "abandon", A1)]
    assert check_exactly_once([], [], ledger) == []
    resumed = [*ledger[:2], LedgerEvent(3_500, "n1", "resume", A1), *ledger[2:]]
    assert kinds(check_exactly_once([], [], resumed)) == ["overlapping_attempts"]


def test_records_survive_json() -> None:
    outcome = fired(1_000, 3, 1_004.5)
    assert OutcomeRecord.from_json(outcome.to_json()) == outcome
    event = LedgerEvent(5.25, "n1", "finish", A1, False)
    assert LedgerEvent.from_json(event.to_json()) == event


# ---- guarantee 3 -------------------------------------------------------------------------------


def test_every_due_tick_with_one_outcome_is_live() -> None:
    outcomes = [fired(1_000), OutcomeRecord("tick", "missed", 2_000, 4_000, 3),
                OutcomeRecord("tick", "skipped", 5_000, 5_000),
                OutcomeRecord("tick", "fired", 5_500, 5_500, trigger="run-now")]
    report = check_tick_liveness([JOB], outcomes, end_ms=7_000, margin_ms=1_500)
    assert (report.due, report.fired, report.missed, report.skipped, report.lost) == (5, 1, 3, 1,
                                                                                       0)
    assert report.violations == []


def test_a_due_tick_without_an_outcome_is_lost() -> None:
    report = check_tick_liveness([JOB], [fired(1_000), fired(3_000)], end_ms=3_000,
                                 margin_ms=0)
    assert kinds(report.violations) == ["lost_tick"] and report.violations[0].tick_ms == 2_000
    assert report.lost == 1


def test_two_outcomes_for_one_tick_are_a_liveness_violation_too() -> None:
    outcomes = [fired(1_000), OutcomeRecord("tick", "missed", 1_000, 2_000, 2)]
    report = check_tick_liveness([JOB], outcomes, end_ms=2_000, margin_ms=0)
    assert kinds(report.violations) == ["duplicate_outcome"]


def test_outcomes_for_ticks_the_schedule_lacks_are_invented() -> None:
    outcomes = [fired(1_000), fired(1_500), OutcomeRecord("tick", "missed", 2_000, 4_000, 2),
                OutcomeRecord("ghost", "fired", 1_000, 1_000)]
    report = check_tick_liveness([JOB], outcomes, end_ms=1_000, margin_ms=0)
    assert kinds(report.violations) == ["invented_tick"] * 3


def test_an_updated_job_owes_each_definitions_ticks_within_its_span() -> None:
    old = JobTimeline("tick", EVERY, anchor_ms=0, until_ms=2_500)
    new = JobTimeline("tick", parse_schedule("@every 2s", anchor_ms=2_500), anchor_ms=2_500)
    outcomes = [fired(1_000), fired(2_000), fired(4_500), fired(6_500)]
    report = check_tick_liveness([old, new], outcomes, end_ms=7_000, margin_ms=0)
    assert (report.due, report.fired, report.violations) == (4, 4, [])
    stale = check_tick_liveness([old, new], [*outcomes, fired(3_000)], end_ms=7_000, margin_ms=0)
    assert kinds(stale.violations) == ["invented_tick"]  # the old definition's, after the update


# ---- guarantee 4 -------------------------------------------------------------------------------

BOUND = 500.0


def test_with_a_quorum_up_every_tick_fires_within_the_bound() -> None:
    outcomes = [fired(t, t=t + 300.0) for t in range(1_000, 10_001, 1_000)]
    windows = FaultWindows(down=[("n1", 0.0, 20_000.0), ("n2", 0.0, 20_000.0)])
    assert check_no_spof([JOB], outcomes, windows, NODES, 10_500.0, BOUND) == []


def test_a_missing_late_or_missed_tick_with_a_quorum_up_is_a_violation() -> None:
    outcomes = [fired(1_000), fired(2_000, t=2_900.0),
                OutcomeRecord("tick", "missed", 3_000, 3_000)]
    violations = check_no_spof([JOB], outcomes, FaultWindows(), NODES, 4_500.0, BOUND)
    assert kinds(violations) == ["late_fire", "missed_with_quorum", "not_fired"]


def test_no_obligation_without_a_connected_quorum() -> None:
    nothing: list[OutcomeRecord] = []
    majority_down = FaultWindows(down=[(n, 0.0, 9e9) for n in ("n1", "n2", "n3")])
    assert check_no_spof([JOB], nothing, majority_down, NODES, 4_500.0, BOUND) == []
    split_three_ways = FaultWindows(partitions=[(0.0, 9e9, [["n1"], ["n2", "n3"],
                                                            ["n4", "n5"]])])
    assert check_no_spof([JOB], nothing, split_three_ways, NODES, 4_500.0, BOUND) == []
    lossy = FaultWindows(degraded=[(0.0, 9e9)])
    assert check_no_spof([JOB], nothing, lossy, NODES, 4_500.0, BOUND) == []


def test_a_majority_side_of_a_partition_owes_every_tick() -> None:
    windows = FaultWindows(partitions=[(0.0, 9e9, [["n1", "n2"], ["n3", "n4", "n5"]])],
                           down=[("n3", 2_000.0, 2_200.0)])
    violations = check_no_spof([JOB], [], windows, NODES, 4_500.0, BOUND)
    assert [v.tick_ms for v in violations] == [1_000, 3_000, 4_000]  # 2000: n3 was down
