"""The scheduler's commands: small frozen values, encoded as msgpack `[tag, field, ...]`.

Rules of this module:

1. A command carries every time it needs (`now_ms`: the proposer's clock, normally the
   leader's). The state machine never reads a clock, so replaying a log replays decisions.
2. `decode_command` either returns a fully validated command or raises `CommandError`
   naming the problem. Nothing half-decoded ever reaches the state machine: a malformed
   entry becomes a rejected result on every node alike, never an exception in `apply`.
3. Fields are positional in the encoding (compact: a Fire batch of thousands of ticks is one
   entry). Adding a field means a new tag, never a reinterpretation of an old one.
4. Attempts are named `(job, tick, slot, attempt)` everywhere (`AttemptKey`), so an
   executor can make its side effect idempotent, and a log replay cannot mint a new name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, NamedTuple

import msgpack

__all__ = [
    "AttemptKey", "Assign", "Batch", "Beat", "Claim", "Command", "CommandError", "DeleteJob",
    "ExecKey", "Expire", "Finish", "Fire", "FireItem", "Heartbeats", "NodeDown", "PutJob",
    "RecordTicks", "RegisterNode", "Renew", "RunNow", "ToggleJob", "decode_command",
    "encode_command",
]

COMMAND_BYTES_MAX: Final = 16 * 1024 * 1024
TEXT_MAX: Final = 200
SLOTS_MAX: Final = 64
BATCH_MAX: Final = 100_000
TIME_MAX: Final = 1 << 53  # ms; far beyond year 9999, and exact in every JSON reader


class CommandError(ValueError):
    """A command that cannot be decoded or is out of bounds; it changes no state."""


class ExecKey(NamedTuple):
    """One execution: a slot of one firing of a job (`tick` names the firing)."""

    job: str
    tick: int
    slot: int


class AttemptKey(NamedTuple):
    """One attempt of an execution; attempt numbers start at 1 and only grow."""

    job: str
    tick: int
    slot: int
    attempt: int

    @property
    def execution(self) -> ExecKey:
        return ExecKey(self.job, self.tick, self.slot)


# ---- field checks (each raises CommandError naming the field) ----------------------------------


def _int(value: object, name: str, low: int = -TIME_MAX, high: int = TIME_MAX) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CommandError(f"{name}: expected an integer in {low}..{high}, got {value!r}"[:200])
    return value


def _time(value: object, name: str) -> int:
    return _int(value, name, 0, TIME_MAX)


def _str(value: object, name: str, length_max: int = TEXT_MAX) -> str:
    if not isinstance(value, str) or len(value) > length_max:
        raise CommandError(f"{name}: expected a string of at most {length_max} characters")
    return value


def _opt_str(value: object, name: str) -> str | None:
    return None if value is None else _str(value, name)


def _bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise CommandError(f"{name}: expected true or false, got {value!r}"[:200])
    return value


def _list(value: object, name: str, length_max: int) -> list[Any]:
    if not isinstance(value, (list, tuple)) or len(value) > length_max:
        raise CommandError(f"{name}: expected a list of at most {length_max} items")
    return list(value)


def _key(value: object, name: str = "attempt") -> AttemptKey:
    items = _list(value, name, 4)
    if len(items) != 4:
        raise CommandError(f"{name}: expected [job, tick, slot, attempt]")
    return AttemptKey(_str(items[0], f"{name}.job"), _int(items[1], f"{name}.tick"),
                      _int(items[2], f"{name}.slot", 0, SLOTS_MAX - 1),
                      _int(items[3], f"{name}.attempt", 1, 1_000))


def _str_map(value: object, name: str) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > 64:
        raise CommandError(f"{name}: expected an object of at most 64 entries")
    for key, item in value.items():
        _str(key, f"{name} key")
        _str(item, f"{name}[{key!r}]", 1024)
    return dict(value)


# ---- the commands ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PutJob:
    """Create or replace a job. `job` is Dkron-style JSON, validated by JobSpec at apply."""

    TAG: ClassVar[str] = "put_job"
    now_ms: int
    job: dict[str, Any]

    def fields(self) -> list[Any]:
        return [self.now_ms, self.job]

    @classmethod
    def parse(cls, v: list[Any]) -> PutJob:
        if not isinstance(v[1], dict):
            raise CommandError("job: expected a JSON object")
        return cls(now_ms=_time(v[0], "now_ms"), job=v[1])


@dataclass(frozen=True, slots=True, kw_only=True)
class DeleteJob:
    TAG: ClassVar[str] = "delete_job"
    now_ms: int
    name: str

    def fields(self) -> list[Any]:
        return [self.now_ms, self.name]

    @classmethod
    def parse(cls, v: list[Any]) -> DeleteJob:
        return cls(now_ms=_time(v[0], "now_ms"), name=_str(v[1], "name"))


@dataclass(frozen=True, slots=True, kw_only=True)
class ToggleJob:
    """Dkron's toggle; `disabled` set explicitly makes it idempotent (a retried flip is not)."""

    TAG: ClassVar[str] = "toggle_job"
    now_ms: int
    name: str
    disabled: bool | None = None

    def fields(self) -> list[Any]:
        return [self.now_ms, self.name, self.disabled]

    @classmethod
    def parse(cls, v: list[Any]) -> ToggleJob:
        disabled = None if v[2] is None else _bool(v[2], "disabled")
        return cls(now_ms=_time(v[0], "now_ms"), name=_str(v[1], "name"), disabled=disabled)


