"""Routes nodes use among themselves: an agent's report to the leader's planner, and an
agent's request to join as a learner (`POST /v1/internal/join`).

`POST /v1/internal/report` carries one agent's heartbeat (tags, tokens, load) and the
renewals, finishes and claims it wants proposed. Only the leader plans, so elsewhere it is
answered like any write (307 to the leader). The body is parsed strictly and bounded: it is
input from the network even when it comes from a peer (the bearer token guards it when set).
"""

from __future__ import annotations

from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from raft.errors import NotLeader, ProposalDropped
from raft.node import ConfChange
from raft.progress import Role
from raft.trio_driver import ProposalTimeout
from scheduler.commands import AttemptKey
from scheduler.http_api import ApiError, read_json, server_of, write
from scheduler.server.members import encode_join
from scheduler.planner import AgentInfo

__all__ = ["internal_routes"]

REPORT_BYTES_MAX: Final = 512 * 1024
ITEMS_MAX: Final = 1_000


def _key(value: Any) -> AttemptKey:
    if (not isinstance(value, list) or len(value) != 4 or not isinstance(value[0], str)
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in value[1:])):
        raise ApiError(400, "an attempt is [job, tick, slot, attempt]")
    return AttemptKey(value[0], value[1], value[2], value[3])


def _items(body: dict[str, Any], name: str) -> list[Any]:
    items = body.get(name, [])
    if not isinstance(items, list) or len(items) > ITEMS_MAX:
        raise ApiError(400, f"{name}: expected a list of at most {ITEMS_MAX} items")
    return items


def parse_report(body: Any) -> tuple[str, AgentInfo, list[AttemptKey],
                                     list[tuple[AttemptKey, bool, str]], list[AttemptKey]]:
    if not isinstance(body, dict) or not isinstance(body.get("node"), str):
        raise ApiError(400, "a report needs a node name")
    tags = body.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                             for k, v in tags.items()):
        raise ApiError(400, "tags: expected an object of strings")
    numbers = [body.get(name, 0) for name in ("tokens", "reserved_tokens", "load_permille")]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in numbers):
        raise ApiError(400, "tokens, reserved_tokens and load_permille must be integers >= 0")
    info = AgentInfo(tags=tags, tokens=numbers[0], reserved_tokens=numbers[1],
                     load_permille=min(numbers[2], 1000))
    finish = []
    for item in _items(body, "finish"):
        if not isinstance(item, list) or len(item) != 3 or not isinstance(item[1], bool) \
                or not isinstance(item[2], str):
            raise ApiError(400, "a finish is [attempt, ok, detail]")
        finish.append((_key(item[0]), item[1], item[2][:200]))
    return (body["node"], info, [_key(k) for k in _items(body, "renew")], finish,
            [_key(k) for k in _items(body, "claim")])


async def report(request: Request) -> Response:
    server = server_of(request)
    node, info, renew, finish, claim = parse_report(await read_json(request, REPORT_BYTES_MAX))
    if not server.report_to_planner(node, info, renew, finish, claim):
        if server.raft.node.leader != server.options.node_id:
            raise NotLeader(server.raft.node.leader)
        raise ApiError(503, "the leader is not planning yet", headers={"Retry-After": "1"})
    return JSONResponse({"accepted": True})


async def join(request: Request) -> Response:
    """An agent asks to be added as a learner: its addresses first (so every server can reach
    it), then the configuration change. Idempotent, so the agent simply retries."""
    server = server_of(request)
    body = await read_json(request, 4096)
    fields = [body.get(name) if isinstance(body, dict) else None for name in ("node", "raft", "http")]
    texts = [f for f in fields if isinstance(f, str) and f]
    if len(texts) != 3:
        raise ApiError(400, 'a join is {"node": ID, "raft": "HOST:PORT", "http": "HOST:PORT"}')
    node, raft, http = texts
    runtime = server.raft
    if runtime.node.role is not Role.LEADER:
        raise NotLeader(runtime.node.leader)
    if node in server.options.peers:
        raise ApiError(409, f"{node} is a bootstrap server; it cannot join as an agent")
    if server.members.addresses.get(node) != (raft, http):
        result = await write(request, "members", encode_join(node, raft, http))
        if not result.get("ok"):
            raise ApiError(400, str(result.get("error")))
    if node not in runtime.node.config.members:
        try:
            await runtime.change_config(ConfChange("add_learner", node),
                                        timeout_s=server.options.request_timeout_s)
        except ProposalDropped as exc:
            raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from exc
        except ProposalTimeout as exc:
            raise ApiError(504, str(exc), outcome="unknown") from exc
    return JSONResponse({"joined": node, "learners": sorted(runtime.node.config.learners)})


def internal_routes() -> list[Route]:
    return [Route("/v1/internal/report", report, methods=["POST"]),
            Route("/v1/internal/join", join, methods=["POST"])]
