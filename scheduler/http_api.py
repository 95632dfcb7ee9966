"""The HTTP API of a server: Dkron's paths (`/v1/...`) on starlette, served on trio by
`scheduler.server.http_server`.

Rules:
  1. A write is answered only once its entry is committed and applied on this node; a
     timeout answers 504 with `"outcome": "unknown"` (the entry may still commit).
  2. Writes, and reads without `?stale=true`, are served by the leader. Another node answers
     307 with `Location` on the leader's API (clients keep their Authorization header and
     re-send the body), or 503 with `Retry-After` when it knows no leader.
  3. Reads are linearizable through ReadIndex: the leader confirms with a quorum that it still
     leads, waits until it applied the commit index of that moment, then reads its state.
  4. Every request body is bounded (`BODY_BYTES_MAX`), read incrementally, and refused with 413
     beyond the bound, before it is parsed.
  5. With a token configured every path but `/health` needs `Authorization: Bearer <token>`.

The job routes live in `scheduler.server.jobs_api`, the servers' own in
`scheduler.server.internal_api`; this module holds what needs only Raft and the KV registers.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from raft import latency_probe
from raft.errors import NotLeader, ProposalDropped
from raft.trio_driver import ProposalTimeout
from scheduler.server.kv import KEY_BYTES_MAX, VALUE_BYTES_MAX, canonical_json, encode_delete, encode_put
from scheduler.server.machine import envelope

if TYPE_CHECKING:
    from scheduler.server.node import Server

__all__ = ["ApiError", "BODY_BYTES_MAX", "build_app", "read_json", "write", "linearizable"]

BODY_BYTES_MAX: Final = 1024 * 1024
Handler = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    """An error answered as `{"error": message, ...extra}` with `status`."""

    def __init__(self, status: int, message: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}
        self.extra = extra


# ---- request helpers ------------------------------------------------------------------------------

async def read_json(request: Request, limit: int = BODY_BYTES_MAX) -> Any:
    """The request body as JSON, read at most `limit` bytes (Rule 4)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body of {declared} bytes exceeds {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"request body is not valid JSON: {exc}") from exc


def server_of(request: Request) -> Server:
    server: Server = request.app.state.server
    return server


async def write(request: Request, part: str, payload: bytes) -> Any:
    """Propose one command and return its result once applied (Rule 1)."""
    server = server_of(request)
    try:
        return await server.raft.propose(envelope(part, payload),
                                         timeout_s=server.options.request_timeout_s)
    except ProposalDropped as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": "1"}, outcome="not committed") from exc
    except ProposalTimeout as exc:
        raise ApiError(504, str(exc), outcome="unknown") from exc


async def linearizable(request: Request) -> None:
    """Make the next read of local state linearizable, unless the client asked for stale."""
    if request.query_params.get("stale", "").lower() in ("1", "true", "yes"):
        return
    server = server_of(request)
    try:
        await server.raft.read_index(timeout_s=server.options.request_timeout_s)
    except ProposalDropped as exc:
        raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from exc
    except ProposalTimeout as exc:
        raise ApiError(504, f"could not confirm leadership in time: {exc}") from exc


def _not_leader(request: Request, error: NotLeader) -> Response:
    """Rule 2: point the client at the leader's API, keeping path and query."""
    server = server_of(request)
    leader = error.leader_hint or server.raft.node.leader
    address = server.http_address(leader) if leader else None
    body: dict[str, Any] = {"error": "this server is not the leader", "leader": leader}
    if address is None:
        return JSONResponse(body, status_code=503, headers={"Retry-After": "1"})
    host, port = address
    location = f"http://{host}:{port}{request.url.path}"
    if request.url.query:
        location += f"?{request.url.query}"
    return JSONResponse(body, status_code=307, headers={"Location": location})


async def _api_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, NotLeader):
        return _not_leader(request, exc)
    assert isinstance(exc, ApiError)
    return JSONResponse({"error": exc.message, **exc.extra}, status_code=exc.status, headers=exc.headers)


