"""The job routes of the HTTP API (Dkron's `/v1/jobs...` paths) over the scheduler part.

Rules (on top of scheduler/http_api.py's):
  1. A job definition is validated here with `JobSpec.from_json` before it is proposed, so a
     bad field is a 400 naming it and costs no log entry; the state machine validates again.
  2. Commands carry the leader's clock (`now_ms`); handlers run only on the leader (writes
     elsewhere are redirected), so that clock is the leader's.
  3. Conditional updates (`If-Match: <version>`) are atomic because every job write on a
     leader holds that job's lock from the check to the applied result, and the check reads
     after a ReadIndex barrier (which also flushes entries of earlier leaders). A version is
     the log index of the PutJob that wrote the definition.
  4. Run-now is idempotent by `Idempotency-Key`: the state machine remembers the key, so a
     retried request (after a 504, say) returns the first run instead of starting another.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

import trio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from scheduler.commands import AttemptKey, Command, DeleteJob, PutJob, RunNow, ToggleJob, encode_command
from scheduler.http_api import ApiError, if_match_version, linearizable, read_json, server_of, write
from scheduler.job import JobSpec, JobValidationError
from scheduler.results import Result
from scheduler.schedule import format_utc
from scheduler.state import JobRecord, SchedulerState

if TYPE_CHECKING:
    from scheduler.server.node import Server

__all__ = ["job_routes", "job_view"]

JOB_BODY_BYTES_MAX: Final = 256 * 1024
IDEMPOTENCY_KEY_CHARS_MAX: Final = 200
JOB_LOCKS_MAX: Final = 10_000
_STATUS_BY_REASON: Final = {"invalid_job": 400, "bad_parent": 400, "unknown_job": 404,
                            "has_children": 409, "malformed": 400}


def wall_ms() -> int:
    """The leader's clock for commands (Rule 2); the state machine never reads one."""
    return time.time_ns() // 1_000_000


def scheduler_state(server: Server) -> SchedulerState:
    return server.scheduler.state


def _iso(ms: int | None) -> str | None:
    return None if ms is None or ms < 0 else format_utc(ms)


def job_view(record: JobRecord) -> dict[str, Any]:
    """Dkron's job fields plus ours: the definition, then where its schedule stands."""
    view = record.spec.to_json()
    view.update({
        "disabled": record.state == "disabled",
        "version": record.version,
        "next": _iso(record.next_tick_ms), "next_ms": record.next_tick_ms,
        "cursor_ms": record.cursor_ms, "anchor_ms": record.anchor_ms,
        "fired": record.fired, "skipped": record.skipped, "missed": record.missed,
        "live_executions": record.live_executions,
        "last_success": _iso(record.last_success_ms), "last_error": _iso(record.last_error_ms),
        "status": _status(record),
        "recent": [outcome.to_json() for outcome in record.recent],  # the state keeps 32
    })
    return view


def _status(record: JobRecord) -> str:
    if record.live_executions:
        return "running"
    if record.last_error_ms is not None and (record.last_success_ms or -1) < record.last_error_ms:
        return "failed"
    if record.last_success_ms is not None:
        return "success"
    return "untriggered"


def _result_or_error(result: Any) -> Result:
    assert isinstance(result, Result), f"the scheduler part answered {result!r}"
    if not result.ok:
        raise ApiError(_STATUS_BY_REASON.get(result.reason, 409), result.detail or result.reason,
                       reason=result.reason)
    return result


async def propose_command(request: Request, command: Command) -> Result:
    return _result_or_error(await write(request, "sched", encode_command(command)))


@asynccontextmanager
async def job_lock(server: Server, name: str) -> AsyncIterator[None]:
    """Rule 3: one writer per job on this leader at a time (bounded table of locks)."""
    locks: dict[str, trio.Lock] = server.job_locks
    lock = locks.get(name)
    if lock is None:
        if len(locks) >= JOB_LOCKS_MAX:
            for stale in [n for n, l in locks.items() if not l.locked()]:
                del locks[stale]
        lock = locks.setdefault(name, trio.Lock())
    async with lock:
        yield


def _job_or_404(server: Server, name: str) -> JobRecord:
    record = scheduler_state(server).jobs.get(name)
    if record is None:
        raise ApiError(404, f"no job {name!r}")
    return record


