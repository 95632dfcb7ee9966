"""`serve_http`: a small HTTP/1.1 server on trio for the server's ASGI app.

Why our own and not hypercorn: a write's latency at one client is mostly Python, and hypercorn
spent ~0.5 ms before the app saw a request and ~0.35 ms sending its response (h11's general
parser and writer, several tasks and events per request; papers/perf/README.md, "http").
The API needs much less of HTTP than a general server offers: HTTP/1.1 and 1.0, keep-alive and
pipelined requests, `Content-Length` or chunked request bodies, `Expect: 100-continue`, one
response per request. Everything else is refused with a clear status, and the connection is
closed whenever its state is in doubt.

Bounds (bad input gets an error and changes nothing):
  * a request head (request line + headers) of at most `head_bytes_max`, else 431;
  * a connection idle between requests for `keep_alive_s` is closed; a head that is not whole
    `read_timeout_s` after its first byte, or a body that stops arriving for that long, gets
    408 (a slow client cannot hold a task for long);
  * request bodies are handed to the app in pieces as they arrive: the app bounds them
    (scheduler/http_api.py Rule 4) and the connection is closed after a response that left
    part of a body unread, rather than reading the rest.
"""

from __future__ import annotations

import email.utils
import http
import json
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Final
from urllib.parse import unquote

import trio

__all__ = ["HttpServerOptions", "serve_http"]

log = logging.getLogger("raftcron.http")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
App = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
               Awaitable[None]]

READ_BYTES: Final = 64 * 1024
_ASGI: Final = {"version": "3.0", "spec_version": "2.3"}
_REASONS: Final = {status.value: status.phrase.encode() for status in http.HTTPStatus}
_TOKEN_CHARS: Final = frozenset(b"!#$%&'*+-.^_`|~0123456789"
                                b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True, slots=True)
class HttpServerOptions:
    head_bytes_max: int = 64 * 1024
    keep_alive_s: float = 30.0
    read_timeout_s: float = 10.0


