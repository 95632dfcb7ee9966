"""The job definition: Dkron's field names, validated strictly, frozen after validation.

Why strict: a job definition is replicated through Raft and every node must read it the same
way, so anything ambiguous (an unknown field, `"3"` for a number, a naive time without a zone)
is rejected at the door with `JobValidationError(field, message)` instead of guessed at.
`JobSpec.from_json` is the only validating entry point; `to_json` gives the normalised form,
and `from_json(to_json(job)) == job`.

Deliberate differences from Dkron (docs/schedules.md explains why):
- `timezone` defaults to "UTC", not the server's local zone;
- a job with no `tags` runs on ONE eligible node per tick, not on every node (Dkron #1182);
- `schedule` must be absent or empty when `parent_job` is set (Dkron silently ignores it).
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from scheduler.schedule import (
    Schedule,
    ScheduleError,
    format_utc,
    load_timezone,
    parse_rfc3339_ms,
    parse_schedule,
    windowed,
)

__all__ = [
    "JobSpec",
    "JobValidationError",
    "TagRequirement",
    "TagSelector",
    "parse_tags",
    "CONCURRENCY_POLICIES",
    "EXECUTORS",
]

CONCURRENCY_POLICIES: Final = ("allow", "forbid")
EXECUTORS: Final = ("shell", "http", "sim")
NAME_LENGTH_MAX: Final = 200
TEXT_LENGTH_MAX: Final = 200
MAP_ENTRIES_MAX: Final = 64
MAP_KEY_LENGTH_MAX: Final = 128
MAP_VALUE_LENGTH_MAX: Final = 1024
EXECUTOR_CONFIG_BYTES_MAX: Final = 64 * 1024
EXECUTOR_CONFIG_DEPTH_MAX: Final = 8
RETRIES_MAX: Final = 100
WEIGHT_MAX: Final = 1000
GRACE_SECONDS_MAX: Final = 7 * 24 * 3600
GRACE_SECONDS_DEFAULT: Final = 60
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+")
_UTC_NAME: Final = "UTC"
_INTERN_LENGTH_MAX: Final = 512


class JobValidationError(ValueError):
    """A job definition that cannot be accepted; `field` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"job field {field!r}: {message}")
        self.field = field
        self.message = message


# --------------------------------------------------------------------------- tags


@dataclass(frozen=True, slots=True)
class TagRequirement:
    """One `key: value[:count]` tag: nodes must have tag `key` equal to `value`."""

    key: str
    value: str
    count: int | None

    def to_text(self) -> str:
        return self.value if self.count is None else f"{self.value}:{self.count}"


@dataclass(frozen=True, slots=True)
class TagSelector:
    """Which nodes may run a job's executions, and how many per tick (Dkron's target spec).

    All requirements must hold (AND). `count` is the number of executions (slots) per tick:
    the lowest count among the tags that give one (as in Dkron); None when tags are given
    without any count, meaning every matching node (as in Dkron); and 1 when there are no
    tags at all (unlike Dkron, which then runs on every node: the source of Dkron #1182).
    """

    requirements: tuple[TagRequirement, ...] = ()

    @property
    def count(self) -> int | None:
        if not self.requirements:
            return 1
        counts = [req.count for req in self.requirements if req.count is not None]
        return min(counts) if counts else None

    def matches(self, node_tags: Mapping[str, str]) -> bool:
        """True if the node carries every required tag with exactly the required value."""
        return all(node_tags.get(req.key) == req.value for req in self.requirements)

    def to_json(self) -> dict[str, str]:
        return {req.key: req.to_text() for req in self.requirements}


def parse_tags(tags: object) -> TagSelector:
    """Parse Dkron-style `{"role": "web:2", "dc": "eu"}` into a TagSelector.

    The value is `value` or `value:count`, count a positive integer; one `:` at most, so a
    value that itself contains `:` is rejected rather than misread.
    """
    entries = _string_map("tags", tags, MAP_KEY_LENGTH_MAX, MAP_KEY_LENGTH_MAX)
    requirements = []
    for key, raw in sorted(entries.items()):
        value, colon, count_text = raw.partition(":")
        if value == "":
            raise JobValidationError("tags", f"tag {key!r}: empty value (write value[:count])")
        count = None
        if colon:
            if not (count_text.isascii() and count_text.isdigit()) or len(count_text) > 6:
                raise JobValidationError(
                    "tags", f"tag {key!r}: {raw!r} is not value[:count] with count a number")
            count = int(count_text)
            if count < 1:
                raise JobValidationError("tags", f"tag {key!r}: count must be at least 1")
        requirements.append(TagRequirement(key=sys.intern(key), value=sys.intern(value),
                                           count=count))
    if not requirements:
        return _NO_TAGS
    return TagSelector(requirements=tuple(requirements))


