"""Shell and HTTP executors (scheduler/server/executors.py Rules 1-5)."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from scheduler.server.executors import AttemptInfo, ExecutionResult, run_executor, run_http, run_shell

INFO = AttemptInfo(job="backup", tick_ms=1_700_000_000_000, slot=0, attempt=2, node="n1")


def run(function: Callable[..., Awaitable[ExecutionResult]], *args: Any) -> ExecutionResult:
    result: ExecutionResult = trio.run(function, *args)
    return result


def test_a_command_runs_without_a_shell_and_sees_its_attempt_in_the_environment() -> None:
    script = "import os; print(os.environ['RAFTCRON_EXECUTION_ID'], os.environ['GREETING'])"
    result = run(run_shell, {"command": [sys.executable, "-c", script], "env": "GREETING=hi"}, INFO)
    assert result.ok and result.exit_code == 0
    assert result.output.strip() == f"{INFO.execution_id} hi"
    literal = run(run_shell, {"command": "echo $HOME; exit 3"}, INFO)  # no shell: all literal
    assert literal.ok and literal.output.strip() == "$HOME; exit 3"


def test_a_job_does_not_inherit_the_servers_secrets(monkeypatch: Any) -> None:
    monkeypatch.setenv("RAFTCRON_SECRET", "s" * 32)
    monkeypatch.setenv("RAFTCRON_TOKEN", "t")
    monkeypatch.setenv("HARMLESS", "h")
    script = "import os; print(sorted(k for k in os.environ if k in ('RAFTCRON_SECRET', 'RAFTCRON_TOKEN', 'HARMLESS')))"
    result = run(run_shell, {"command": [sys.executable, "-c", script]}, INFO)
    assert result.output.strip() == "['HARMLESS']"


def test_shell_true_uses_the_shell_and_reports_the_exit_code() -> None:
    result = run(run_shell, {"command": "echo out; exit 3", "shell": "true"}, INFO)
    assert not result.ok
    assert result.exit_code == 3
    assert result.summary().startswith("exit 3; out")


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "late"
    started = time.monotonic()
    result = run(run_shell, {"command": f"sleep 30 & sleep 30; touch {marker}", "shell": True,
                             "timeout": "300ms"}, INFO)
    assert time.monotonic() - started < 10
    assert not result.ok and "timed out" in result.error
    assert not marker.exists()


def test_output_is_bounded_to_its_tail() -> None:
    script = "print('x' * 100000); print('THE END')"
    result = run(run_shell, {"command": [sys.executable, "-c", script], "output_bytes_max": 100}, INFO)
    assert result.ok and result.output_truncated
    assert len(result.output) == 100 and result.output.endswith("THE END\n")


def test_configuration_errors_are_failed_results_not_exceptions() -> None:
    for config in ({}, {"command": ""}, {"command": "x", "timeout": "soon"}, {"command": "x", "env": 3},
                   {"command": "/nonexistent/program"}):
        result = run(run_shell, config, INFO)
        assert not result.ok and result.error
    assert not run(run_http, {"url": "ftp://x"}, INFO).ok
    assert not run(run_executor, "docker", {}, INFO).ok


def test_http_checks_the_status_and_names_the_attempt() -> None:
    async def main() -> None:
        seen: list[bytes] = []

        async def handler(stream: trio.SocketStream) -> None:
            request = await stream.receive_some(65536)
            seen.append(request)
            status = b"201 Created" if b"POST" in request.split(b"\r\n")[0] else b"500 Oops"
            await stream.send_all(b"HTTP/1.1 " + status + b"\r\nContent-Length: 2\r\n"
                                  b"Connection: close\r\n\r\nok")
            await stream.aclose()

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, handler, 0)
            port = listeners[0].socket.getsockname()[1]
            url = f"http://127.0.0.1:{port}/hook"
            good = await run_http({"url": url, "method": "POST", "body": "{}", "expectCode": "201"}, INFO)
            assert good.ok and good.status_code == 201 and good.output == "ok"
            assert f"idempotency-key: {INFO.execution_id}".encode() in seen[0].lower()
            bad = await run_http({"url": url}, INFO)
            assert not bad.ok and bad.status_code == 500
            nursery.cancel_scope.cancel()

    trio.run(main)
