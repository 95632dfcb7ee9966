"""History format: parsing, pairing, the recorder, and the errors for malformed input."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from jepsen_like.history import (
    Event,
    HistoryError,
    HistoryRecorder,
    Operation,
    dump_history,
    load_history,
    pair_operations,
    parse_history,
)


def lines(*records: dict[str, object]) -> list[str]:
    return [json.dumps(record) for record in records]


def test_pairs_invokes_with_completions_per_process() -> None:
    events = parse_history(
        lines(
            {"index": 0, "time": 0, "process": 0, "type": "invoke", "f": "write", "value": 1},
            {"index": 1, "time": 5, "process": 1, "type": "invoke", "f": "read", "value": None},
            {"index": 2, "time": 7, "process": 1, "type": "ok", "f": "read", "value": 1},
            {"index": 3, "time": 9, "process": 0, "type": "ok", "f": "write", "value": 1},
        )
    )
    write, read = pair_operations(events)
    assert write == Operation(0, 0, "write", None, 1, 1, 0, 9, "ok", complete_index=3)
    assert (read.f, read.input, read.output) == ("read", None, 1)
    assert (read.call_ns, read.return_ns) == (5, 7)


def test_fail_is_dropped_and_info_is_open_ended() -> None:
    recorder = HistoryRecorder(iter(range(0, 1000, 10)).__next__)
    recorder.invoke(0, "cas", [0, 1])
    recorder.fail(0, "cas", [0, 1], error="precondition failed")
    recorder.invoke(1, "write", 7)
    recorder.info(1, "write", 7, error="timeout")
    (crashed,) = recorder.operations()
    assert crashed.status == "info"
    assert crashed.return_ns is None
    assert crashed.input == 7


def test_invocation_still_open_at_the_end_counts_as_info() -> None:
    recorder = HistoryRecorder(iter(range(100)).__next__)
    recorder.invoke("c1", "write", 3, key="k")
    (open_op,) = recorder.operations()
    assert (open_op.status, open_op.return_ns, open_op.key) == ("info", None, "k")


def test_process_reused_after_info_is_tolerated() -> None:
    """Jepsen retires a process after `info`; histories that do not are still paired."""
    recorder = HistoryRecorder(iter(range(100)).__next__)
    recorder.invoke(0, "write", 1)
    recorder.info(0, "write", 1)
    recorder.invoke(0, "read")
    recorder.ok(0, "read", 1)
    first, second = recorder.operations()
    assert (first.status, second.status) == ("info", "ok")


def test_cas_values_become_hashable_tuples() -> None:
    (event,) = parse_history(
        lines({"index": 0, "time": 1, "process": 0, "type": "invoke", "f": "cas", "value": [1, 2]})
    )
    assert event.value == (1, 2)
    hash(event)


def test_nemesis_events_are_skipped() -> None:
    events = parse_history(
        lines(
            {"time": 0, "process": "nemesis", "type": "info", "f": "start-partition"},
            {"time": 1, "process": 0, "type": "invoke", "f": "write", "value": 1},
            {"time": 2, "process": "nemesis", "type": "info", "f": "start-partition"},
            {"time": 3, "process": 0, "type": "ok", "f": "write", "value": 1},
        )
    )
    assert [op.f for op in pair_operations(events)] == ["write"]


def test_missing_index_defaults_to_position() -> None:
    events = parse_history(["", '{"time": 0, "process": 0, "type": "invoke", "f": "read"}'])
    assert events[0].index == 0
    assert events[0].line == 2


@pytest.mark.parametrize(
    ("records", "message"),
    [
        (
            [{"time": 0, "process": 0, "type": "ok", "f": "read", "value": 1}],
            "line 1: ok for process 0 without a matching invoke",
        ),
        (
            [
                {"time": 0, "process": 0, "type": "invoke", "f": "read"},
                {"time": 1, "process": 0, "type": "invoke", "f": "read"},
            ],
            "line 2: process 0 invokes while its operation from line 1 is still in flight",
        ),
        (
            [{"time": 0, "process": 0, "type": "started", "f": "read"}],
            "line 1: unknown type 'started'",
        ),
        ([{"time": 0, "process": 0, "type": "invoke", "f": "append"}], "line 1: unknown f"),
        ([{"time": 0.5, "process": 0, "type": "invoke", "f": "read"}], "line 1: time must be int"),
        ([{"time": 0, "process": 0, "type": "invoke", "f": "cas", "value": 3}], "[expected, new]"),
        ([{"time": 0, "process": 0, "type": "invoke", "f": "read", "node": 1}], "unknown fields"),
        ([{"time": 0, "type": "invoke", "f": "read"}], "line 1: missing field 'process'"),
        (
            [
                {"time": 5, "process": 0, "type": "invoke", "f": "read"},
                {"time": 4, "process": 0, "type": "ok", "f": "read", "value": 1},
            ],
            "line 2: completion time is before its invocation",
        ),
        (
            [
                {"time": 0, "process": 0, "type": "invoke", "f": "read"},
                {"time": 4, "process": 0, "type": "ok", "f": "write", "value": 1},
            ],
            "line 2: completes a 'read' with f='write'",
        ),
    ],
)
def test_malformed_histories_name_the_line(records: list[dict[str, object]], message: str) -> None:
    with pytest.raises(HistoryError, match=message.replace("[", r"\[").replace("(", r"\(")):
        pair_operations(parse_history(lines(*records)))


def test_invalid_json_names_the_line() -> None:
    with pytest.raises(HistoryError, match="line 2: not JSON"):
        parse_history(['{"time": 0, "process": 0, "type": "invoke", "f": "read"}', "{oops"])


def test_dump_then_load_round_trips(tmp_path: Path) -> None:
    recorder = HistoryRecorder(iter(range(0, 100, 3)).__next__)
    recorder.invoke(0, "cas", [None, 1], key="a")
    recorder.ok(0, "cas", [None, 1], key="a")
    recorder.invoke(1, "read", key="a")
    recorder.info(1, "read", key="a", error="timeout")
    path = tmp_path / "history.jsonl"
    recorder.dump(path)
    loaded = load_history(path)
    assert loaded == list(recorder.events)
    assert [event.line for event in loaded] == [1, 2, 3, 4]
    assert "key" not in json.loads(_write_and_read_single(tmp_path))


def _write_and_read_single(tmp_path: Path) -> str:
    path = tmp_path / "single.jsonl"
    dump_history([Event(0, 0, 0, "invoke", "write", value=1)], path)
    return path.read_text().strip()


def test_recorder_uses_only_the_clock_it_is_given() -> None:
    ticks = iter([5, 5, 9])
    recorder = HistoryRecorder(lambda: next(ticks))
    recorder.invoke(0, "read")
    recorder.ok(0, "read", None)
    recorder.invoke(1, "write", 2)
    assert [(event.index, event.time) for event in recorder] == [(0, 5), (1, 5), (2, 9)]
    assert len(recorder) == 3


def test_recorder_rejects_a_clock_that_goes_backwards_or_is_not_int() -> None:
    backwards = HistoryRecorder(iter([10, 3]).__next__)
    backwards.invoke(0, "read")
    with pytest.raises(ValueError, match="backwards"):
        backwards.ok(0, "read", None)
    with pytest.raises(TypeError, match="int nanoseconds"):
        HistoryRecorder(time.monotonic).invoke(0, "read")  # type: ignore[arg-type]


def test_recorder_works_with_real_monotonic_clock() -> None:
    recorder = HistoryRecorder(time.monotonic_ns)
    recorder.invoke(0, "write", 1)
    recorder.ok(0, "write", 1)
    (operation,) = recorder.operations()
    assert operation.return_ns is not None and operation.return_ns >= operation.call_ns
