"""Client histories in Jepsen's shape: events, operations, JSON-lines files, a recorder.

Rules of this module:

1. Pure data and pure functions. Nothing here reads a clock: the recorder asks the clock the
   caller hands it (virtual time in the simulator, `time.monotonic_ns` for real processes).
2. One event per JSON line, as Jepsen writes them: `index`, `time` (int ns, monotonic),
   `process`, `type` (invoke | ok | fail | info), `f` (read | write | cas), optional `key`,
   `value` (read: null on invoke, the value on ok; write: the value; cas: `[expected, new]`),
   and an optional free-text `error` explaining a `fail` or `info`.
3. `fail` means the operation definitely did not happen, so pairing drops it. `info` means
   the outcome is unknown: the operation may take effect at any time after its invocation,
   or never, so pairing keeps it with an open end (`return_ns is None`).
4. Malformed input raises `HistoryError` naming the line, so a bad file is fixed in seconds.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

EVENT_TYPES: Final = frozenset({"invoke", "ok", "fail", "info"})
FUNCTIONS: Final = frozenset({"read", "write", "cas"})
# Jepsen's fault injector logs its own invoke/info pairs under this process; they are not
# client operations, so they are accepted with any `f` and skipped when pairing.
NEMESIS_PROCESS: Final = "nemesis"
_JSON_FIELDS: Final = frozenset(
    {"index", "time", "process", "type", "f", "key", "value", "error"}
)

Process = int | str
EventType = Literal["invoke", "ok", "fail", "info"]
Status = Literal["ok", "info"]


class HistoryError(ValueError):
    """A history that cannot be read or paired; the message names the offending line."""


def freeze(value: Any) -> Hashable:
    """Turn JSON arrays into tuples so values can live in model states and memo sets."""
    if isinstance(value, list | tuple):
        return tuple(freeze(item) for item in value)
    if isinstance(value, dict):
        raise HistoryError("values must be JSON scalars or arrays, not objects")
    if isinstance(value, float) and not math.isfinite(value):
        raise HistoryError(f"value {value!r} is not a finite number")
    assert isinstance(value, Hashable)
    return value


def _is_process(process: object) -> bool:
    return isinstance(process, str) or (
        isinstance(process, int) and not isinstance(process, bool)
    )


def _is_int(number: object) -> bool:
    return isinstance(number, int) and not isinstance(number, bool)


@dataclass(frozen=True, slots=True)
class Event:
    """One line of a history. `line` is where it was read from (for error messages only)."""

    index: int
    time: int
    process: Process
    type: EventType
    f: str
    key: Hashable = None
    value: Hashable = None
    error: str | None = None
    line: int | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not _is_int(self.index):
            raise HistoryError(f"{self._where()}: index must be an int, got {self.index!r}")
        if not _is_int(self.time):
            raise HistoryError(f"{self._where()}: time must be int nanoseconds, got {self.time!r}")
        if not _is_process(self.process):
            raise HistoryError(f"{self._where()}: process must be an int or a string")
        if self.type not in EVENT_TYPES:
            raise HistoryError(f"{self._where()}: unknown type {self.type!r}")
        if self.process != NEMESIS_PROCESS:
            self._check_client_fields()
        object.__setattr__(self, "key", freeze(self.key))
        object.__setattr__(self, "value", freeze(self.value))

    def _check_client_fields(self) -> None:
        if self.f not in FUNCTIONS:
            raise HistoryError(f"{self._where()}: unknown f {self.f!r}")
        if self.f == "cas" and self.type in ("invoke", "ok"):
            if not (isinstance(self.value, list | tuple) and len(self.value) == 2):
                raise HistoryError(f"{self._where()}: cas value must be [expected, new]")

    def _where(self) -> str:
        return f"line {self.line}" if self.line is not None else f"event index {self.index!r}"

    def to_json(self) -> dict[str, Any]:
        """The JSON object for this event; `key` and `error` are omitted when absent."""
        record: dict[str, Any] = {
            "index": self.index,
            "time": self.time,
            "process": self.process,
            "type": self.type,
            "f": self.f,
        }
        if self.key is not None:
            record["key"] = self.key
        record["value"] = self.value
        if self.error is not None:
            record["error"] = self.error
        return record


@dataclass(frozen=True, slots=True)
class Operation:
    """An invocation paired with its completion: what the checker orders.

    `input` is the invocation's value (write: the value; cas: `(expected, new)`), `output`
    the completion's (read: the value read). An `info` operation has `return_ns = None`,
    meaning "returned at +infinity", and `output = None`.
    """

    index: int
    process: Process
    f: str
    key: Hashable
    input: Hashable
    output: Hashable
    call_ns: int
    return_ns: int | None
    status: Status
    complete_index: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A human-readable record, used in failure reports."""
        record: dict[str, Any] = {
            "index": self.index,
            "process": self.process,
            "f": self.f,
        }
        if self.key is not None:
            record["key"] = self.key
        record["value"] = self.output if self.f == "read" else self.input
        record["call_ns"] = self.call_ns
        record["return_ns"] = self.return_ns
        record["status"] = self.status
        return record

    def describe(self) -> str:
        """One short line, e.g. `#12 p3 read -> 4 [100, 250]` or `#7 p1 write 5 [90, inf) info`."""
        key = f" key={self.key!r}" if self.key is not None else ""
        if self.f == "read":
            shown = f"-> {self.output!r}" if self.status == "ok" else "-> ?"
        else:
            shown = repr(self.input)
        end = "inf) info" if self.return_ns is None else f"{self.return_ns}]"
        return f"#{self.index} p{self.process} {self.f}{key} {shown} [{self.call_ns}, {end}"