class _Refused(Exception):
    """A request we answer ourselves, without the app, and then close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Closed(Exception):
    """The peer closed the connection (or went silent between requests): end quietly."""


async def serve_http(app: App, host: str, port: int, *, options: HttpServerOptions = HttpServerOptions(),
                     task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Serve `app` on host:port until cancelled; `task_status.started(bound_port)`."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    bound = listeners[0].socket.getsockname()[1]
    task_status.started(bound)
    await trio.serve_listeners(partial(_serve_connection, app, options), listeners)


async def _serve_connection(app: App, options: HttpServerOptions, stream: trio.SocketStream) -> None:
    connection = _Connection(app, options, stream)
    try:
        await connection.run()
    except (_Closed, trio.BrokenResourceError, trio.ClosedResourceError):
        pass
    except Exception:  # a bug of ours: lose this connection, never the server
        log.exception("HTTP connection from %s failed", connection.client)
    finally:
        await trio.aclose_forcefully(stream)


class _Connection:
    """One client connection: requests one after the other (pipelined ones queue in `buffer`)."""

    def __init__(self, app: App, options: HttpServerOptions, stream: trio.SocketStream) -> None:
        self.app = app
        self.options = options
        self.stream = stream
        self.buffer = bytearray()
        self.client = _address(stream, peer=True)
        self.server = _address(stream, peer=False)

    async def run(self) -> None:
        while True:
            try:
                head = await self._read_head()
                request = _parse_head(head)
            except _Refused as refused:
                await self._refuse(refused)
                return
            keep = await _Exchange(self, request).run()
            if not keep:
                return

    async def _receive_some(self, deadline: float, *, idle: bool = False) -> bytes:
        """The next bytes by `deadline` (trio time): past it, an idle connection just ends and
        a request under way gets 408."""
        with trio.move_on_at(deadline):
            data: bytes = await self.stream.receive_some(READ_BYTES)
            if not data:
                raise _Closed()
            return data
        if idle:
            raise _Closed()
        raise _Refused(408, f"the request did not arrive within {self.options.read_timeout_s:g} s")

    async def _read_soon(self) -> bytes:
        """The next bytes of a body under way, within read_timeout_s."""
        return await self._receive_some(trio.current_time() + self.options.read_timeout_s)

    async def _read_head(self) -> bytes:
        buffer, bound = self.buffer, self.options.head_bytes_max
        start = 0
        # A head must arrive whole within read_timeout_s of its first byte: a client that
        # trickles a byte at a time cannot hold the connection for long.
        deadline = trio.current_time() + self.options.read_timeout_s
        while True:
            end = buffer.find(b"\r\n\r\n", start)
            if end >= 0:
                if end > bound:
                    break
                head = bytes(buffer[:end])
                del buffer[:end + 4]
                return head
            if len(buffer) > bound:
                break
            start = max(0, len(buffer) - 3)
            if not buffer:
                buffer += await self._receive_some(trio.current_time() + self.options.keep_alive_s,
                                                   idle=True)
                # Tolerate blank lines between requests (RFC 9112 §2.2).
                while buffer[:2] == b"\r\n":
                    del buffer[:2]
                start = 0
                deadline = trio.current_time() + self.options.read_timeout_s
            else:
                buffer += await self._receive_some(deadline)
        raise _Refused(431, f"the request line and headers exceed {bound} bytes")

    async def _refuse(self, refused: _Refused) -> None:
        body = json.dumps({"error": str(refused)}).encode()
        await self.stream.send_all(_response_head(refused.status, [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"connection", b"close")]) + body)


@dataclass(slots=True)
class _Request:
    """A parsed request head, and what it says about its body and its connection."""

    method: str
    target: bytes
    version: str  # "1.0" | "1.1"
    headers: list[tuple[bytes, bytes]]  # names lower-cased, as ASGI wants
    length: int  # Content-Length (0 without one)
    chunked: bool
    expect_continue: bool
    keep_alive: bool


def _parse_head(head: bytes) -> _Request:
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _TOKEN_CHARS or not parts[1]:
        raise _Refused(400, "malformed request line")
    method, target, version = parts
    if version == b"HTTP/1.1":
        http_version = "1.1"
    elif version == b"HTTP/1.0":
        http_version = "1.0"
    elif version.startswith(b"HTTP/"):
        raise _Refused(505, f"HTTP version {version.decode('latin-1')!r} is not supported")
    else:
        raise _Refused(400, "malformed request line")
    headers: list[tuple[bytes, bytes]] = []
    length, chunked, expect_continue = 0, False, False
    connection_tokens: list[bytes] = []
    seen_length: bytes | None = None
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or not set(name) <= _TOKEN_CHARS:
            raise _Refused(400, "malformed header line")
        name = name.lower()
        value = value.strip(b" \t")
        headers.append((name, value))
        if name == b"content-length":
            if not value.isdigit() or (seen_length is not None and value != seen_length):
                raise _Refused(400, "malformed Content-Length")
            seen_length, length = value, int(value)
        elif name == b"transfer-encoding":
            if value.lower() != b"chunked" or chunked:
                raise _Refused(501, f"Transfer-Encoding {value.decode('latin-1')!r} is not supported")
            chunked = True
        elif name == b"expect":
            if value.lower() != b"100-continue":
                raise _Refused(417, f"Expect {value.decode('latin-1')!r} is not supported")
            expect_continue = http_version == "1.1"
        elif name == b"connection":
            connection_tokens += [token.strip().lower() for token in value.split(b",")]
    if chunked and seen_length is not None:
        raise _Refused(400, "both Content-Length and Transfer-Encoding")
    if http_version == "1.1":
        keep_alive = b"close" not in connection_tokens
    else:
        keep_alive = b"keep-alive" in connection_tokens
    return _Request(method.decode("ascii"), target, http_version, headers, length, chunked,
                    expect_continue, keep_alive)


class _Exchange:
    """One request and its response: the ASGI `receive` and `send` of one app call."""

    def __init__(self, connection: _Connection, request: _Request) -> None:
        self.connection = connection
        self.request = request
        self.remaining = request.length  # body bytes still to hand over (Content-Length)
        self.body_done = not request.chunked and request.length == 0
        self.last_delivered = False  # the app has seen `more_body: False`
        self.continue_sent = not request.expect_continue
        self.started: tuple[int, list[tuple[bytes, bytes]]] | None = None
        self.chunked_response = False
        self.keep: bool | None = None  # decided when the response head is sent
        self.complete = False
        self.finished = trio.Event()

    def scope(self) -> Scope:
        request = self.request
        target = request.target
        if target.startswith((b"http://", b"https://")):  # absolute-form (RFC 9112 §3.2.2)
            slash = target.find(b"/", target.find(b"//") + 2)
            target = target[slash:] if slash >= 0 else b"/"
        raw_path, _, query = target.partition(b"?")
        if not raw_path.startswith(b"/"):
            raise _Refused(400, "the request target must be a path")
        return {
            "type": "http", "asgi": _ASGI, "http_version": request.version,
            "method": request.method, "scheme": "http",
            "path": unquote(raw_path.decode("latin-1")), "raw_path": raw_path,
            "query_string": query, "root_path": "", "headers": request.headers,
            "client": self.connection.client, "server": self.connection.server,
        }

    async def run(self) -> bool:
        """Serve the request; True when the connection may carry another."""
        connection = self.connection
        try:
            scope = self.scope()
        except _Refused as refused:
            await connection._refuse(refused)
            return False
        try:
            await connection.app(scope, self.receive, self.send)
        except _Refused as refused:  # the body was malformed or too slow
            if self.started is None:
                await connection._refuse(refused)
            return False
        except (_Closed, trio.BrokenResourceError, trio.ClosedResourceError):
            raise
        except Exception:
            log.exception("the HTTP app failed on %s %s", self.request.method, scope["path"])
            if self.started is None:
                await connection._refuse(_Refused(500, "internal server error"))
            return False
        finally:
            self.finished.set()
        if not self.complete:
            if self.started is None:
                await connection._refuse(_Refused(500, "the app sent no response"))
            return False
        return bool(self.keep)

    # ---- receive -------------------------------------------------------------------------------

    async def receive(self) -> Message:
        if self.body_done:
            if self.last_delivered:
                await self.finished.wait()  # only the end of this exchange "disconnects" it
                return {"type": "http.disconnect"}
            self.last_delivered = True
            return {"type": "http.request", "body": b"", "more_body": False}
        if not self.continue_sent:
            self.continue_sent = True
            if self.started is None:
                await self.connection.stream.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.request.chunked:
            body = await self._next_chunk()
        else:
            body = await self._take_body()
            self.body_done = self.remaining == 0
        self.last_delivered = self.body_done
        return {"type": "http.request", "body": body, "more_body": not self.body_done}

    async def _take_body(self) -> bytes:
        """Up to `remaining` body bytes: what is buffered, else what arrives next."""
        connection = self.connection
        if not connection.buffer:
            connection.buffer += await connection._read_soon()
        take = min(self.remaining, len(connection.buffer))
        body = bytes(connection.buffer[:take])
        del connection.buffer[:take]
        self.remaining -= take
        return body

    async def _line(self) -> bytes:
        connection = self.connection
        while (end := connection.buffer.find(b"\r\n")) < 0:
            if len(connection.buffer) > 4096:
                raise _Refused(400, "malformed chunked body")
            connection.buffer += await connection._read_soon()
        line = bytes(connection.buffer[:end])
        del connection.buffer[:end + 2]
        return line

    async def _next_chunk(self) -> bytes:
        """The next piece of a chunked body (RFC 9112 §7.1); trailers are read and dropped."""
        if self.remaining == 0:
            size_text = (await self._line()).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _Refused(400, "malformed chunk size") from None
            if size < 0:
                raise _Refused(400, "malformed chunk size")
            if size == 0:
                while await self._line():
                    pass
                self.body_done = True
                return b""
            self.remaining = size
        body = await self._take_body()
        if self.remaining == 0 and await self._line() != b"":
            raise _Refused(400, "malformed chunked body")
        return body

    # ---- send ----------------------------------------------------------------------------------

    async def send(self, message: Message) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            if self.started is not None:
                raise RuntimeError("http.response.start sent twice")
            self.started = (int(message["status"]), list(message.get("headers", [])))
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if self.started is None or self.complete:
            raise RuntimeError("http.response.body outside a response")
        body: bytes = message.get("body", b"")
        more = bool(message.get("more_body", False))
        out = bytearray()
        if self.keep is None:  # the head goes out with the first piece of the body
            status, headers = self.started
            names = {name.lower() for name, _ in headers}
            if b"content-length" not in names:
                if more:
                    self.chunked_response = True
                    headers.append((b"transfer-encoding", b"chunked"))
                else:
                    headers.append((b"content-length", str(len(body)).encode()))
            # The connection survives only if the client wants it and the next request
            # starts right after this one's body (no unread rest to skip).
            self.keep = self.request.keep_alive and self.body_done
            if not self.keep:
                headers.append((b"connection", b"close"))
            if b"date" not in names:
                headers.append((b"date", _http_date()))
            out += _response_head(status, headers)
        if self.request.method != "HEAD":
            if self.chunked_response:
                if body:
                    out += b"%x\r\n" % len(body) + body + b"\r\n"
                if not more:
                    out += b"0\r\n\r\n"
            else:
                out += body
        if out:
            await self.connection.stream.send_all(out)
        if not more:
            self.complete = True


def _response_head(status: int, headers: list[tuple[bytes, bytes]]) -> bytes:
    reason = _REASONS.get(status, b"")
    lines = [b"HTTP/1.1 %d %s" % (status, reason)]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


_date_cache: list[Any] = [0, b""]


def _http_date() -> bytes:
    """The Date header (RFC 9110 §6.6.1), formatted once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0], _date_cache[1] = now, email.utils.formatdate(now, usegmt=True).encode()
    date: bytes = _date_cache[1]
    return date


def _address(stream: trio.SocketStream, *, peer: bool) -> tuple[str, int] | None:
    try:
        address = stream.socket.getpeername() if peer else stream.socket.getsockname()
    except OSError:
        return None
    return (str(address[0]), int(address[1]))
