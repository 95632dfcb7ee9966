"""Messages whose `__init__` is written out (raft/messages.py, `_HOT_INIT`) set every field."""

from __future__ import annotations

import dataclasses

import pytest

from raft.messages import MESSAGE_TYPES, HardState


@pytest.mark.parametrize("cls", [*MESSAGE_TYPES, HardState], ids=lambda cls: cls.__name__)
def test_every_field_is_set_from_its_keyword(cls: type) -> None:
    fields = dataclasses.fields(cls)
    values = {field.name: object() for field in fields}  # distinct, so a swap shows
    made = cls(**values)
    assert {field.name: getattr(made, field.name) for field in fields} == values


@pytest.mark.parametrize("cls", [*MESSAGE_TYPES, HardState], ids=lambda cls: cls.__name__)
def test_defaults_are_the_declared_ones(cls: type) -> None:
    fields = dataclasses.fields(cls)
    required = {f.name: object() for f in fields if f.default is dataclasses.MISSING}
    made = cls(**required)
    for field in fields:
        if field.default is not dataclasses.MISSING:
            assert getattr(made, field.name) == field.default, field.name
