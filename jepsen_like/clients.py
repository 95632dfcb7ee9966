"""Workload clients: Jepsen "processes" that drive real servers over the HTTP API.

Rules of this module:

1. One operation at a time per process, each recorded as `invoke` then exactly one of
   `ok` (it happened, with what it returned), `fail` (it certainly did not happen) or `info`
   (unknown). A process whose operation ended `info` is retired and its worker continues
   as a fresh process (`process + concurrency`), as Jepsen does, because that operation may
   still take effect later.
2. The outcome of a write is judged by what the server promises (docs/operations.md):
   2xx happened; 412 (precondition), 503 (not committed / no leader), a redirect that never
   reached a leader, and a connection that never opened did not happen; 504, a timeout,
   or a connection lost after the request went out are unknown. Reads change nothing, so
   a read that did not answer is simply a `fail`.
3. Every operation has a deadline (`op_timeout_s`) covering its redirects, and every worker
   stops invoking at the time limit; in-flight operations finish by their deadline.

The register workload is Maelstrom's lin-kv (Jepsen's linearizable register, per key):
reads, writes of small integers, and compare-and-set, on keys that rotate every
`ops_per_key` operations so each key's history stays small enough to check exhaustively.
Compare-and-set comes in the server's two forms, both modelled as `cas [expected, new]`:
`{"value": new, "expect": expected}` (by value), and `If-Match: "<version>"` with the value
this process last saw at that version (a version is the Raft index of the write that set
the value, so the value at a version never changes: an If-Match success implies the value).

The cron workload creates one job whose shell command appends `start` and `finish` lines to
a ledger file (true wall-clock times, outside libfaketime), and polls the job's replicated
outcomes; the checkers in `exactly_once.py` read both.
"""

from __future__ import annotations

import json
import random
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import httpx
import trio

from jepsen_like.exactly_once import LedgerEvent, OutcomeRecord
from jepsen_like.history import HistoryRecorder

__all__ = [
    "CronClient", "HttpOutcome", "OutcomeLog", "RegisterOptions", "RegisterWorkload",
    "cron_job_spec", "read_ledger",
]

REDIRECTS_MAX: Final = 4
CONNECT_TIMEOUT_S: Final = 1.0
POLL_PERIOD_S: Final = 0.5
LEDGER_LINE_CHARS_MAX: Final = 4_096


# ---- one HTTP operation, judged ------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HttpOutcome:
    """How a request ended (Rule 2), with the final status and body when there was one."""

    type: Literal["ok", "fail", "info"]
    status: int | None = None
    body: Any = None
    error: str | None = None


