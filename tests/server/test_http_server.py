"""scheduler/server/http_server.py: the HTTP/1.1 framing the API relies on, and its refusals.

Each test serves a tiny ASGI app on loopback and talks raw bytes to it, so what is checked is
the wire: keep-alive and pipelining, bodies by length or chunks, 100-continue, and that bad or
slow input gets its status and a closed connection while the server goes on serving.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.server.http_server import HttpServerOptions, _parse_head, _Refused, serve_http

Scope = dict[str, Any]
DEADLINE_S = 10.0


async def echo_app(scope: Scope, receive: Callable[[], Awaitable[dict[str, Any]]],
                   send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
    """Answers with what it saw: method, path, query, body and a header."""
    path = scope["path"]
    if path == "/boom":
        raise ValueError("the app failed")
    if path == "/unread":  # answers without reading the body
        body = b""
    else:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one,", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})
        return
    seen = {"method": scope["method"], "path": path, "raw_path": scope["raw_path"].decode(),
            "query": scope["query_string"].decode(), "body": body.decode(),
            "x": dict(scope["headers"]).get(b"x-test", b"").decode()}
    text = json.dumps(seen).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(text)).encode())]})
    await send({"type": "http.response.body", "body": text})


class Client:
    """A raw connection that reads whole responses (Content-Length or chunked)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def _more(self) -> bool:
        data = await self.stream.receive_some(65536)
        self.buffer += data
        return bool(data)

    async def _line(self) -> bytes:
        while (end := self.buffer.find(b"\r\n")) < 0:
            if not await self._more():
                raise EOFError("closed mid-line")
        line = bytes(self.buffer[:end])
        del self.buffer[:end + 2]
        return line

    async def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            if not await self._more():
                raise EOFError("closed mid-body")
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    async def response(self, *, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        status_line = await self._line()
        status = int(status_line.split(b" ")[1])
        headers: dict[str, str] = {}
        while line := await self._line():
            name, _, value = line.partition(b":")
            headers[name.decode().lower()] = value.strip().decode()
        if head_only or status == 100:
            return status, headers, b""
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while size := int(await self._line(), 16):
                body += await self._exactly(size)
                await self._line()
            await self._line()
            return status, headers, body
        return status, headers, await self._exactly(int(headers.get("content-length", "0")))

    async def closed(self) -> bool:
        """True once the server closed the connection (reads to EOF)."""
        while await self._more():
            pass
        return True


async def with_server(body: Callable[[Callable[[], Awaitable[Client]]], Awaitable[None]],
                      options: HttpServerOptions = HttpServerOptions(), app: Any = echo_app) -> None:
    with trio.fail_after(DEADLINE_S):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(lambda task_status: serve_http(
                app, "127.0.0.1", 0, options=options, task_status=task_status))

            async def connect() -> Client:
                return Client(await trio.open_tcp_stream("127.0.0.1", port))

            await body(connect)
            nursery.cancel_scope.cancel()


def run(body: Callable[[Callable[[], Awaitable[Client]]], Awaitable[None]], **kwargs: Any) -> None:
    trio.run(lambda: with_server(body, **kwargs))


def test_keep_alive_serves_several_requests_on_one_connection_and_pipelined_ones_in_order() -> None:
    async def body(connect: Callable[[], Awaitable[Client]]) -> None:
        client = await connect()
        await client.send(b"PUT /v1/kv/a%20b?stale=true HTTP/1.1\r\nHost: x\r\nX-Test: 1\r\n"
                          b"Content-Length: 5\r\n\r\nhello")
        status, headers, data = await client.response()
        seen = json.loads(data)
        assert status == 200 and "connection" not in headers and "date" in headers
        assert seen == {"method": "PUT", "path": "/v1/kv/a b", "raw_path": "/v1/kv/a%20b",
                        "query": "stale=true", "body": "hello", "x": "1"}
        # Two requests in one write: both answered, in order, on the same connection.
        await client.send(b"GET /one HTTP/1.1\r\nHost: x\r\n\r\n"
                          b"POST /two HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        first, second = await client.response(), await client.response()
        assert json.loads(first[2])["path"] == "/one"
        assert json.loads(second[2])["path"] == "/two" and json.loads(second[2])["body"] == "abc"

    run(body)


def test_http_1_0_and_connection_close_end_the_connection_after_the_response() -> None:
    async def body(connect: Callable[[], Awaitable[Client]]) -> None:
        for request in (b"GET /a HTTP/1.0\r\n\r\n", b"GET /a HTTP/1.1\r\nConnection: close\r\n\r\n"):
            client = await connect()
            await client.send(request)
            status, headers, _ = await client.response()
            assert status == 200 and headers["connection"] == "close"
            assert await client.closed()
        client = await connect()  # HTTP/1.0 asking for keep-alive keeps it
        await client.send(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert (await client.response())[0] == 200
        await client.send(b"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        assert json.loads((await client.response())[2])["path"] == "/b"

    run(body)


def test_a_chunked_request_body_arrives_whole_and_a_streamed_response_is_chunked() -> None:
    async def body(connect: Callable[[], Awaitable[Client]]) -> None:
        client = await connect()
        await client.send(b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                          b"4;ext=1\r\nwiki\r\n5\r\npedia\r\n0\r\nTrailer: x\r\n\r\n")
        status, _, data = await client.response()
        assert status == 200 and json.loads(data)["body"] == "wikipedia"
        await client.send(b"GET /stream HTTP/1.1\r\n\r\n")
        status, headers, data = await client.response()
        assert headers["transfer-encoding"] == "chunked" and data == b"one,two"
        await client.send(b"HEAD /a HTTP/1.1\r\n\r\n")  # a HEAD response carries no body
        status, headers, _ = await client.response(head_only=True)
        await client.send(b"GET /after-head HTTP/1.1\r\n\r\n")
        assert json.loads((await client.response())[2])["path"] == "/after-head"

    run(body)


def test_expect_100_continue_is_answered_when_the_app_reads_the_body() -> None:
    async def body(connect: Callable[[], Awaitable[Client]]) -> None:
        client = await connect()
        await client.send(b"PUT /e HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        status, _, _ = await client.response()
        assert status == 100
        await client.send(b"ok")
        status, _, data = await client.response()
        assert status == 200 and json.loads(data)["body"] == "ok"

    run(body)


def test_a_response_that_leaves_the_body_unread_closes_the_connection() -> None:
    async def body(connect: Callable[[], Awaitable[Client]]) -> None:
        client = await connect()
        await client.send(b"PUT /unread HTTP/1.1\r\nContent-Length: 10\r\n\r\n0123")
        status, headers, _ = await client.response()
        assert status == 200 and headers["connection"] == "close"
        assert await client.closed()

    run(body)


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET /a HTTP/2.0\r\n\r\n", 505),
    (b"GET /a HTTP/1.1\r\nno colon here\r\n\r\n", 400),
    (b"GET /a HTTP/1.1\r\nBad Name: x\r\n\r\n", 400),
    (b"PUT /a HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"PUT /a HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
    (b"PUT /a HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"PUT /a HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    (b"PUT /a HTTP/1.1\r\nExpect: magic\r\n\r\n", 417),
    (b"GET a-path HTTP/1.1\r\n\r\n", 400),
    (b"POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"GET /boom HTTP/1.1\r\n\r\n", 500),
])
def test_bad_requests_get_a_status_and_a_closed_connection_and_the_server_goes_on(
        request_bytes: bytes, status: int) -> None:
    async def body(connect: Callable[[], Awaitable[Client]]) -> None:
        client = await connect()
        await client.send(request_bytes)
        got, headers, data = await client.response()
        assert (got, headers["connection"]) == (status, "close")
        assert "error" in json.loads(data)
        assert await client.closed()
        client = await connect()
        await client.send(b"GET /still-here HTTP/1.1\r\n\r\n")
        assert (await client.response())[0] == 200

    run(body)


def test_an_oversized_head_gets_431_and_a_slow_one_408_and_an_idle_connection_is_closed() -> None:
    options = HttpServerOptions(head_bytes_max=1024, keep_alive_s=0.2, read_timeout_s=0.2)

    async def body(connect: Callable[[], Awaitable[Client]]) -> None:
        client = await connect()
        await client.send(b"GET /a HTTP/1.1\r\nX-Big: " + b"y" * 2000 + b"\r\n\r\n")
        assert (await client.response())[0] == 431
        assert await client.closed()
        client = await connect()
        await client.send(b"GET /a HTTP/1.1\r\nHost:")  # and then nothing
        assert (await client.response())[0] == 408
        client = await connect()
        await client.send(b"PUT /a HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")  # body stalls
        assert (await client.response())[0] == 408
        client = await connect()
        await client.send(b"GET /a HTTP/1.1\r\n\r\n")
        assert (await client.response())[0] == 200
        assert await client.closed()  # idle past keep_alive_s: closed without a response

    run(body, options=options)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_any_request_head_is_parsed_or_refused_never_an_unexpected_error(head: bytes) -> None:
    try:
        request = _parse_head(head)
    except _Refused as refused:
        assert 400 <= refused.status < 600
    else:
        assert request.method and request.version in ("1.0", "1.1") and request.length >= 0


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 200), min_size=1, max_size=12))
def test_requests_split_at_any_byte_get_the_same_answers(cuts: list[int]) -> None:
    """Three pipelined requests (length, chunked and bodiless) sent in arbitrary pieces."""
    wire = (b"PUT /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
            b"POST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            b"GET /c?q=1 HTTP/1.1\r\n\r\n")
    pieces, at = [], 0
    for cut in cuts:
        if at < len(wire):
            pieces.append(wire[at:at + cut])
            at += cut
    pieces.append(wire[at:])

    async def body(connect: Callable[[], Awaitable[Client]]) -> None:
        client = await connect()
        for piece in pieces:
            if piece:
                await client.send(piece)
                await trio.lowlevel.checkpoint()
        seen = [json.loads((await client.response())[2]) for _ in range(3)]
        assert [(s["path"], s["body"], s["query"]) for s in seen] == [
            ("/a", "hello", ""), ("/b", "abcde", ""), ("/c", "", "q=1")]

    run(body)


def test_a_head_trickled_a_byte_at_a_time_gets_408_once_its_whole_time_is_up() -> None:
    """Each byte comes well within read_timeout_s of the last, but the head as a whole does
    not: the connection is refused instead of being held for as long as the client likes."""
    options = HttpServerOptions(read_timeout_s=0.3)

    async def body(connect: Callable[[], Awaitable[Client]]) -> None:
        client = await connect()
        started = trio.current_time()

        async def trickle() -> None:
            for byte in b"GET /a HTTP/1.1\r\nX-Slow: " + b"z" * 1000:
                try:
                    await client.send(bytes([byte]))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                await trio.sleep(0.05)  # the slow client itself, not a wait for a condition

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trickle)
            status, _, _ = await client.response()
            nursery.cancel_scope.cancel()
        assert status == 408
        assert trio.current_time() - started < 3.0

    run(body, options=options)
