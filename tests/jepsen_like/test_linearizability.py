"""The linearizability checker: hand-written violations, properties, an oracle, the CLI.

Every verdict here can fail: each valid scenario has an invalid twin, and the property
tests compare the checker with a brute-force oracle on small random histories.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
import random
import time
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from jepsen_like.history import Event, Operation, dump_history, pair_operations
from jepsen_like.linearizability import UNKNOWN, CheckResult, check
from jepsen_like.models import KVModel, ModelError, Partition, RegisterModel, State
from jepsen_like.models import _register_step
from raftcron.cli import main

NEVER_WRITTEN = 99

# -- building histories ---------------------------------------------------------------------

# (process, f, value, call, return, status[, key]): value is the written value, the value
# read, or (expected, new) for cas; status is "ok", "fail" or "info" (return ignored).
Spec = tuple[Any, ...]


def events_of(*specs: Spec) -> list[Event]:
    """Jepsen-shaped events for the specs, ordered by time; on ties completions go first,
    except that an operation of zero duration is invoked before it completes."""
    raw: list[tuple[int, int, int, Any, str, str, Hashable, Any]] = []
    for number, (process, f, value, call, ret, status, *rest) in enumerate(specs):
        key = rest[0] if rest else None
        invoke_value = None if f == "read" else value
        raw.append((call, 1, number, process, "invoke", f, key, invoke_value))
        if status == "info" and ret is None:
            continue
        done_value = value if status == "ok" else invoke_value
        raw.append((ret, 0 if ret > call else 2, number, process, status, f, key, done_value))
    raw.sort(key=lambda item: item[:3])
    return [
        Event(index, moment, process, kind, f, key, value)  # type: ignore[arg-type]
        for index, (moment, _, _, process, kind, f, key, value) in enumerate(raw)
    ]


def run_check(*specs: Spec, model: Any = None, **options: Any) -> CheckResult:
    operations = pair_operations(events_of(*specs))
    return check(operations, model or RegisterModel(), **options)


# -- hand-written scenarios -----------------------------------------------------------------


def test_sequential_history_is_valid() -> None:
    result = run_check(
        (0, "read", None, 0, 5, "ok"),
        (0, "write", 1, 10, 15, "ok"),
        (1, "read", 1, 20, 25, "ok"),
        (1, "cas", (1, 2), 30, 35, "ok"),
        (0, "read", 2, 40, 45, "ok"),
    )
    assert result.valid is True
    assert result.op_count == 5


def test_concurrent_history_is_valid_only_by_reordering() -> None:
    """w1 is called first but must take effect after w2, inside w2's return and the read."""
    result = run_check(
        (0, "write", 1, 0, 100, "ok"),
        (1, "write", 2, 10, 20, "ok"),
        (2, "read", 2, 21, 25, "ok"),
        (3, "read", 1, 30, 40, "ok"),
    )
    assert result.valid is True
    reversed_reads = run_check(
        (0, "write", 1, 0, 10, "ok"),
        (1, "write", 2, 20, 30, "ok"),
        (2, "read", 2, 31, 35, "ok"),
        (3, "read", 1, 40, 50, "ok"),
    )
    assert reversed_reads.valid is False


def test_stale_read_after_a_completed_write_is_invalid() -> None:
    result = run_check(
        (0, "write", 1, 0, 10, "ok"),
        (1, "write", 2, 11, 20, "ok"),
        (2, "read", 1, 21, 30, "ok"),
    )
    assert result.valid is False
    (failure,) = result.failures
    assert failure.reason == "overwritten"  # proved before any search: w1 < w2 < read
    assert (failure.stuck.output, failure.needed) == (1, 1)
    assert [op.input for op in failure.prefix_tail] == [1, 2]
    assert [op.index for op in failure.window] == [0, 2, 4]
    assert "needs the value 1" in failure.describe()[0]


def test_search_reports_the_longest_prefix_when_there_is_no_quick_proof() -> None:
    """Without value-flow hooks the search itself must find and explain the stale read."""
    result = run_check(
        (0, "write", 1, 0, 10, "ok"),
        (1, "write", 2, 11, 20, "ok"),
        (2, "read", 1, 21, 30, "ok"),
        (3, "read", 2, 25, 40, "ok"),
        model=PlainRegister(),
    )
    assert result.valid is False
    (failure,) = result.failures
    assert failure.reason == "stuck"
    assert (failure.linearized, failure.state) == (3, 2)
    assert (failure.stuck.output, failure.concurrent) == (1, ())
    assert [(op.f, op.input, op.output) for op in failure.prefix_tail] == [
        ("write", 1, 1), ("write", 2, 2), ("read", None, 2)
    ]
    assert "cannot be placed next" in "\n".join(failure.describe())


