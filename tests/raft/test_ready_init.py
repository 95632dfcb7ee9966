"""`Ready` and `TraceEvent` write their `__init__` out (raft/ready.py): each keyword sets its
own field, and every default is the declared one (a fresh list per Ready, never shared)."""

from __future__ import annotations

import dataclasses

from raft.ready import Ready, TraceEvent


def test_every_ready_field_is_set_from_its_keyword() -> None:
    fields = dataclasses.fields(Ready)
    values = {field.name: object() for field in fields}  # distinct, so a swap shows
    made = Ready(**values)  # type: ignore[arg-type]
    assert {field.name: getattr(made, field.name) for field in fields} == values


def test_ready_defaults_are_the_declared_ones_and_fresh() -> None:
    first, second = Ready(), Ready()
    for field in dataclasses.fields(Ready):
        if field.default is not dataclasses.MISSING:
            assert getattr(first, field.name) == field.default, field.name
        else:
            assert field.default_factory is not dataclasses.MISSING
            assert getattr(first, field.name) == field.default_factory(), field.name
            assert getattr(first, field.name) is not getattr(second, field.name), field.name


def test_trace_event_fields_positional_and_keyword() -> None:
    fields = {"index": 3}
    assert (TraceEvent("commit", fields).kind, TraceEvent("commit", fields).fields) == ("commit", fields)
    made = TraceEvent(kind="role", fields=fields)
    assert (made.kind, made.fields) == ("role", fields)
    assert [f.name for f in dataclasses.fields(TraceEvent)] == ["kind", "fields"]