async def send(client: httpx.AsyncClient, method: str, url: str, *, body: Any = None,
               headers: dict[str, str] | None = None) -> HttpOutcome:
    """One request, following the leader's redirects, judged by Rule 2 (for a write; a read's
    caller turns info into fail). The caller bounds the time."""
    content = None if body is None else json.dumps(body).encode()
    sent_headers = dict(headers or {})
    if content is not None:
        sent_headers["Content-Type"] = "application/json"
    target = url
    for _ in range(REDIRECTS_MAX + 1):
        try:
            response = await client.request(method, target, content=content, headers=sent_headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            return HttpOutcome("fail", error=f"connect: {type(error).__name__}")
        except httpx.HTTPError as error:
            return HttpOutcome("info", error=f"{type(error).__name__}: {error}"[:200])
        if response.status_code == 307 and "location" in response.headers:
            target = response.headers["location"]
            continue
        return _judge(response)
    return HttpOutcome("fail", status=307, error="redirected too often; no leader served it")


def _judge(response: httpx.Response) -> HttpOutcome:
    try:
        payload = response.json()
    except ValueError:
        payload = response.text[:200]
    status = response.status_code
    if 200 <= status < 300 or status == 404:
        return HttpOutcome("ok", status, payload)
    error = payload.get("error") if isinstance(payload, dict) else str(payload)
    if status in (412, 503, 400, 401, 413, 507, 409):
        return HttpOutcome("fail", status, payload, f"HTTP {status}: {error}")
    return HttpOutcome("info", status, payload, f"HTTP {status}: {error}")  # 504, 500, ...


# ---- the register workload (lin-kv) --------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterOptions:
    concurrency: int = 6
    rate: float = 30.0  # operations per second, all workers together
    op_timeout_s: float = 5.0
    ops_per_key: int = 150
    workers_per_key: int = 3
    values: int = 5  # values are 0 .. values - 1, as in Jepsen's register test
    token: str | None = None

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.workers_per_key < 1:
            raise ValueError("--concurrency must be at least 1")
        if not self.rate > 0:
            raise ValueError("--rate must be positive")
        if not self.op_timeout_s > 0 or self.ops_per_key < 1 or self.values < 2:
            raise ValueError("op timeout, ops per key and values must be positive")


@dataclass(slots=True)
class _KeyGroup:
    """Workers that share one key at a time; the key changes every `ops_per_key` operations."""

    name: str
    generation: int = 0
    ops: int = 0

    def key(self) -> str:
        return f"{self.name}-{self.generation}"


@dataclass(slots=True)
class WorkerState:
    process: int
    home: str  # the node's base URL this worker talks to first
    seen: dict[str, tuple[Any, int]] = field(default_factory=dict)  # key -> (value, version)


class RegisterWorkload:
    """`concurrency` workers, each a Jepsen process bound to one node, issuing lin-kv ops."""

    def __init__(self, options: RegisterOptions, urls: Sequence[str], history: HistoryRecorder,
                 rng: random.Random) -> None:
        assert urls, "no node to talk to"
        self.options = options
        self.urls = list(urls)
        self.history = history
        self.rng = rng
        groups = -(-options.concurrency // options.workers_per_key)
        self.groups = [_KeyGroup(f"k{index}") for index in range(groups)]
        self.counts: dict[str, int] = {"ok": 0, "fail": 0, "info": 0}

    async def run(self, deadline: float) -> None:
        async with trio.open_nursery() as nursery:
            for worker in range(self.options.concurrency):
                state = WorkerState(worker, self.urls[worker % len(self.urls)])
                nursery.start_soon(self._worker, worker, state, random.Random(self.rng.random()),
                                   deadline)

    async def _worker(self, index: int, state: WorkerState, rng: random.Random,
                      deadline: float) -> None:
        options = self.options
        group = self.groups[index // options.workers_per_key]
        headers = {"Authorization": f"Bearer {options.token}"} if options.token else {}
        timeout = httpx.Timeout(options.op_timeout_s, connect=CONNECT_TIMEOUT_S)
        async with httpx.AsyncClient(timeout=timeout, headers=headers) as client:
            while trio.current_time() < deadline:
                await trio.sleep(rng.uniform(0, 2 * options.concurrency / options.rate))
                if trio.current_time() >= deadline:
                    return
                key = group.key()
                group.ops += 1
                if group.ops >= options.ops_per_key:
                    group.generation, group.ops = group.generation + 1, 0
                outcome = await self._operation(client, state, key, rng)
                self.counts[outcome] += 1
                if outcome == "info":
                    state.process += options.concurrency

    def _next_url(self, url: str) -> str:
        return self.urls[(self.urls.index(url) + 1) % len(self.urls)] if url in self.urls else url

    async def _operation(self, client: httpx.AsyncClient, state: WorkerState, key: str,
                         rng: random.Random) -> str:
        """Invoke one random operation, record its completion; returns its type."""
        draw = rng.randrange(4)
        values = self.options.values
        url = f"{state.home}/v1/kv/{key}"
        if draw == 0:
            return await self._record(client, state, key, "read", None, ("GET", url, None, {}))
        if draw == 1:
            value = rng.randrange(values)
            return await self._record(client, state, key, "write", value,
                                      ("PUT", url, {"value": value}, {}))
        new = rng.randrange(values)
        seen = state.seen.get(key)
        if draw == 3 and seen is not None:  # compare-and-set by version
            expected, version = seen
            return await self._record(client, state, key, "cas", [expected, new],
                                      ("PUT", url, {"value": new}, {"If-Match": f'"{version}"'}))
        expected = seen[0] if seen is not None and rng.random() < 0.5 else rng.randrange(values)
        return await self._record(client, state, key, "cas", [expected, new],
                                  ("PUT", url, {"value": new, "expect": expected}, {}))

    async def _record(self, client: httpx.AsyncClient, state: WorkerState, key: str, f: str,
                      value: Any, request: tuple[str, str, Any, dict[str, str]]) -> str:
        method, url, body, headers = request
        process = state.process
        self.history.record(process, "invoke", f, value, key=key)
        outcome = HttpOutcome("info", error=f"no answer within {self.options.op_timeout_s:g} s")
        with trio.move_on_after(self.options.op_timeout_s):
            outcome = await send(client, method, url, body=body, headers=headers)
        if outcome.error is not None and outcome.error.startswith("connect:"):
            state.home = self._next_url(state.home)  # that node is down: use another from now on
        if f == "read" and outcome.type == "info":
            outcome = HttpOutcome("fail", outcome.status, outcome.body, outcome.error)
        if outcome.type == "ok" and isinstance(outcome.body, dict):
            body_value = outcome.body.get("value")
            version = outcome.body.get("version")
            if isinstance(version, int):
                state.seen[key] = (body_value, version)
            completed = body_value if f == "read" else value
            self.history.record(process, "ok", f, completed, key=key)
            return "ok"
        if outcome.type == "ok":  # a 2xx without the JSON we expect: a bug worth seeing
            outcome = HttpOutcome("info", outcome.status, outcome.body, "unexpected response body")
        self.history.record(process, outcome.type, f, value, key=key, error=outcome.error)
        return outcome.type


# ---- the cron workload ---------------------------------------------------------------------------

LEDGER_SCRIPT: Final = (
    'printf \'{"kind":"%s","t_ns":%s,"node":"%s","attempt":["%s",%s,%s,%s]}\\n\' '
    'start "$(date +%s%N)" "$RAFTCRON_NODE" "$RAFTCRON_JOB" "$RAFTCRON_TICK" "$RAFTCRON_SLOT" '
    '"$RAFTCRON_ATTEMPT" >> {ledger}\n'
    'sleep {hold}\n'
    'printf \'{"kind":"%s","t_ns":%s,"node":"%s","attempt":["%s",%s,%s,%s],"ok":true}\\n\' '
    'finish "$(date +%s%N)" "$RAFTCRON_NODE" "$RAFTCRON_JOB" "$RAFTCRON_TICK" "$RAFTCRON_SLOT" '
    '"$RAFTCRON_ATTEMPT" >> {ledger}\n'
)


def cron_job_spec(name: str, schedule: str, ledger: Path, *, hold_s: float = 0.1) -> dict[str, Any]:
    """A job whose every attempt appends `start` and `finish` to `ledger` with true times:
    the command runs outside libfaketime (`env -u LD_PRELOAD`), so a skewed server's fake
    clock never reaches the ledger. Appends of one short line are atomic on a local disk."""
    script = LEDGER_SCRIPT.replace("{ledger}", shlex.quote(str(ledger))).replace(
        "{hold}", f"{hold_s:g}")
    return {"name": name, "schedule": schedule, "executor": "shell",
            "executor_config": {"command": shlex.join(["env", "-u", "LD_PRELOAD", "-u",
                                                       "FAKETIME_TIMESTAMP_FILE", "sh", "-c",
                                                       script]),
                                "timeout": "30s"}}


def read_ledger(path: Path) -> tuple[list[LedgerEvent], list[str]]:
    """The ledger's events (true time, epoch ms) and the lines that could not be read (a
    line torn by a crash mid-write is reported, never silently dropped)."""
    events: list[LedgerEvent] = []
    problems: list[str] = []
    if not path.exists():
        return events, problems
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line[:LEDGER_LINE_CHARS_MAX])
            job, tick, slot, attempt = record["attempt"]
            events.append(LedgerEvent(record["t_ns"] / 1e6, str(record["node"]),
                                      str(record["kind"]),
                                      (str(job), int(tick), int(slot), int(attempt)),
                                      record.get("ok")))
        except (ValueError, KeyError, TypeError) as error:
            problems.append(f"line {number}: {error}: {line[:120]!r}")
    return events, problems


class OutcomeLog:
    """A job's replicated outcomes, pieced together from polls of its `recent` list.

    Each poll shows only the last few outcomes, in log order. A new poll is appended after
    the longest overlap between the end of what we have and the start of what it shows, so
    an outcome recorded twice (the bug we look for) stays twice. A poll with no overlap
    means outcomes may have been missed in between: that is recorded as a gap, and the
    liveness checker does not judge ticks inside a gap.

    Each outcome also gets bounds on when it was committed, from the polls themselves
    (they are linearizable reads): after `after_ms`, the invocation of the last answered
    poll that did not show it, and by `seen_ms`, the answer of the first poll that did.
    """

    def __init__(self, since_ms: float = 0.0) -> None:
        self.records: list[dict[str, Any]] = []
        self.bounds: list[tuple[float, float]] = []  # (after_ms, seen_ms) per record
        self.gaps: list[tuple[int, int]] = []  # (last_ms before, first_ms after)
        self.polls = 0
        self._after_ms = since_ms

    def add(self, recent: Sequence[dict[str, Any]], invoked_ms: float, answered_ms: float) -> None:
        self.polls += 1
        items = [dict(item) for item in recent]
        overlap = _overlap(self.records, items)
        if overlap == 0 and self.records and items:
            self.gaps.append((int(self.records[-1]["last_ms"]), int(items[0]["first_ms"])))
        for item in items[overlap:]:
            self.records.append(item)
            self.bounds.append((self._after_ms, answered_ms))
        self._after_ms = invoked_ms

    def to_json(self) -> list[dict[str, Any]]:
        return [{**item, "after_ms": round(after, 3), "seen_ms": round(seen, 3)}
                for item, (after, seen) in zip(self.records, self.bounds)]


def _overlap(have: list[dict[str, Any]], new: list[dict[str, Any]]) -> int:
    """The longest k with have[-k:] == new[:k]."""
    for size in range(min(len(have), len(new)), 0, -1):
        if have[-size:] == new[:size]:
            return size
    return 0


class CronClient:
    """Creates the job, then polls its outcomes (linearizable reads through the leader)."""

    def __init__(self, urls: Sequence[str], history: HistoryRecorder, *, name: str,
                 token: str | None, wall_ms: Callable[[], float] = lambda: time.time() * 1000.0,
                 op_timeout_s: float = 5.0) -> None:
        self.urls = list(urls)
        self.history = history
        self.name = name
        self.log = OutcomeLog(wall_ms())
        self.last_view: dict[str, Any] | None = None
        self.poll_failures = 0
        self.last_ok_ms: float | None = None  # when the last poll was answered (epoch ms)
        self._wall_ms = wall_ms
        self._timeout_s = op_timeout_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(op_timeout_s, connect=CONNECT_TIMEOUT_S), headers=headers)
        self._next = 0

    async def aclose(self) -> None:
        await self._client.aclose()

    async def create(self, spec: dict[str, Any], deadline: float) -> dict[str, Any]:
        """Create the job, retrying definite failures until `deadline`; the created view."""
        process = "cron-setup"
        self.log = OutcomeLog(self._wall_ms())  # the job does not exist before this
        while True:
            self.history.record(process, "invoke", "write", spec["schedule"], key=self.name)
            outcome = HttpOutcome("info", error="no answer in time")
            with trio.move_on_after(self._timeout_s):
                outcome = await send(self._client, "POST", f"{self._url()}/v1/jobs", body=spec)
            if outcome.type == "ok" and isinstance(outcome.body, dict):
                self.history.record(process, "ok", "write", spec["schedule"], key=self.name)
                return outcome.body
            self.history.record(process, "info" if outcome.type == "info" else "fail", "write",
                                spec["schedule"], key=self.name, error=outcome.error)
            if outcome.type == "info":
                view = await self.view()  # it may have been created after all
                if view is not None:
                    return view
            if trio.current_time() >= deadline:
                raise TimeoutError(f"could not create job {self.name}: {outcome.error}")
            await trio.sleep(0.2)

    async def view(self) -> dict[str, Any] | None:
        """One linearizable read of the job; None when it failed (recorded either way)."""
        process = "cron-poll"
        self.history.record(process, "invoke", "read", None, key=self.name)
        invoked_ms = self._wall_ms()
        outcome = HttpOutcome("fail", error="no answer in time")
        with trio.move_on_after(self._timeout_s):
            outcome = await send(self._client, "GET", f"{self._url()}/v1/jobs/{self.name}")
        if outcome.type == "ok" and isinstance(outcome.body, dict) and "recent" in outcome.body:
            body = outcome.body
            self.history.record(process, "ok", "read",
                                [body.get("fired"), body.get("skipped"), body.get("missed")],
                                key=self.name)
            self.last_view = body
            self.last_ok_ms = self._wall_ms()
            recent = [item for item in body["recent"] if item.get("trigger") == "schedule"]
            self.log.add(recent, invoked_ms, self.last_ok_ms)
            return body
        self.poll_failures += 1
        self._next += 1  # try another node next time
        self.history.record(process, "fail", "read", None, key=self.name,
                            error=outcome.error or f"HTTP {outcome.status}")
        return None

    async def poll(self, deadline: float) -> None:
        while trio.current_time() < deadline:
            await self.view()
            await trio.sleep(POLL_PERIOD_S)

    def _url(self) -> str:
        return self.urls[self._next % len(self.urls)]