def event_from_json(record: object, *, line: int | None = None, position: int = 0) -> Event:
    """Build an event from one decoded JSON line; a missing `index` defaults to `position`."""
    where = f"line {line}" if line is not None else f"event {position}"
    if not isinstance(record, dict):
        raise HistoryError(f"{where}: expected a JSON object")
    unknown = set(record) - _JSON_FIELDS
    if unknown:
        raise HistoryError(f"{where}: unknown fields {sorted(unknown)}")
    for name in ("time", "process", "type", "f"):
        if name not in record:
            raise HistoryError(f"{where}: missing field {name!r}")
    error = record.get("error")
    if error is not None and not isinstance(error, str):
        raise HistoryError(f"{where}: error must be a string")
    try:
        return Event(
            index=record.get("index", position),
            time=record["time"],
            process=record["process"],
            type=record["type"],
            f=record["f"],
            key=record.get("key"),
            value=record.get("value"),
            error=error,
            line=line,
        )
    except HistoryError as problem:
        message = str(problem)
        raise HistoryError(message if message.startswith(where) else f"{where}: {message}")


def parse_history(lines: Iterable[str]) -> list[Event]:
    """Parse JSON lines (blank lines skipped); errors name the 1-based line number."""
    events: list[Event] = []
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as problem:
            raise HistoryError(f"line {number}: not JSON ({problem.msg})") from None
        events.append(event_from_json(record, line=number, position=len(events)))
    return events


def load_history(path: str | Path) -> list[Event]:
    """Read a JSON-lines history file. OSError propagates; bad content raises HistoryError."""
    with open(path, encoding="utf-8") as handle:
        return parse_history(handle)


def dump_history(events: Iterable[Event], path: str | Path) -> None:
    """Write events as JSON lines, one per line, in the given order."""
    with open(path, "w", encoding="utf-8") as handle:
        for event in events:
            handle.write(json.dumps(event.to_json(), separators=(",", ":")) + "\n")


def _where(event: Event, position: int) -> str:
    if event.line is not None:
        return f"line {event.line}"
    return f"event {position} (index {event.index})"


def _complete(invoke: Event, completion: Event, position: int) -> Operation:
    """Pair one invoke with its ok/info completion, checking that they agree."""
    where = _where(completion, position)
    if completion.f != invoke.f:
        raise HistoryError(f"{where}: completes a {invoke.f!r} with f={completion.f!r}")
    if completion.key != invoke.key:
        raise HistoryError(f"{where}: completes key {invoke.key!r} with key {completion.key!r}")
    if completion.time < invoke.time:
        raise HistoryError(f"{where}: completion time is before its invocation")
    is_ok = completion.type == "ok"
    return Operation(
        index=invoke.index,
        process=invoke.process,
        f=invoke.f,
        key=invoke.key,
        input=invoke.value,
        output=completion.value if is_ok else None,
        call_ns=invoke.time,
        return_ns=completion.time if is_ok else None,
        status="ok" if is_ok else "info",
        complete_index=completion.index,
    )