@dataclass(frozen=True, slots=True, kw_only=True)
class FireItem:
    """Fire one tick of one job; `nodes[i]` runs slot i (None: queue it for a claim)."""

    job: str
    version: int
    tick_ms: int
    nodes: tuple[str | None, ...]

    def fields(self) -> list[Any]:
        return [self.job, self.version, self.tick_ms, list(self.nodes)]

    @classmethod
    def parse(cls, value: object) -> FireItem:
        v = _list(value, "fire item", 4)
        if len(v) != 4:
            raise CommandError("fire item: expected [job, version, tick_ms, nodes]")
        nodes = tuple(_opt_str(n, "fire item node") for n in _list(v[3], "nodes", SLOTS_MAX))
        return cls(job=_str(v[0], "job"), version=_int(v[1], "version", 0),
                   tick_ms=_time(v[2], "tick_ms"), nodes=nodes)


@dataclass(frozen=True, slots=True, kw_only=True)
class Fire:
    """Fire ticks; each item is checked alone (is it the job's next due tick? late? overlap?)."""

    TAG: ClassVar[str] = "fire"
    now_ms: int
    lease_ms: int
    queue_ms: int
    items: tuple[FireItem, ...]

    def fields(self) -> list[Any]:
        return [self.now_ms, self.lease_ms, self.queue_ms, [item.fields() for item in self.items]]

    @classmethod
    def parse(cls, v: list[Any]) -> Fire:
        items = tuple(FireItem.parse(item) for item in _list(v[3], "items", BATCH_MAX))
        return cls(now_ms=_time(v[0], "now_ms"), lease_ms=_int(v[1], "lease_ms", 1, 86_400_000),
                   queue_ms=_int(v[2], "queue_ms", 1, 86_400_000), items=items)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordTicks:
    """Record ticks first_ms..last_ms (consecutive ticks of the job) as missed or skipped."""

    TAG: ClassVar[str] = "record_ticks"
    now_ms: int
    job: str
    version: int
    first_ms: int
    last_ms: int
    outcome: str  # "missed" | "skipped"

    def fields(self) -> list[Any]:
        return [self.now_ms, self.job, self.version, self.first_ms, self.last_ms, self.outcome]

    @classmethod
    def parse(cls, v: list[Any]) -> RecordTicks:
        if v[5] not in ("missed", "skipped"):
            raise CommandError("outcome: expected 'missed' or 'skipped'")
        first, last = _time(v[3], "first_ms"), _time(v[4], "last_ms")
        if last < first:
            raise CommandError("last_ms must not be before first_ms")
        return cls(now_ms=_time(v[0], "now_ms"), job=_str(v[1], "job"),
                   version=_int(v[2], "version", 0), first_ms=first, last_ms=last, outcome=v[5])


@dataclass(frozen=True, slots=True, kw_only=True)
class Assign:
    """Give a waiting execution its next attempt, on `node` (None: queue it for a claim)."""

    TAG: ClassVar[str] = "assign"
    now_ms: int
    key: AttemptKey
    node: str | None
    lease_ms: int
    queue_ms: int

    def fields(self) -> list[Any]:
        return [self.now_ms, list(self.key), self.node, self.lease_ms, self.queue_ms]

    @classmethod
    def parse(cls, v: list[Any]) -> Assign:
        return cls(now_ms=_time(v[0], "now_ms"), key=_key(v[1]), node=_opt_str(v[2], "node"),
                   lease_ms=_int(v[3], "lease_ms", 1, 86_400_000),
                   queue_ms=_int(v[4], "queue_ms", 1, 86_400_000))