def test_read_of_a_value_written_only_later_is_unwritten() -> None:
    result = run_check((0, "read", 7, 0, 10, "ok"), (1, "write", 7, 20, 30, "ok"))
    assert result.valid is False
    assert (result.failures[0].reason, result.failures[0].needed) == ("unwritten", 7)


def test_stale_read_after_leader_change_is_invalid() -> None:
    """A deposed leader that still serves reads from its state returns the old value."""
    result = run_check(
        (0, "write", 1, 0, 10, "ok"),  # committed by leader n1
        (1, "read", 1, 12, 14, "ok"),
        (2, "write", 2, 20, 30, "ok"),  # n1 partitioned away; n2 elected and commits this
        (3, "read", 1, 40, 50, "ok"),  # n1, unaware, answers from its stale state
    )
    assert result.valid is False
    (failure,) = result.failures
    assert (failure.stuck.process, failure.stuck.output) == (3, 1)
    healthy = run_check(*[(p, f, 2 if p == 3 else v, c, r, s) for p, f, v, c, r, s in [
        (0, "write", 1, 0, 10, "ok"), (1, "read", 1, 12, 14, "ok"),
        (2, "write", 2, 20, 30, "ok"), (3, "read", 1, 40, 50, "ok"),
    ]])
    assert healthy.valid is True


def test_lost_write_under_partition_is_invalid() -> None:
    """A minority leader acks w2; the majority never sees it, and a later write moves on."""
    result = run_check(
        (0, "write", 1, 0, 10, "ok"),
        (1, "write", 2, 20, 30, "ok"),  # acked by the minority leader, then lost
        (2, "read", 1, 40, 50, "ok"),
        (3, "read", 1, 60, 70, "ok"),
        (0, "write", 3, 80, 90, "ok"),
        (2, "read", 3, 100, 110, "ok"),
    )
    assert result.valid is False
    (failure,) = result.failures
    assert (failure.stuck.process, failure.stuck.call_ns) == (2, 40)


def test_cas_that_succeeds_twice_is_invalid() -> None:
    hard_cas: list[Spec] = [
        (0, "write", 0, 0, 5, "ok"),
        (1, "cas", (0, 1), 10, 30, "ok"),
        (2, "cas", (0, 1), 12, 32, "ok"),
    ]
    result = run_check(*hard_cas)
    assert result.valid is False
    (failure,) = result.failures
    assert (failure.reason, failure.needed) == ("overdrawn", 0)  # two consumers, one giver
    assert failure.stuck.f == "cas"
    assert sorted(op.index for op in (failure.stuck, *failure.concurrent)) == [0, 2, 3]
    plain = run_check(*hard_cas, model=PlainRegister())
    assert (plain.valid, plain.failures[0].reason) == (False, "stuck")
    one_fails = run_check(
        (0, "write", 0, 0, 5, "ok"),
        (1, "cas", (0, 1), 10, 30, "ok"),
        (2, "cas", (0, 1), 12, 32, "fail"),
    )
    assert one_fails.valid is True
    assert one_fails.op_count == 2


def test_crashed_write_that_appears_later_is_valid() -> None:
    result = run_check(
        (0, "write", 1, 0, 10, "ok"),
        (1, "write", 2, 20, None, "info"),
        (2, "read", 1, 30, 40, "ok"),
        (3, "read", 2, 500, 510, "ok"),
    )
    assert result.valid is True
    assert result.info_count == 1
    flips_back = run_check(
        (0, "write", 1, 0, 10, "ok"),
        (1, "write", 2, 20, None, "info"),
        (3, "read", 2, 500, 510, "ok"),
        (2, "read", 1, 600, 610, "ok"),
    )
    assert flips_back.valid is False


def test_crashed_write_never_seen_is_valid() -> None:
    result = run_check(
        (0, "write", 1, 0, 10, "ok"),
        (1, "write", 2, 20, 25, "info"),
        (2, "read", 1, 30, 40, "ok"),
        (3, "read", 1, 500, 510, "ok"),
    )
    assert result.valid is True
    assert result.partitions[0].pruned == 1