# --------------------------------------------------------------------------- field checks


def _string(field_name: str, value: object, length_max: int, *, empty_ok: bool = True) -> str:
    if not isinstance(value, str):
        raise JobValidationError(field_name, f"expected a string, got {_type_name(value)}")
    if len(value) > length_max:
        raise JobValidationError(field_name, f"longer than {length_max} characters")
    if not empty_ok and value == "":
        raise JobValidationError(field_name, "must not be empty")
    return value


def _boolean(field_name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise JobValidationError(field_name, f"expected true or false, got {_type_name(value)}")
    return value


def _integer(field_name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise JobValidationError(field_name, f"expected an integer, got {_type_name(value)}")
    if not low <= value <= high:
        raise JobValidationError(field_name, f"{value} is out of range {low}..{high}")
    return value


def _choice(field_name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise JobValidationError(field_name, f"must be one of {', '.join(choices)}; "
                                             f"got {value!r}"[:200])
    return choices[choices.index(value)]  # the shared constant, not the caller's copy


def _string_map(field_name: str, value: object, key_max: int, value_max: int) -> dict[str, str]:
    if not isinstance(value, dict):
        raise JobValidationError(field_name, f"expected an object, got {_type_name(value)}")
    if len(value) > MAP_ENTRIES_MAX:
        raise JobValidationError(field_name, f"more than {MAP_ENTRIES_MAX} entries")
    for key, item in value.items():
        if not isinstance(key, str) or not 1 <= len(key) <= key_max:
            raise JobValidationError(field_name, f"keys must be strings of 1..{key_max} "
                                                 f"characters, got {key!r}"[:200])
        if not isinstance(item, str) or len(item) > value_max:
            raise JobValidationError(field_name, f"value of {key!r} must be a string of at most "
                                                 f"{value_max} characters")
    return dict(value)


def _slug(field_name: str, value: object) -> str:
    """Dkron's `isSlug`: lower-case letters (Unicode Ll), ASCII digits, `_` and `-`."""
    name = _string(field_name, value, NAME_LENGTH_MAX, empty_ok=False)
    for char in name:
        if char not in "0123456789_-" and unicodedata.category(char) != "Ll":
            raise JobValidationError(field_name, f"{name!r} may contain only lower-case letters, "
                                                 f"digits, '_' and '-' (found {char!r})")
    return name


def _frozen_json(field_name: str, value: object, depth: int) -> object:
    """A deep read-only copy of JSON data (dict -> mappingproxy, list -> tuple)."""
    if depth > EXECUTOR_CONFIG_DEPTH_MAX:
        raise JobValidationError(field_name, f"nested deeper than {EXECUTOR_CONFIG_DEPTH_MAX}")
    if isinstance(value, str):
        # Jobs often share commands and URLs: one copy of each short text.
        return sys.intern(value) if len(value) <= _INTERN_LENGTH_MAX else value
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise JobValidationError(field_name, "numbers must be finite")
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_frozen_json(field_name, item, depth + 1) for item in value)
    if isinstance(value, (dict, MappingProxyType)):
        frozen: dict[str, object] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise JobValidationError(field_name, f"keys must be strings, got {key!r}"[:200])
            frozen[sys.intern(key)] = _frozen_json(field_name, item, depth + 1)
        return MappingProxyType(frozen)
    raise JobValidationError(field_name, f"{_type_name(value)} is not JSON data")


def _thawed_json(value: object) -> Any:
    if isinstance(value, tuple):
        return [_thawed_json(item) for item in value]
    if isinstance(value, MappingProxyType):
        return {key: _thawed_json(item) for key, item in value.items()}
    return value


def _executor_config(value: object) -> Mapping[str, object]:
    if not isinstance(value, (dict, MappingProxyType)):
        raise JobValidationError("executor_config", f"expected an object, got {_type_name(value)}")
    if not value:
        return _EMPTY_MAP
    frozen = _frozen_json("executor_config", value, 0)
    assert isinstance(frozen, MappingProxyType)
    size = len(json.dumps(_thawed_json(frozen)).encode())
    if size > EXECUTOR_CONFIG_BYTES_MAX:
        raise JobValidationError("executor_config", f"{size} bytes encoded; at most "
                                                    f"{EXECUTOR_CONFIG_BYTES_MAX}")
    return frozen


def _type_name(value: object) -> str:
    return {type(None): "null", bool: "boolean", int: "integer", float: "number",
            str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- the job


# Shared by every job that has none: 100k jobs need not hold 100k empty mappings.
_EMPTY_MAP: Final[Mapping[str, Any]] = MappingProxyType({})
_NO_TAGS: Final = TagSelector()


def _empty_map() -> Mapping[str, Any]:
    return _EMPTY_MAP


def _no_tags() -> TagSelector:
    return _NO_TAGS


@dataclass(frozen=True, slots=True, kw_only=True)
class JobSpec:
    """A validated job definition. Build it with `JobSpec.from_json`; times are epoch ms.

    Not hashable (it holds read-only mappings); key jobs by `name`.
    """

    name: str
    schedule: str | None  # normalised spec; None only for a job with a parent_job
    displayname: str = ""
    timezone: str = _UTC_NAME
    owner: str = ""
    owner_email: str = ""
    metadata: Mapping[str, str] = field(default_factory=_empty_map)
    disabled: bool = False
    tags: TagSelector = field(default_factory=_no_tags)
    concurrency: str = "allow"
    retries: int = 0
    executor: str = "shell"
    executor_config: Mapping[str, Any] = field(default_factory=_empty_map)
    parent_job: str | None = None
    ephemeral: bool = False
    starts_at: int | None = None
    expires_at: int | None = None
    priority: int = 2
    weight: int = 1
    grace_seconds: int = GRACE_SECONDS_DEFAULT

    @classmethod
    def from_json(cls, obj: object) -> JobSpec:
        """Validate a Dkron-style job object; raise JobValidationError naming the bad field."""
        if not isinstance(obj, dict):
            raise JobValidationError("(job)", f"expected a JSON object, got {_type_name(obj)}")
        for key in obj:
            if key not in _FIELD_NAMES:
                raise JobValidationError(str(key)[:100], "unknown field (known fields: "
                                                         f"{', '.join(sorted(_FIELD_NAMES))})")
        if "name" not in obj:
            raise JobValidationError("name", "required")
        values: dict[str, Any] = {"name": _slug("name", obj["name"])}
        for key, check in _SIMPLE_FIELDS.items():
            if key in obj:
                values[key] = check(obj[key])
        timezone = values.setdefault("timezone", _UTC_NAME)
        values["parent_job"] = _parent_job(obj.get("parent_job"), values["name"])
        values["schedule"] = _schedule(obj.get("schedule"), timezone, values["parent_job"])
        for key in ("starts_at", "expires_at"):
            values[key] = _instant(key, obj.get(key), timezone)
        if values["starts_at"] is not None and values["expires_at"] is not None:
            if values["expires_at"] <= values["starts_at"]:
                raise JobValidationError("expires_at", "must be later than starts_at")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        """The normalised definition as JSON data; `from_json` of it gives an equal JobSpec."""
        return {
            "name": self.name,
            "displayname": self.displayname,
            "schedule": self.schedule,
            "timezone": self.timezone,
            "owner": self.owner,
            "owner_email": self.owner_email,
            "metadata": dict(self.metadata),
            "disabled": self.disabled,
            "tags": self.tags.to_json(),
            "concurrency": self.concurrency,
            "retries": self.retries,
            "executor": self.executor,
            "executor_config": _thawed_json(self.executor_config),
            "parent_job": self.parent_job,
            "ephemeral": self.ephemeral,
            "starts_at": None if self.starts_at is None else format_utc(self.starts_at),
            "expires_at": None if self.expires_at is None else format_utc(self.expires_at),
            "priority": self.priority,
            "weight": self.weight,
            "grace_seconds": self.grace_seconds,
        }

    def schedule_obj(self, anchor_ms: int) -> Schedule:
        """The job's ticks, given its anchor (creation or last update time, from the log).

        A job with a parent has no ticks of its own (it runs when its parent succeeds), so it
        gets a `@manually` schedule. `starts_at`/`expires_at` bound the ticks.
        """
        spec = self.schedule if self.schedule is not None else "@manually"
        schedule = parse_schedule(spec, timezone=self.timezone, anchor_ms=anchor_ms)
        return windowed(schedule, self.starts_at, self.expires_at)


def _timezone(value: object) -> str:
    if not isinstance(value, str):
        raise JobValidationError("timezone", f"expected an IANA zone name, got {_type_name(value)}")
    try:
        load_timezone(value)
    except ScheduleError as error:
        raise JobValidationError("timezone", str(error).removeprefix("timezone ")) from None
    return sys.intern(value)


def _parent_job(value: object, name: str) -> str | None:
    if value is None or value == "":  # Dkron writes "" for "no parent"
        return None
    parent = _slug("parent_job", value)
    if parent == name:
        raise JobValidationError("parent_job", "a job cannot be its own parent")
    return parent


def _schedule(value: object, timezone: str, parent_job: str | None) -> str | None:
    if value is None or value == "":
        if parent_job is None:
            raise JobValidationError("schedule", "required unless parent_job is set")
        return None
    if parent_job is not None:
        raise JobValidationError("schedule", "must be empty when parent_job is set (the job "
                                             "runs after its parent, not on a schedule)")
    if not isinstance(value, str):
        raise JobValidationError("schedule", f"expected a string, got {_type_name(value)}")
    try:
        # The anchor only phases @every; validity does not depend on it.
        return sys.intern(parse_schedule(value, timezone=timezone, anchor_ms=0).spec)
    except ScheduleError as error:
        raise JobValidationError("schedule", str(error).removeprefix("schedule ")) from None


def _instant(field_name: str, value: object, timezone: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise JobValidationError(field_name, f"expected an RFC 3339 time or null, got "
                                             f"{_type_name(value)}")
    try:
        return parse_rfc3339_ms(value, load_timezone(timezone))
    except ValueError as error:
        raise JobValidationError(field_name, str(error)) from None


def _owner_email(value: object) -> str:
    email = _string("owner_email", value, 254)
    if email and not _EMAIL.fullmatch(email):
        raise JobValidationError("owner_email", f"{email!r} is not an e-mail address")
    return sys.intern(email)


def _metadata(value: object) -> Mapping[str, str]:
    entries = _string_map("metadata", value, MAP_KEY_LENGTH_MAX, MAP_VALUE_LENGTH_MAX)
    if not entries:
        return _EMPTY_MAP
    return MappingProxyType({sys.intern(key): item for key, item in sorted(entries.items())})


_SIMPLE_FIELDS: Final[dict[str, Callable[[object], Any]]] = {
    "displayname": lambda value: _string("displayname", value, TEXT_LENGTH_MAX),  # often unique
    "timezone": _timezone,
    "owner": lambda value: sys.intern(_string("owner", value, TEXT_LENGTH_MAX)),
    "owner_email": _owner_email,
    "metadata": _metadata,
    "disabled": lambda value: _boolean("disabled", value),
    "tags": parse_tags,
    "concurrency": lambda value: _choice("concurrency", value, CONCURRENCY_POLICIES),
    "retries": lambda value: _integer("retries", value, 0, RETRIES_MAX),
    "executor": lambda value: _choice("executor", value, EXECUTORS),
    "executor_config": _executor_config,
    "ephemeral": lambda value: _boolean("ephemeral", value),
    "priority": lambda value: _integer("priority", value, 1, 2),
    "weight": lambda value: _integer("weight", value, 1, WEIGHT_MAX),
    "grace_seconds": lambda value: _integer("grace_seconds", value, 0, GRACE_SECONDS_MAX),
}
_FIELD_NAMES: Final = frozenset(
    {"name", "schedule", "parent_job", "starts_at", "expires_at", *_SIMPLE_FIELDS})