@dataclass(frozen=True, slots=True, kw_only=True)
class Claim:
    """Work stealing: `node` takes a queued attempt; the first committed claim wins."""

    TAG: ClassVar[str] = "claim"
    now_ms: int
    key: AttemptKey
    node: str
    lease_ms: int

    def fields(self) -> list[Any]:
        return [self.now_ms, list(self.key), self.node, self.lease_ms]

    @classmethod
    def parse(cls, v: list[Any]) -> Claim:
        return cls(now_ms=_time(v[0], "now_ms"), key=_key(v[1]), node=_str(v[2], "node"),
                   lease_ms=_int(v[3], "lease_ms", 1, 86_400_000))


@dataclass(frozen=True, slots=True, kw_only=True)
class Renew:
    """Extend the lease of an attempt `node` holds to now_ms + lease_ms (never shortens it)."""

    TAG: ClassVar[str] = "renew"
    now_ms: int
    key: AttemptKey
    node: str
    lease_ms: int

    def fields(self) -> list[Any]:
        return [self.now_ms, list(self.key), self.node, self.lease_ms]

    @classmethod
    def parse(cls, v: list[Any]) -> Renew:
        return cls(now_ms=_time(v[0], "now_ms"), key=_key(v[1]), node=_str(v[2], "node"),
                   lease_ms=_int(v[3], "lease_ms", 1, 86_400_000))