def test_info_write_read_before_it_was_invoked_is_invalid() -> None:
    result = run_check(
        (0, "read", 5, 0, 10, "ok"),
        (1, "write", 5, 20, None, "info"),
    )
    assert result.valid is False
    assert result.failures[0].stuck.f == "read"
    read_after = run_check(
        (1, "write", 5, 0, None, "info"),
        (0, "read", 5, 20, 30, "ok"),
    )
    assert read_after.valid is True


def test_info_cas_may_or_may_not_have_happened() -> None:
    took_effect = run_check(
        (0, "write", 0, 0, 10, "ok"),
        (1, "cas", (0, 1), 20, 30, "info"),
        (2, "read", 1, 40, 50, "ok"),
    )
    never_happened = run_check(
        (0, "write", 0, 0, 10, "ok"),
        (1, "cas", (0, 1), 20, 30, "info"),
        (2, "read", 0, 40, 50, "ok"),
    )
    impossible = run_check(
        (0, "write", 2, 0, 10, "ok"),
        (1, "cas", (0, 1), 20, 30, "info"),
        (2, "read", 1, 40, 50, "ok"),
    )
    assert (took_effect.valid, never_happened.valid, impossible.valid) == (True, True, False)


def test_chain_of_crashed_operations_is_valid() -> None:
    """Only a crashed write of 5 followed by a crashed cas 5 -> 6 explains the read of 6."""
    result = run_check(
        (0, "write", 0, 0, 10, "ok"),
        (1, "write", 5, 20, None, "info"),
        (2, "cas", (5, 6), 30, None, "info"),
        (3, "read", 6, 40, 50, "ok"),
    )
    assert result.valid is True
    assert result.partitions[0].pruned == 0


def test_empty_register_reads_none_and_touching_intervals_are_concurrent() -> None:
    assert run_check((0, "read", None, 0, 5, "ok")).valid is True
    assert run_check((0, "read", 0, 0, 5, "ok")).valid is False
    touching = run_check((0, "write", 1, 0, 10, "ok"), (1, "read", None, 10, 20, "ok"))
    assert touching.valid is True
    apart = run_check((0, "write", 1, 0, 10, "ok"), (1, "read", None, 11, 20, "ok"))
    assert apart.valid is False
    assert "the initial state" in "\n".join(apart.failures[0].describe())


def test_empty_history_is_valid() -> None:
    assert check([], RegisterModel()).valid is True
    assert check([], KVModel()).valid is True


def test_kv_violation_flags_only_its_key() -> None:
    reports: list[tuple[int, int]] = []
    result = run_check(
        (0, "write", 1, 0, 10, "ok", "a"),
        (1, "write", 1, 0, 10, "ok", "b"),
        (2, "read", 1, 20, 30, "ok", "a"),
        (3, "write", 2, 20, 30, "ok", "b"),
        (4, "read", 1, 40, 50, "ok", "b"),  # stale: b is 2 by now
        (5, "read", None, 40, 50, "ok", "c"),
        model=KVModel(),
        progress=lambda done, total: reports.append((done, total)),
    )
    assert reports == [(1, 3), (2, 3), (3, 3)]
    assert result.valid is False
    verdicts = {part.key: part.valid for part in result.partitions}
    assert verdicts == {"a": True, "b": False, "c": True}
    assert [failure.key for failure in result.failures] == ["b"]
    assert result.to_json()["invalid_keys"] == ["b"]


def test_models_refuse_histories_of_the_wrong_shape() -> None:
    keyed = pair_operations(events_of((0, "write", 1, 0, 10, "ok", "a")))
    with pytest.raises(ModelError, match="use the kv model"):
        check(keyed, RegisterModel())
    unkeyed = pair_operations(events_of((0, "write", 1, 0, 10, "ok")))
    with pytest.raises(ModelError, match="needs one"):
        check(unkeyed, KVModel())


def test_kv_model_steps_the_whole_map_like_registers_per_key() -> None:
    model = KVModel()
    write_a, read_a, read_b = pair_operations(
        events_of(
            (0, "write", 1, 0, 1, "ok", "a"),
            (0, "read", 1, 2, 3, "ok", "a"),
            (0, "read", None, 4, 5, "ok", "b"),
        )
    )
    legal, state = model.step(model.init(), write_a)
    assert legal
    assert model.step(state, read_a) == (True, state)
    assert model.step(state, read_b)[0] is True
    assert model.step(model.init(), read_a)[0] is False


