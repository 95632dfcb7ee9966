"""Sequential specifications that the linearizability checker replays operations against.

A model is a pure function on hashable states: `init()` gives the first state, and
`step(state, op)` says whether `op` is legal in `state` and what state follows. States must
be hashable because the checker memoizes (linearized-set, state) pairs.

`partition(ops)` is the P-compositionality hook (Horn & Kroening): a model whose objects are
independent (a key-value store is one register per key) splits the history so each part is
checked alone, which turns one exponential search into many small ones. A partition may also
drop operations that provably cannot change the verdict (see `prune_unobservable`).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, runtime_checkable

from jepsen_like.history import Operation

State = Hashable


class ModelError(ValueError):
    """A history that does not fit the model (e.g. keyed operations for a single register)."""


class Model(Protocol):
    """The protocol every model follows; see the module docstring."""

    name: str

    def init(self) -> State: ...

    def step(self, state: State, op: Operation) -> tuple[bool, State]: ...

    def partition(self, operations: Sequence[Operation]) -> list[Partition]: ...


class _NoValue:
    """The type of `NO_VALUE`; a class so that it prints clearly in reports."""

    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE: Final = _NoValue()


@runtime_checkable
class ValueFlowModel(Model, Protocol):
    """Optional: a model whose state is a single value that operations need and give.

    `needs(op)` is the value the state must equal for `op` to be legal, or NO_VALUE if `op`
    is legal in every state; `gives(op)` is the value `op` sets the state to, or NO_VALUE if
    `op` never changes the state (a read). The promise behind both: the state can only
    become v through an operation that gives v (or through `init`).

    With these facts the checker places a legal observer at once without trying
    alternatives, and abandons a configuration as soon as a counting argument shows that
    some unplaced ok operation can never get the value it needs; it also proves the common
    stale read before searching at all (see `jepsen_like.linearizability`). Without them a
    stale read deep in a long history is only found after an exponential detour through
    every ordering of the writes concurrent with it.
    """

    def needs(self, op: Operation) -> Hashable: ...

    def gives(self, op: Operation) -> Hashable: ...


@dataclass(frozen=True, slots=True)
class Partition:
    """One independently checkable part of a history, with the model that checks it."""

    key: Hashable
    model: Model
    operations: tuple[Operation, ...]
    pruned: int = 0  # info operations dropped because nothing could observe them


def cas_values(op: Operation) -> tuple[Hashable, Hashable]:
    """The (expected, new) pair of a cas operation; history parsing guarantees its shape."""
    pair = op.input
    assert isinstance(pair, tuple) and len(pair) == 2, f"cas #{op.index} input {pair!r}"
    expected, new = pair
    return expected, new


def _register_step(state: State, op: Operation) -> tuple[bool, State]:
    """Read/write/cas on one register; `None` is the empty register's value."""
    f = op.f
    if f == "read":
        if op.status == "info":
            return True, state  # the value read is unknown, so any state explains it
        return op.output == state, state
    if f == "write":
        return True, op.input
    if f == "cas":
        pair: Any = op.input  # (expected, new), checked when the history was read
        expected, new = pair
        if state == expected:
            return True, new
        return False, state
    raise ModelError(f"register model has no operation {f!r}")


def prune_unobservable(operations: Sequence[Operation]) -> tuple[list[Operation], int]:
    """Drop register `info` operations whose possible effect nothing in the history observes.

    Why this is sound: an info read has no effect. An info write of v (or info cas to v) that
    took effect is followed, in any legal order, only by operations that accept state v until
    the next write; if no ok read returns v and no cas expects v, the next state-dependent
    operation must be a write, so deleting the info op leaves a legal order. Conversely an
    info op may always be omitted. Pruning keeps crashed writes that were never seen from
    blowing up the search, which is the common case in fault-injection runs.
    """
    observed: set[Hashable] = set()
    for op in operations:
        if op.f == "read" and op.status == "ok":
            observed.add(op.output)
        elif op.f == "cas":
            observed.add(cas_values(op)[0])
    kept: list[Operation] = []
    for op in operations:
        if op.status == "info" and not _observable(op, observed):
            continue
        kept.append(op)
    return kept, len(operations) - len(kept)


def _observable(op: Operation, observed: set[Hashable]) -> bool:
    if op.f == "read":
        return False
    if op.f == "write":
        return op.input in observed
    if op.f == "cas":
        return cas_values(op)[1] in observed
    raise ModelError(f"register model has no operation {op.f!r}")


class RegisterModel:
    """A single read/write/compare-and-set register that starts empty (`None`).

    A cas that returned `fail` never reaches the model (pairing drops it), so an `ok` cas
    means it succeeded and is legal only when the register holds the expected value.
    """

    name = "register"

    def init(self) -> State:
        return None

    def step(self, state: State, op: Operation) -> tuple[bool, State]:
        return _register_step(state, op)

    def needs(self, op: Operation) -> Hashable:
        if op.f == "read":
            return op.output if op.status == "ok" else NO_VALUE
        if op.f == "cas":
            return cas_values(op)[0]
        return NO_VALUE

    def gives(self, op: Operation) -> Hashable:
        if op.f == "write":
            return op.input
        if op.f == "cas":
            return cas_values(op)[1]
        return NO_VALUE

    def partition(self, operations: Sequence[Operation]) -> list[Partition]:
        keyed = next((op for op in operations if op.key is not None), None)
        if keyed is not None:
            raise ModelError(
                f"operation #{keyed.index} has key {keyed.key!r}: a single register has no "
                "keys; use the kv model"
            )
        kept, pruned = prune_unobservable(operations)
        return [Partition(None, self, tuple(kept), pruned)]

    def __repr__(self) -> str:
        return "RegisterModel()"


class KVModel:
    """A map of independent registers, one per key, each starting empty.

    The checker never steps this model directly: `partition` splits the history per key and
    checks each key against a `RegisterModel` (P-compositionality). `init`/`step` still work on
    the whole map (state = frozenset of (key, value) pairs) for callers that want one search.
    """

    name = "kv"

    def init(self) -> State:
        return frozenset()

    def step(self, state: State, op: Operation) -> tuple[bool, State]:
        assert isinstance(state, frozenset)
        values = dict(state)
        legal, new_value = _register_step(values.get(op.key), op)
        if not legal:
            return False, state
        values[op.key] = new_value
        return True, frozenset(item for item in values.items() if item[1] is not None)

    def partition(self, operations: Sequence[Operation]) -> list[Partition]:
        by_key: dict[Hashable, list[Operation]] = {}
        for op in operations:
            if op.key is None:
                raise ModelError(f"operation #{op.index} has no key; the kv model needs one")
            by_key.setdefault(op.key, []).append(op)
        register = RegisterModel()
        partitions: list[Partition] = []
        for key, ops in by_key.items():
            kept, pruned = prune_unobservable(ops)
            partitions.append(Partition(key, register, tuple(kept), pruned))
        return partitions

    def __repr__(self) -> str:
        return "KVModel()"


MODELS: dict[str, type[RegisterModel] | type[KVModel]] = {
    "register": RegisterModel,
    "kv": KVModel,
}