@dataclass(frozen=True, slots=True, kw_only=True)
class Finish:
    TAG: ClassVar[str] = "finish"
    now_ms: int
    key: AttemptKey
    node: str
    ok: bool
    detail: str = ""

    def fields(self) -> list[Any]:
        return [self.now_ms, list(self.key), self.node, self.ok, self.detail]

    @classmethod
    def parse(cls, v: list[Any]) -> Finish:
        return cls(now_ms=_time(v[0], "now_ms"), key=_key(v[1]), node=_str(v[2], "node"),
                   ok=_bool(v[3], "ok"), detail=_str(v[4], "detail"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Expire:
    """End an attempt whose lease (or claim deadline) `deadline_ms` ran out, judged by now_ms.

    Compare-and-set: rejected if the deadline changed since the leader looked (a renewal
    landed first), or if now_ms is not past deadline_ms + drift_bound_ms.
    """

    TAG: ClassVar[str] = "expire"
    now_ms: int
    key: AttemptKey
    deadline_ms: int
    drift_bound_ms: int

    def fields(self) -> list[Any]:
        return [self.now_ms, list(self.key), self.deadline_ms, self.drift_bound_ms]

    @classmethod
    def parse(cls, v: list[Any]) -> Expire:
        return cls(now_ms=_time(v[0], "now_ms"), key=_key(v[1]),
                   deadline_ms=_time(v[2], "deadline_ms"),
                   drift_bound_ms=_int(v[3], "drift_bound_ms", 0, 86_400_000))


@dataclass(frozen=True, slots=True, kw_only=True)
class RunNow:
    """Run a job once now; a repeated `idempotency_key` returns the first answer again."""

    TAG: ClassVar[str] = "run_now"
    now_ms: int
    job: str
    idempotency_key: str

    def fields(self) -> list[Any]:
        return [self.now_ms, self.job, self.idempotency_key]

    @classmethod
    def parse(cls, v: list[Any]) -> RunNow:
        key = _str(v[2], "idempotency_key")
        if not key:
            raise CommandError("idempotency_key: must not be empty")
        return cls(now_ms=_time(v[0], "now_ms"), job=_str(v[1], "job"), idempotency_key=key)


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterNode:
    """A node joins (or rejoins) as an agent: its tags, token capacity and tokens kept for
    priority-1 jobs (Dianemo)."""

    TAG: ClassVar[str] = "register_node"
    now_ms: int
    node: str
    tags: dict[str, str]
    tokens: int
    reserved_tokens: int

    def fields(self) -> list[Any]:
        return [self.now_ms, self.node, self.tags, self.tokens, self.reserved_tokens]

    @classmethod
    def parse(cls, v: list[Any]) -> RegisterNode:
        tokens = _int(v[3], "tokens", 0, 1_000_000_000)
        return cls(now_ms=_time(v[0], "now_ms"), node=_str(v[1], "node"),
                   tags=_str_map(v[2], "tags"), tokens=tokens,
                   reserved_tokens=_int(v[4], "reserved_tokens", 0, tokens))


@dataclass(frozen=True, slots=True, kw_only=True)
class Beat:
    node: str
    seen_ms: int
    load_permille: int

    def fields(self) -> list[Any]:
        return [self.node, self.seen_ms, self.load_permille]

    @classmethod
    def parse(cls, value: object) -> Beat:
        v = _list(value, "beat", 3)
        if len(v) != 3:
            raise CommandError("beat: expected [node, seen_ms, load_permille]")
        return cls(node=_str(v[0], "node"), seen_ms=_time(v[1], "seen_ms"),
                   load_permille=_int(v[2], "load_permille", 0, 1000))


@dataclass(frozen=True, slots=True, kw_only=True)
class Heartbeats:
    """The leader's summary of the agent heartbeats it heard (one entry, many nodes)."""

    TAG: ClassVar[str] = "heartbeats"
    now_ms: int
    beats: tuple[Beat, ...]

    def fields(self) -> list[Any]:
        return [self.now_ms, [beat.fields() for beat in self.beats]]

    @classmethod
    def parse(cls, v: list[Any]) -> Heartbeats:
        beats = tuple(Beat.parse(b) for b in _list(v[1], "beats", 10_000))
        return cls(now_ms=_time(v[0], "now_ms"), beats=beats)


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeDown:
    TAG: ClassVar[str] = "node_down"
    now_ms: int
    node: str
    reason: str = ""

    def fields(self) -> list[Any]:
        return [self.now_ms, self.node, self.reason]

    @classmethod
    def parse(cls, v: list[Any]) -> NodeDown:
        return cls(now_ms=_time(v[0], "now_ms"), node=_str(v[1], "node"),
                   reason=_str(v[2], "reason"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Batch:
    """Several commands in one log entry, applied in order; no nesting."""

    TAG: ClassVar[str] = "batch"
    commands: tuple[Command, ...]

    def fields(self) -> list[Any]:
        return [[[type(c).TAG, *c.fields()] for c in self.commands]]

    @classmethod
    def parse(cls, v: list[Any]) -> Batch:
        commands = tuple(_decode_one(item, nested=True) for item in _list(v[0], "commands",
                                                                         BATCH_MAX))
        return cls(commands=commands)


Command = (PutJob | DeleteJob | ToggleJob | Fire | RecordTicks | Assign | Claim | Renew | Finish
           | Expire | RunNow | RegisterNode | Heartbeats | NodeDown | Batch)

_TYPES: Final[tuple[type[Any], ...]] = (
    PutJob, DeleteJob, ToggleJob, Fire, RecordTicks, Assign, Claim, Renew, Finish, Expire, RunNow,
    RegisterNode, Heartbeats, NodeDown, Batch)
_ARITY: Final[dict[str, int]] = {
    "put_job": 2, "delete_job": 2, "toggle_job": 3, "fire": 4, "record_ticks": 6, "assign": 5,
    "claim": 4, "renew": 4, "finish": 5, "expire": 4, "run_now": 3, "register_node": 5,
    "heartbeats": 2, "node_down": 3, "batch": 1}
_PARSERS: Final[dict[str, Callable[[list[Any]], Any]]] = {t.TAG: t.parse for t in _TYPES}


def encode_command(command: Command) -> bytes:
    """The log entry bytes for a command."""
    data: bytes = msgpack.packb([type(command).TAG, *command.fields()], use_bin_type=True)
    return data


def decode_command(data: bytes) -> Command:
    """Decode and validate one entry; raise CommandError for anything malformed."""
    if not isinstance(data, (bytes, bytearray)) or len(data) > COMMAND_BYTES_MAX:
        raise CommandError("not a command (expected msgpack bytes within the size bound)")
    try:
        value = msgpack.unpackb(data, raw=False, strict_map_key=True)
    except (ValueError, TypeError, msgpack.UnpackException) as error:
        raise CommandError(f"not msgpack: {type(error).__name__}") from None
    return _decode_one(value, nested=False)  # type: ignore[no-any-return]


def _decode_one(value: object, *, nested: bool) -> Any:
    if not isinstance(value, (list, tuple)) or not value or not isinstance(value[0], str):
        raise CommandError("expected [tag, fields...]")
    tag, fields = value[0], list(value[1:])
    parser = _PARSERS.get(tag)
    if parser is None:
        raise CommandError(f"unknown command {tag[:40]!r}")
    if nested and tag == "batch":
        raise CommandError("a batch cannot hold a batch")
    if len(fields) != _ARITY[tag]:
        raise CommandError(f"{tag}: expected {_ARITY[tag]} fields, got {len(fields)}")
    return parser(fields)
