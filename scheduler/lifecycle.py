"""Lifecycles of jobs, executions, attempts and nodes, as tables (h11's `_state.py` habit).

Rules of this module:

1. Every state change of a replicated record goes through `step(table, state, event)`; no
   handler assigns a state by hand. So the tables below are the whole story, and
   docs/scheduler.md prints them (a test checks the docs list every row).
2. A (state, event) pair missing from a table is not a crash: it raises `IllegalTransition`,
   which the state machine turns into a rejected result that changes nothing. A renewal of an
   expired lease, a second Finish, a claim of an already claimed attempt all end up here.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ATTEMPT_TRANSITIONS",
    "EXECUTION_TRANSITIONS",
    "JOB_TRANSITIONS",
    "NODE_TRANSITIONS",
    "IllegalTransition",
    "TABLES",
    "step",
]

Table = dict[tuple[str, str], str]

# A job: `absent` is "no record". Ticks get outcomes in both enabled and disabled states (a
# disabled job's ticks are recorded as skipped), but only an enabled job fires or runs.
JOB_TRANSITIONS: Final[Table] = {
    ("absent", "put"): "enabled",
    ("absent", "put_disabled"): "disabled",
    ("enabled", "put"): "enabled",
    ("enabled", "put_disabled"): "disabled",
    ("disabled", "put"): "enabled",
    ("disabled", "put_disabled"): "disabled",
    ("enabled", "disable"): "disabled",
    ("disabled", "disable"): "disabled",
    ("disabled", "enable"): "enabled",
    ("enabled", "enable"): "enabled",
    ("enabled", "delete"): "absent",
    ("disabled", "delete"): "absent",
    ("enabled", "fire"): "enabled",
    ("enabled", "skip"): "enabled",
    ("disabled", "skip"): "disabled",
    ("enabled", "miss"): "enabled",
    ("disabled", "miss"): "disabled",
    ("enabled", "run"): "enabled",
}

# An execution is one slot of one firing; it lives until one of its attempts succeeds or the
# retry policy gives up. `waiting` means "needs an attempt" (a retry after backoff, a run-now,
# a child run); the leader's planner answers it with Assign.
EXECUTION_TRANSITIONS: Final[Table] = {
    ("waiting", "assign"): "active",
    ("waiting", "cancel"): "failed",
    ("active", "succeed"): "succeeded",
    ("active", "retry"): "waiting",
    ("active", "fail"): "failed",
    ("active", "lose"): "unreachable",
}

# An attempt: `queued` waits for a node to claim it (work stealing) until its claim deadline;
# `leased` runs on a node while the lease holds. The lease is the only "running" flag there is.
ATTEMPT_TRANSITIONS: Final[Table] = {
    ("queued", "claim"): "leased",
    ("queued", "expire"): "unclaimed",
    ("leased", "renew"): "leased",
    ("leased", "finish_ok"): "succeeded",
    ("leased", "finish_failed"): "failed",
    ("leased", "expire"): "expired",
}

NODE_TRANSITIONS: Final[Table] = {
    ("absent", "register"): "up",
    ("up", "register"): "up",
    ("down", "register"): "up",
    ("up", "heartbeat"): "up",
    ("down", "heartbeat"): "up",
    ("up", "down"): "down",
    ("down", "down"): "down",
}

TABLES: Final[dict[str, Table]] = {
    "job": JOB_TRANSITIONS,
    "execution": EXECUTION_TRANSITIONS,
    "attempt": ATTEMPT_TRANSITIONS,
    "node": NODE_TRANSITIONS,
}


class IllegalTransition(Exception):
    """A (state, event) pair the table does not allow; the command is rejected, state kept."""

    def __init__(self, what: str, state: str, event: str) -> None:
        super().__init__(f"illegal transition: {what} in state {state!r} cannot {event!r}")
        self.what = what
        self.state = state
        self.event = event


def step(what: str, state: str, event: str) -> str:
    """The state after `event`, by table `what`; raise IllegalTransition on a miss."""
    new_state = TABLES[what].get((state, event))
    if new_state is None:
        raise IllegalTransition(what, state, event)
    return new_state


def terminal_states(what: str) -> frozenset[str]:
    """States with no way out: the record is finished (used to retire records)."""
    table = TABLES[what]
    sources = {state for state, _event in table}
    return frozenset(target for target in table.values() if target not in sources)