def hard_history(writers: int) -> list[Spec]:
    """Concurrent writes of 0s and 1s, then reads of 0 and then 1: invalid, but proving it
    means trying exponentially many orders of the writes."""
    specs: list[Spec] = [(p, "write", p % 2, 0, 1000, "ok") for p in range(writers)]
    specs += [(writers, "read", 0, 1001, 1002, "ok"), (writers, "read", 1, 1003, 1004, "ok")]
    return specs


def test_small_hard_history_is_invalid_without_a_limit() -> None:
    assert run_check(*hard_history(8)).valid is False


def test_tiny_time_limit_on_a_hard_history_is_unknown() -> None:
    started = time.monotonic()
    result = run_check(*hard_history(26), time_limit_s=0.05)
    assert result.valid == UNKNOWN
    assert result.failures == ()
    assert time.monotonic() - started < 2


def test_time_limit_uses_the_clock_it_is_given() -> None:
    ticks = itertools.count()
    result = run_check(*hard_history(26), time_limit_s=0.5, clock=lambda: float(next(ticks)))
    assert result.valid == UNKNOWN
    easy = run_check((0, "write", 1, 0, 10, "ok"), time_limit_s=0.5, clock=lambda: 0.0)
    assert easy.valid is True


def test_failure_report_is_json_serialisable() -> None:
    result = run_check(
        (0, "write", (1, 2), 0, 10, "ok"),
        (1, "read", (3, 4), 20, 30, "ok"),
    )
    document = json.loads(json.dumps(result.to_json()))
    assert document["valid"] is False
    failure = document["partitions"][0]["failure"]
    assert failure["stuck"]["value"] == [3, 4]
    assert {"index", "process", "f", "value", "call_ns", "return_ns"} <= set(failure["stuck"])


# -- an oracle and properties ---------------------------------------------------------------


class PlainRegister:
    """RegisterModel without the value-flow hooks: exercises the bare search."""

    name = "plain-register"

    def init(self) -> State:
        return None

    def step(self, state: State, op: Operation) -> tuple[bool, State]:
        return _register_step(state, op)

    def partition(self, operations: Sequence[Operation]) -> list[Partition]:
        return [Partition(None, self, tuple(operations))]


def brute_force(operations: Sequence[Operation]) -> bool:
    """Linearizable iff all ok ops plus some subset of info ops have a legal real-time order."""
    ok = [op for op in operations if op.status == "ok"]
    info = [op for op in operations if op.status == "info"]

    def returned(op: Operation) -> float:
        return float("inf") if op.return_ns is None else op.return_ns

    for size in range(len(info) + 1):
        for chosen in itertools.combinations(info, size):
            for order in itertools.permutations(ok + list(chosen)):
                respects_time = all(
                    not returned(later) < earlier.call_ns
                    for position, earlier in enumerate(order)
                    for later in order[position + 1:]
                )
                if respects_time and _legal(order):
                    return True
    return False


def _legal(order: Sequence[Operation]) -> bool:
    state: State = None
    for op in order:
        legal, state = _register_step(state, op)
        if not legal:
            return False
    return True


@st.composite
def random_histories(draw: st.DrawFn) -> list[Operation]:
    """Small arbitrary histories, valid or not, with info ops and repeated values."""
    count = draw(st.integers(1, 6))
    values = st.one_of(st.none(), st.integers(0, 2))
    operations = []
    for index in range(count):
        f = draw(st.sampled_from(["read", "write", "cas"]))
        call = draw(st.integers(0, 60))
        status: Literal["ok", "info"] = draw(st.sampled_from(["ok", "ok", "ok", "info"]))
        ret = None if status == "info" else call + draw(st.integers(0, 40))
        value: Any = draw(values)
        if f == "cas":
            value = (value, draw(values))
        read_value = draw(values) if f == "read" and status == "ok" else None
        operations.append(Operation(
            index, index, f, None, None if f == "read" else value,
            read_value if f == "read" else (None if status == "info" else value),
            call, ret, status,
        ))
    return operations