def _open_ended(invoke: Event) -> Operation:
    """An invocation that never completed: unknown outcome, exactly like `info`."""
    return Operation(
        index=invoke.index,
        process=invoke.process,
        f=invoke.f,
        key=invoke.key,
        input=invoke.value,
        output=None,
        call_ns=invoke.time,
        return_ns=None,
        status="info",
    )


def pair_operations(events: Iterable[Event]) -> list[Operation]:
    """Pair invokes with completions per process, in invocation order.

    `fail` operations are dropped (they did not happen); `info` ones and invocations still
    open at the end of the history are kept open-ended. Nemesis events are skipped.
    """
    pending: dict[Process, tuple[int, Event]] = {}
    paired: list[tuple[int, Operation]] = []
    for position, event in enumerate(events):
        if event.process == NEMESIS_PROCESS:
            continue
        if event.type == "invoke":
            if event.process in pending:
                started, in_flight = pending[event.process]
                raise HistoryError(
                    f"{_where(event, position)}: process {event.process!r} invokes while its "
                    f"operation from {_where(in_flight, started)} is still in flight"
                )
            pending[event.process] = (position, event)
            continue
        if event.process not in pending:
            raise HistoryError(
                f"{_where(event, position)}: {event.type} for process {event.process!r} "
                "without a matching invoke"
            )
        start, invoke = pending.pop(event.process)
        if event.type != "fail":
            paired.append((start, _complete(invoke, event, position)))
    paired.extend((start, _open_ended(invoke)) for start, invoke in pending.values())
    paired.sort(key=lambda item: item[0])
    return [operation for _, operation in paired]


class HistoryRecorder:
    """Append-only history builder for clients in the simulator or the real harness.

    It assigns `index` in append order and stamps `time` from the clock it is given, so the
    simulator passes its virtual clock and real clients pass `time.monotonic_ns`. A lock keeps
    index order and time order in agreement when client threads share one recorder.
    """

    def __init__(self, clock: Callable[[], int]) -> None:
        self._clock = clock
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._last_time: int | None = None

    def record(
        self,
        process: Process,
        type: EventType,
        f: str,
        value: Any = None,
        *,
        key: Hashable = None,
        error: str | None = None,
    ) -> Event:
        """Append one event stamped with the clock's current time."""
        with self._lock:
            now = self._clock()
            if not _is_int(now):
                raise TypeError(f"the recorder's clock must return int nanoseconds, got {now!r}")
            if self._last_time is not None and now < self._last_time:
                raise ValueError(f"the recorder's clock went backwards: {now} < {self._last_time}")
            self._last_time = now
            event = Event(len(self._events), now, process, type, f, key, value, error)
            self._events.append(event)
            return event

    def invoke(self, process: Process, f: str, value: Any = None, *, key: Hashable = None) -> Event:
        return self.record(process, "invoke", f, value, key=key)

    def ok(self, process: Process, f: str, value: Any = None, *, key: Hashable = None) -> Event:
        return self.record(process, "ok", f, value, key=key)

    def fail(
        self, process: Process, f: str, value: Any = None, *, key: Hashable = None,
        error: str | None = None,
    ) -> Event:
        return self.record(process, "fail", f, value, key=key, error=error)

    def info(
        self, process: Process, f: str, value: Any = None, *, key: Hashable = None,
        error: str | None = None,
    ) -> Event:
        return self.record(process, "info", f, value, key=key, error=error)

    @property
    def events(self) -> tuple[Event, ...]:
        with self._lock:
            return tuple(self._events)

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    def __len__(self) -> int:
        return len(self._events)

    def operations(self) -> list[Operation]:
        return pair_operations(self.events)

    def dump(self, path: str | Path) -> None:
        dump_history(self.events, path)