class BearerAuth:
    """Rule 5, as plain ASGI (no per-request task, unlike starlette's BaseHTTPMiddleware)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._expected is None or scope["type"] != "http" or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"authorization", b"")
        if hmac.compare_digest(given, self._expected):
            await self.app(scope, receive, send)
            return
        response = JSONResponse({"error": "missing or wrong bearer token"}, status_code=401,
                                headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


# ---- status, membership, metrics -------------------------------------------------------------------

def member(server: Server, node_id: str) -> dict[str, Any]:
    options = server.options
    runtime = server.raft
    raft_address = server.raft_address(node_id)
    http_address = server.http_address(node_id)
    config = runtime.node.config
    result: dict[str, Any] = {
        "id": node_id, "name": node_id,
        "raft_address": f"{raft_address[0]}:{raft_address[1]}" if raft_address else None,
        "http_address": f"{http_address[0]}:{http_address[1]}" if http_address else None,
        "voter": node_id in config.voters,
        "leader": node_id == runtime.node.leader,
    }
    if node_id == options.node_id:
        result["role"] = runtime.node.role.value
        result["tags"] = dict(options.tags)
        result["term"] = runtime.node.term
        result["commit_index"] = runtime.node.commit_index
        result["applied_index"] = runtime.node.applied_index
    progress = runtime.node.progress(node_id)
    if progress is not None:
        result["match_index"] = progress.match
        result["replication"] = progress.state.value
    return result


async def status(request: Request) -> Response:
    server = server_of(request)
    return JSONResponse({
        "agent": {"name": server.options.node_id, "version": "raftcron 0.1"},
        "raft": server.raft.status(),
        "tags": dict(server.options.tags),
    })


async def leader(request: Request) -> Response:
    server = server_of(request)
    leader_id = server.raft.node.leader
    if leader_id is None:
        return JSONResponse({"error": "no leader known"}, status_code=503, headers={"Retry-After": "1"})
    return JSONResponse(member(server, leader_id))


async def is_leader(request: Request) -> Response:
    server = server_of(request)
    if server.raft.node.leader == server.options.node_id:
        return JSONResponse({"leader": True})
    return JSONResponse({"leader": False}, status_code=404)


async def members(request: Request) -> Response:
    server = server_of(request)
    config = server.raft.node.config
    ids = sorted(config.members | set(server.options.peers) | set(server.joined) | {server.options.node_id})
    return JSONResponse([member(server, node_id) for node_id in ids])


async def metrics(request: Request) -> Response:
    from scheduler.server.metrics import render_metrics

    return PlainTextResponse(render_metrics(server_of(request)),
                             media_type="text/plain; version=0.0.4; charset=utf-8")


async def health(request: Request) -> Response:
    return PlainTextResponse("ok\n")


# ---- KV registers ------------------------------------------------------------------------------------

def _key(request: Request) -> str:
    key: str = request.path_params["key"]
    if not key or len(key.encode()) > KEY_BYTES_MAX:
        raise ApiError(400, f"key must be 1-{KEY_BYTES_MAX} bytes")
    return key


def if_match_version(request: Request) -> int | None:
    """The version an `If-Match` header asks for (`"7"`, `W/"7"` or `7`), or None without one."""
    header = request.headers.get("if-match")
    if header is None:
        return None
    text = header.strip().removeprefix("W/").strip('"')
    if not text.isdigit():
        raise ApiError(400, f"If-Match must be a version number, got {header!r}")
    return int(text)


def _kv_response(result: dict[str, Any]) -> Response:
    headers = {"ETag": f'"{result.get("version", 0)}"'}
    if result.get("ok"):
        return JSONResponse(result, headers=headers)
    if result.get("error") == "precondition failed":
        return JSONResponse(result, status_code=412, headers=headers)
    return JSONResponse(result, status_code=507 if "maximum" in str(result.get("error")) else 400)


async def kv_get(request: Request) -> Response:
    key = _key(request)
    await linearizable(request)
    current = server_of(request).kv.store.get(key)
    if current is None:
        return JSONResponse({"key": key, "exists": False, "value": None, "version": 0},
                            status_code=404, headers={"ETag": '"0"'})
    return JSONResponse({"key": key, "exists": True, "value": json.loads(current.value),
                         "version": current.version}, headers={"ETag": f'"{current.version}"'})


async def kv_put(request: Request) -> Response:
    key = _key(request)
    body = await read_json(request, VALUE_BYTES_MAX + 1024)
    if not isinstance(body, dict) or "value" not in body or set(body) - {"value", "expect"}:
        raise ApiError(400, 'body must be {"value": V} or {"value": V, "expect": OLD}')
    try:
        value = canonical_json(body["value"])
        expect = canonical_json(body["expect"]) if "expect" in body else None
    except ValueError as exc:
        raise ApiError(400, f"value is not plain JSON: {exc}") from exc
    if len(value) > VALUE_BYTES_MAX:
        raise ApiError(413, f"value exceeds {VALUE_BYTES_MAX} bytes")
    command = encode_put(key, value, expect_version=if_match_version(request), expect_value=expect)
    return _kv_response(await write(request, "kv", command))


async def kv_delete(request: Request) -> Response:
    key = _key(request)
    command = encode_delete(key, expect_version=if_match_version(request))
    return _kv_response(await write(request, "kv", command))


# ---- the application -----------------------------------------------------------------------------

def base_routes() -> list[Route]:
    return [
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1", status, methods=["GET"]),
        Route("/v1/", status, methods=["GET"]),
        Route("/v1/leader", leader, methods=["GET"]),
        Route("/v1/isleader", is_leader, methods=["GET"]),
        Route("/v1/members", members, methods=["GET"]),
        Route("/v1/kv/{key:path}", kv_get, methods=["GET"]),
        Route("/v1/kv/{key:path}", kv_put, methods=["PUT"]),
        Route("/v1/kv/{key:path}", kv_delete, methods=["DELETE"]),
    ]


def build_app(server: Server) -> ASGIApp:
    from scheduler.server.internal_api import internal_routes
    from scheduler.server.jobs_api import job_routes

    routes = base_routes() + job_routes() + internal_routes()
    app = Starlette(routes=routes, exception_handlers={ApiError: _api_error, NotLeader: _api_error})
    app.state.server = server
    authed = BearerAuth(app, server.options.token)
    return LatencyProbe(authed) if latency_probe.ENABLED else authed


class LatencyProbe:
    """Marks when a request reached the app and when its response body left (only with
    RAFTCRON_LATENCY_PROBE set; see raft/latency_probe.py)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        context = [time.perf_counter_ns(), -1]
        latency_probe.request_context.set(context)

        async def timed_send(message: Any) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body") and context[1] >= 0:
                latency_probe.mark("http_sent", context[1])

        await self.app(scope, receive, timed_send)