@settings(max_examples=200, deadline=None)
@given(random_histories())
def test_checker_agrees_with_brute_force(operations: list[Operation]) -> None:
    expected = brute_force(operations)
    assert check(operations, RegisterModel()).valid is expected
    assert check(operations, PlainRegister()).valid is expected


@st.composite
def executed_histories(draw: st.DrawFn) -> list[Event]:
    """Run ops one at a time on a real register (op i takes effect at time 100*i) and give
    each a random real-time interval around its effect; some ops fail, some crash."""
    count = draw(st.integers(1, 14))
    register: Any = None
    specs: list[tuple[int, str, Any, int, int, str]] = []
    for position in range(count):
        point = 100 * position
        call = point - draw(st.integers(0, 250))
        ret = point + draw(st.integers(0, 250))
        f = draw(st.sampled_from(["read", "write", "cas"]))
        crashed, happened = draw(st.booleans()) and draw(st.booleans()), draw(st.booleans())
        value: Any = draw(st.integers(0, 3))
        status = "ok"
        if f == "read":
            value = register
        elif f == "cas":
            value = (draw(st.sampled_from([register, value])), draw(st.integers(0, 3)))
            if register != value[0]:
                status = "fail"
            elif not crashed or happened:
                register = value[1]
        elif not crashed or happened:
            register = value
        if crashed and status == "ok":
            status = "info"
        specs.append((position, f, value, call, ret, status))
    return _assign_processes(specs)


def _assign_processes(specs: list[tuple[int, str, Any, int, int, str]]) -> list[Event]:
    """Give each op the lowest process that is idle at its call; crashed processes retire."""
    idle_since: dict[int, int] = {}
    assigned: list[Spec] = []
    for _, f, value, call, ret, status in sorted(specs, key=lambda spec: spec[3]):
        process = next(
            (p for p, free in sorted(idle_since.items()) if free < call), len(idle_since) + 1000
        )
        idle_since[process] = ret if status != "info" else 10**9
        assigned.append((process, f, value, call, ret, status))
    return events_of(*assigned)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(executed_histories())
def test_histories_of_a_real_register_are_valid(events: list[Event]) -> None:
    assert check(pair_operations(events), RegisterModel()).valid is True


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(executed_histories(), st.data())
def test_reading_a_value_never_written_is_invalid(events: list[Event], data: st.DataObject) -> None:
    operations = pair_operations(events)
    reads = [i for i, op in enumerate(operations) if op.f == "read" and op.status == "ok"]
    assume(reads)
    victim = data.draw(st.sampled_from(reads))
    operations[victim] = dataclasses.replace(operations[victim], output=NEVER_WRITTEN)
    result = check(operations, RegisterModel())
    assert result.valid is False
    assert result.failures[0].stuck.output == NEVER_WRITTEN


# -- performance ----------------------------------------------------------------------------


def generate_register_history(
    rng: random.Random,
    *,
    op_count: int,
    clients: int,
    crash_probability: float = 0.0,
    keys: int | None = None,
) -> list[Event]:
    """A valid history: each op takes effect at a random point inside its interval, in the
    order of those points, on real registers. Writes use unique values; cas expects one of
    the last few. A crashed op (info) took effect or not, and its client gets a new process
    id, as in Jepsen. Used by the timing test and for the figures in docs/checkers.md."""
    cursors = [(rng.randrange(50), client, client) for client in range(clients)]
    heapq.heapify(cursors)
    planned: list[tuple[Any, ...]] = []
    for counter in range(op_count):
        cursor, client, process = heapq.heappop(cursors)
        call = cursor + rng.randrange(50)
        ret = call + rng.randrange(1, 200)
        roll = rng.random()
        f = "read" if roll < 0.5 else "cas" if roll < 0.7 else "write"
        value: Any = counter
        if f == "cas":
            value = (rng.randrange(max(0, counter - 3), counter + 1), counter)
        key = None if keys is None else rng.randrange(keys)
        crashed = rng.random() < crash_probability
        took_effect = not crashed or rng.random() < 0.5
        point = rng.uniform(call, ret)
        planned.append((point, counter, process, f, value, call, ret, crashed, took_effect, key))
        heapq.heappush(cursors, (ret, client, process + clients if crashed else process))
    return _execute(planned)