# ---- handlers ---------------------------------------------------------------------------------------

async def list_jobs(request: Request) -> Response:
    await linearizable(request)
    jobs = list(scheduler_state(server_of(request)).jobs.values())
    query = request.query_params
    if query.get("q"):
        jobs = [j for j in jobs if query["q"] in j.spec.name or query["q"] in j.spec.displayname]
    for key, value in query.items():
        if key.startswith("metadata[") and key.endswith("]"):
            jobs = [j for j in jobs if j.spec.metadata.get(key[9:-1]) == value]
    views = [job_view(j) for j in jobs]
    sort_key = query.get("_sort", "name")
    views.sort(key=lambda v: (v.get(sort_key) is None, str(v.get(sort_key))),
               reverse=query.get("_order", "ASC").upper() == "DESC")
    total = len(views)
    start = int(query["_start"]) if query.get("_start", "").isdigit() else 0
    end = int(query["_end"]) if query.get("_end", "").isdigit() else total
    return JSONResponse(views[start:end], headers={"X-Total-Count": str(total)})


async def put_job(request: Request) -> Response:
    body = await read_json(request, JOB_BODY_BYTES_MAX)
    try:
        spec = JobSpec.from_json(body)
    except JobValidationError as error:
        raise ApiError(400, str(error), field=error.field) from error
    path_name = request.path_params.get("name")
    if path_name is not None and path_name != spec.name:
        raise ApiError(400, f"the body names job {spec.name!r} but the path says {path_name!r}")
    server = server_of(request)
    expected = if_match_version(request)
    async with job_lock(server, spec.name):
        if expected is not None:
            await linearizable(request)
            existing = scheduler_state(server).jobs.get(spec.name)
            current = existing.version if existing is not None else 0
            if current != expected:
                raise ApiError(412, f"job {spec.name!r} is at version {current}, not {expected}",
                               version=current)
        await propose_command(request, PutJob(now_ms=wall_ms(), job=body))
        record = _job_or_404(server, spec.name)
    if "runoncreate" in request.query_params:  # Dkron: present, whatever its value
        await propose_command(request, RunNow(now_ms=wall_ms(), job=spec.name,
                                              idempotency_key=f"create:{record.version}"))
    return JSONResponse(job_view(record), status_code=201, headers={"ETag": f'"{record.version}"'})


async def get_job(request: Request) -> Response:
    await linearizable(request)
    record = _job_or_404(server_of(request), request.path_params["name"])
    return JSONResponse(job_view(record), headers={"ETag": f'"{record.version}"'})


async def delete_job(request: Request) -> Response:
    server = server_of(request)
    name = request.path_params["name"]
    async with job_lock(server, name):
        await linearizable(request)
        view = job_view(_job_or_404(server, name))
        await propose_command(request, DeleteJob(now_ms=wall_ms(), name=name))
    return JSONResponse(view)


async def toggle_job(request: Request) -> Response:
    server = server_of(request)
    name = request.path_params["name"]
    wanted = request.query_params.get("disabled")
    disabled = None if wanted is None else wanted.lower() in ("1", "true", "yes")
    async with job_lock(server, name):
        await propose_command(request, ToggleJob(now_ms=wall_ms(), name=name, disabled=disabled))
        record = _job_or_404(server, name)
    return JSONResponse(job_view(record))


async def run_job(request: Request) -> Response:
    name = request.path_params["name"]
    key = (request.headers.get("idempotency-key") or request.headers.get("x-idempotency-key")
           or f"auto:{uuid.uuid4()}")
    if len(key) > IDEMPOTENCY_KEY_CHARS_MAX:
        raise ApiError(400, f"Idempotency-Key is longer than {IDEMPOTENCY_KEY_CHARS_MAX} characters")
    result = await propose_command(request, RunNow(now_ms=wall_ms(), job=name, idempotency_key=key))
    return JSONResponse({**result.value, "idempotency_key": key}, status_code=202)


def _execution(name: str, tick: int, slot: int, state: str, attempts: int) -> dict[str, Any]:
    """Dkron's execution fields (job_name, success, output, node_name, started_at,
    finished_at) beside ours (tick, slot, state, attempts)."""
    return {"id": f"{tick}-{slot}", "job_name": name, "job": name, "tick_ms": tick,
            "tick": _iso(tick), "slot": slot, "state": state, "attempts": attempts,
            "success": {"succeeded": True, "failed": False, "unreachable": False}.get(state),
            "node_name": None, "output": "", "started_at": None, "finished_at": None}


def execution_views(state: SchedulerState, name: str) -> list[dict[str, Any]]:
    """The job's live executions, with the node holding the current attempt's lease."""
    views = []
    for key, execution in state.executions.items():
        if key.job != name:
            continue
        view = _execution(name, key.tick, key.slot, execution.state, execution.attempts)
        attempt = state.attempts.get(AttemptKey(key.job, key.tick, key.slot, execution.attempts))
        view.update({"trigger": execution.trigger, "nodes_tried": list(execution.nodes_tried),
                     "node_name": attempt.node if attempt else None,
                     "lease_deadline_ms": attempt.deadline_ms if attempt else None})
        views.append(view)
    return views


def _with_local_results(server: Server, views: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Fill output, node and times from the attempts this node ran itself (output is not
    replicated: only the node that ran an attempt has it)."""
    local = {(r["job"], r["tick_ms"], r["slot"]): r for r in server.local_results}
    for view in views:
        result = local.get((view["job"], view["tick_ms"], view["slot"]))
        if result is not None:
            view.update({"node_name": result["node"], "output": result["output"],
                         "started_at": _iso(result["started_ms"]),
                         "finished_at": _iso(result["started_ms"] + result["duration_ms"]),
                         "exit_code": result["exit_code"], "error": result["error"]})
    return views


async def list_executions(request: Request) -> Response:
    """Dkron's shape: an array, newest first (live ones, then the job's recent finished ones)."""
    await linearizable(request)
    server = server_of(request)
    name = request.path_params["name"]
    record = _job_or_404(server, name)
    views = execution_views(scheduler_state(server), name)
    views.sort(key=lambda view: -view["tick_ms"])
    views += [_execution(name, tick, slot, execution_state, attempts)
              for tick, slot, execution_state, attempts in reversed(record.recent_executions)]
    return JSONResponse(_with_local_results(server, views))


async def show_execution(request: Request) -> Response:
    await linearizable(request)
    server = server_of(request)
    name, wanted = request.path_params["name"], request.path_params["execution"]
    record = _job_or_404(server, name)
    views = execution_views(scheduler_state(server), name) + [
        _execution(name, tick, slot, execution_state, attempts)
        for tick, slot, execution_state, attempts in record.recent_executions]
    found = [view for view in views if view["id"] == wanted]
    if not found:
        raise ApiError(404, f"no execution {wanted!r} of job {name!r} (ids are TICK-SLOT)")
    return JSONResponse(_with_local_results(server, found)[0])


async def busy(request: Request) -> Response:
    await linearizable(request)
    state = scheduler_state(server_of(request))
    names = sorted({key.job for key in state.executions})
    return JSONResponse([view for name in names for view in execution_views(state, name)
                         if view["state"] == "active"])


def job_routes() -> list[Route]:
    return [
        Route("/v1/jobs", list_jobs, methods=["GET"]),
        Route("/v1/jobs", put_job, methods=["POST", "PATCH"]),
        Route("/v1/jobs/{name}", get_job, methods=["GET"]),
        Route("/v1/jobs/{name}", put_job_by_name, methods=["PUT"]),
        Route("/v1/jobs/{name}", delete_job, methods=["DELETE"]),
        Route("/v1/jobs/{name}", run_job, methods=["POST"]),
        Route("/v1/jobs/{name}/run", run_job, methods=["POST"]),
        Route("/v1/jobs/{name}/toggle", toggle_job, methods=["POST"]),
        Route("/v1/jobs/{name}/executions", list_executions, methods=["GET"]),
        Route("/v1/jobs/{name}/executions/{execution}", show_execution, methods=["GET"]),
        Route("/v1/busy", busy, methods=["GET"]),
    ]


async def put_job_by_name(request: Request) -> Response:
    """Dkron's `PUT /v1/jobs/{job}` (in its code, not its spec): the body's name must match."""
    return await put_job(request)