def _execute(planned: list[tuple[Any, ...]]) -> list[Event]:
    """Apply planned ops to real registers in the order of their points; emit their events."""
    registers: dict[Any, Any] = {}
    specs: list[Spec] = []
    for _, _, process, f, value, call, ret, crashed, took_effect, key in sorted(planned):
        current = registers.get(key)
        status = "info" if crashed else "ok"
        if f == "read":
            value = current
        elif f == "write" and took_effect:
            registers[key] = value
        elif f == "cas" and current != value[0]:
            status = "info" if crashed else "fail"
        elif f == "cas" and took_effect:
            registers[key] = value[1]
        specs.append((process, f, value, call, ret, status, key))
    return events_of(*specs)


@pytest.mark.parametrize("crash_probability", [0.0, 0.05])
def test_thousand_ops_from_ten_clients_check_within_a_second(crash_probability: float) -> None:
    events = generate_register_history(
        random.Random(7), op_count=1000, clients=10, crash_probability=crash_probability
    )
    operations = pair_operations(events)
    started = time.perf_counter()
    result = check(operations, RegisterModel(), time_limit_s=30)
    elapsed = time.perf_counter() - started
    assert result.valid is True
    assert elapsed <= 1.0
    victim = next(i for i, op in enumerate(operations) if op.f == "read" and i > 500)
    operations[victim] = dataclasses.replace(operations[victim], output=NEVER_WRITTEN)
    assert check(operations, RegisterModel(), time_limit_s=30).valid is False


def test_generated_kv_history_is_checked_per_key() -> None:
    events = generate_register_history(
        random.Random(3), op_count=2000, clients=20, crash_probability=0.05, keys=8
    )
    result = check(pair_operations(events), KVModel(), time_limit_s=30)
    assert result.valid is True
    assert len(result.partitions) == 8


# -- the command line -----------------------------------------------------------------------


def write_history(tmp_path: Path, *specs: Spec) -> str:
    path = tmp_path / "history.jsonl"
    dump_history(events_of(*specs), path)
    return str(path)


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    valid = write_history(tmp_path, (0, "write", 1, 0, 10, "ok"), (1, "read", 1, 20, 30, "ok"))
    assert main(["jepsen", "check", valid]) == 0
    assert "VALID" in capsys.readouterr().out
    invalid = write_history(tmp_path, (0, "write", 1, 0, 10, "ok"), (1, "read", 2, 20, 30, "ok"))
    assert main(["jepsen", "check", invalid, "--model", "register"]) == 1
    output = capsys.readouterr().out
    assert "INVALID" in output and "#2 p1 read -> 2 [20, 30]" in output
    hard = write_history(tmp_path, *hard_history(26))
    assert main(["jepsen", "check", hard, "--time-limit", "0.05"]) == 2
    assert "UNKNOWN" in capsys.readouterr().out


def test_cli_json_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_history(
        tmp_path,
        (0, "write", 1, 0, 10, "ok", "x"),
        (1, "read", 2, 20, 30, "ok", "x"),
        (2, "write", 1, 0, 10, "fail", "y"),
        (3, "read", None, 20, 30, "ok", "y"),
    )
    assert main(["jepsen", "check", path, "--model", "kv", "--json"]) == 1
    document = json.loads(capsys.readouterr().out)
    assert document["valid"] is False
    assert document["invalid_keys"] == ["x"]
    assert document["failed_ops_dropped"] == 1
    assert document["partitions"][0]["failure"]["stuck"]["value"] == 2


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"time": 0, "process": 0, "type": "ok", "f": "read", "value": 1}\n', "line 1"),
        ("not json\n", "line 1: not JSON"),
        ('{"time": 0, "process": 0, "type": "invoke", "f": "write", "key": "k", "value": 1}\n',
         "use the kv model"),
    ],
)
def test_cli_rejects_malformed_files_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    assert main(["jepsen", "check", str(path)]) == 2
    error = capsys.readouterr().err
    assert message in error
    assert error.count("\n") == 1


def test_cli_unreadable_file_and_bad_limit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["jepsen", "check", str(tmp_path / "missing.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err
    path = write_history(tmp_path, (0, "write", 1, 0, 10, "ok"))
    assert main(["jepsen", "check", path, "--time-limit", "-1"]) == 2
    assert "--time-limit" in capsys.readouterr().err


def test_cli_jepsen_without_subcommand_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jepsen"]) == 2
    assert "check" in capsys.readouterr().out
