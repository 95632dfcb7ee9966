"""Executors: what actually runs when an attempt is leased to this node (shell and HTTP).

Rules:
  1. No shell unless the job says `"shell": true`: a command string is split with shlex and
     executed directly, so job text is never interpreted by /bin/sh by accident.
  2. Everything is bounded: run time (`timeout`), captured output (the last
     `output_bytes_max` bytes are kept), response bodies, header counts.
  3. A run names its attempt: `RAFTCRON_EXECUTION_ID=job/tick/slot/attempt` (and the parts
     separately) in the environment of a shell command, `Idempotency-Key` and
     `X-Raftcron-Execution` on an HTTP request, so the side effect can be made idempotent.
  4. A cancelled run (timeout, or the lease was lost) kills the whole process group: first
     SIGTERM, then SIGKILL after `kill_grace_s`. Nothing keeps running after we give up on it.
  5. A job never sees the server's secrets: RAFTCRON_SECRET and RAFTCRON_TOKEN are removed
     from the environment it inherits.
  6. Configuration errors are results (`ok=False`, `error=...`), never exceptions: the job
     definition is replicated data and a typo must not crash an agent.

Configuration keys follow Dkron's shell and http executors (strings such as `"true"`,
`"30s"` and `"K=V,K2=V2"` are accepted as Dkron writes them, as are native JSON types).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import trio

from scheduler.durations import parse_duration_ms

__all__ = ["AttemptInfo", "ExecutionResult", "run_executor", "run_http", "run_shell"]

OUTPUT_BYTES_MAX_DEFAULT: Final = 64 * 1024
OUTPUT_BYTES_LIMIT: Final = 16 * 1024 * 1024
TIMEOUT_S_DEFAULT_HTTP: Final = 30.0
TIMEOUT_S_MAX: Final = 7 * 24 * 3600.0
KILL_GRACE_S: Final = 2.0
HEADERS_MAX: Final = 64
SECRET_ENV_NAMES: Final = frozenset({"RAFTCRON_SECRET", "RAFTCRON_TOKEN"})


@dataclass(frozen=True, slots=True)
class AttemptInfo:
    """Who is running what: the attempt's name and this node."""

    job: str
    tick_ms: int
    slot: int
    attempt: int
    node: str

    @property
    def execution_id(self) -> str:
        return f"{self.job}/{self.tick_ms}/{self.slot}/{self.attempt}"


@dataclass(slots=True)
class ExecutionResult:
    ok: bool
    exit_code: int | None = None
    status_code: int | None = None
    output: str = ""
    output_truncated: bool = False
    error: str = ""
    started_ms: int = 0
    duration_ms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def summary(self, chars_max: int = 200) -> str:
        """One line for the replicated `Finish.detail`: outcome first, then the output's tail."""
        if self.error:
            head = f"error: {self.error}"
        elif self.exit_code is not None:
            head = f"exit {self.exit_code}"
        else:
            head = f"HTTP {self.status_code}"
        tail = " ".join(self.output.split())
        text = f"{head}; {tail}" if tail else head
        return text if len(text) <= chars_max else text[: chars_max - 3] + "..."


class ConfigError(ValueError):
    """An executor_config value that cannot be used; becomes a failed result (Rule 6)."""


# ---- configuration parsing (Dkron's string forms and plain JSON alike) ------------------------

def _flag(config: Mapping[str, Any], key: str) -> bool:
    value = config.get(key, False)
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", ""):
        return value.lower() == "true"
    raise ConfigError(f"{key}: expected true or false, got {value!r}")


def _seconds(config: Mapping[str, Any], key: str, default: float | None) -> float | None:
    value = config.get(key)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected seconds or a duration such as \"30s\"")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str) and value.replace(".", "", 1).isdigit():
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_duration_ms(value) / 1000.0
        except ValueError as exc:
            raise ConfigError(f"{key}: {exc}") from exc
    else:
        raise ConfigError(f"{key}: expected seconds or a duration such as \"30s\"")
    if not 0 < seconds <= TIMEOUT_S_MAX:
        raise ConfigError(f"{key}: must be within (0, {TIMEOUT_S_MAX:.0f}] seconds")
    return seconds


def _env(config: Mapping[str, Any]) -> dict[str, str]:
    value = config.get("env", {})
    if isinstance(value, str):
        pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
        if any(len(pair) != 2 or not pair[0] for pair in pairs):
            raise ConfigError("env: expected \"K=V,K2=V2\" or an object")
        return {key.strip(): val for key, val in pairs}
    if isinstance(value, Mapping) and all(isinstance(v, str) for v in value.values()):
        return {str(key): val for key, val in value.items()}
    raise ConfigError("env: expected \"K=V,K2=V2\" or an object of strings")


def _output_limit(config: Mapping[str, Any]) -> int:
    value = config.get("output_bytes_max", OUTPUT_BYTES_MAX_DEFAULT)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= OUTPUT_BYTES_LIMIT:
        raise ConfigError(f"output_bytes_max: expected an integer in 0..{OUTPUT_BYTES_LIMIT}")
    return value


class TailBuffer:
    """Keeps the last `limit` bytes written (the end of a log is where the error is)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()
        self.truncated = False

    def write(self, chunk: bytes | bytearray) -> None:
        self.data += chunk
        if len(self.data) > self.limit:
            del self.data[: len(self.data) - self.limit]
            self.truncated = True

    def text(self) -> str:
        return self.data.decode(errors="replace")


def _now_ms() -> int:
    return time.time_ns() // 1_000_000  # for the record only; never fed to the state machine


# ---- shell ------------------------------------------------------------------------------------

def shell_argv(config: Mapping[str, Any]) -> list[str]:
    command = config.get("command")
    # A job's JSON list arrives frozen as a tuple (scheduler/job.py keeps specs immutable).
    if isinstance(command, (list, tuple)) and command and all(isinstance(part, str) for part in command):
        if _flag(config, "shell"):
            raise ConfigError("command: a list is an argv; `shell: true` needs a string")
        return list(command)
    if not isinstance(command, str) or not command.strip():
        raise ConfigError("command: expected a non-empty string or a list of strings")
    if _flag(config, "shell"):
        return ["/bin/sh", "-c", command]
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ConfigError(f"command: {exc}") from exc
    return argv


def job_base_env() -> dict[str, str]:
    """The server's environment minus its secrets: a job must not read the cluster secret or
    the API token (anyone who may define a job could otherwise forge frames or calls)."""
    return {key: value for key, value in os.environ.items() if key not in SECRET_ENV_NAMES}


def attempt_env(info: AttemptInfo) -> dict[str, str]:
    return {
        "RAFTCRON_EXECUTION_ID": info.execution_id, "RAFTCRON_JOB": info.job,
        "RAFTCRON_TICK": str(info.tick_ms), "RAFTCRON_SLOT": str(info.slot),
        "RAFTCRON_ATTEMPT": str(info.attempt), "RAFTCRON_NODE": info.node,
    }


async def run_shell(config: Mapping[str, Any], info: AttemptInfo) -> ExecutionResult:
    started_ms = _now_ms()
    try:
        argv = shell_argv(config)
        timeout_s = _seconds(config, "timeout", None)
        env = {**job_base_env(), **_env(config), **attempt_env(info)}
        output = TailBuffer(_output_limit(config))
        cwd = config.get("cwd") or None
        if cwd is not None and not isinstance(cwd, str):
            raise ConfigError("cwd: expected a string")
    except ConfigError as exc:
        return ExecutionResult(ok=False, error=f"bad executor_config: {exc}", started_ms=started_ms)
    try:
        process = await trio.lowlevel.open_process(argv, stdout=-1, stderr=-2, stdin=-3, env=env,
                                                   cwd=cwd, start_new_session=True)
    except OSError as exc:
        return ExecutionResult(ok=False, error=f"cannot start {argv[0]!r}: {exc.strerror}",
                               started_ms=started_ms, duration_ms=_now_ms() - started_ms)
    timed_out = False
    try:
        with trio.move_on_after(timeout_s if timeout_s is not None else float("inf")) as scope:
            assert process.stdout is not None
            async for chunk in process.stdout:
                output.write(chunk)
            await process.wait()
        timed_out = scope.cancelled_caught
    finally:
        if process.returncode is None:
            await _kill_group(process)
    code = process.returncode
    error = f"timed out after {timeout_s:g}s" if timed_out else ""
    return ExecutionResult(ok=code == 0 and not timed_out, exit_code=code, output=output.text(),
                           output_truncated=output.truncated, error=error, started_ms=started_ms,
                           duration_ms=_now_ms() - started_ms)


async def _kill_group(process: Any) -> None:
    """Rule 4: TERM the group, give it a moment, then KILL; shielded so a cancel cannot skip it."""
    with trio.CancelScope(shield=True):
        for sig, grace_s in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass
            with trio.move_on_after(grace_s):
                await process.wait()
                return


# ---- http -------------------------------------------------------------------------------------

def _headers(config: Mapping[str, Any]) -> dict[str, str]:
    value = config.get("headers", {})
    if isinstance(value, str):  # Dkron: a JSON list of "Name: value" strings
        import json

        try:
            value = json.loads(value) if value.strip() else []
        except ValueError as exc:
            raise ConfigError(f"headers: not JSON: {exc}") from exc
    if isinstance(value, list):
        pairs = [str(item).split(":", 1) for item in value]
        if any(len(pair) != 2 for pair in pairs):
            raise ConfigError("headers: expected [\"Name: value\", ...]")
        value = {name.strip(): val.strip() for name, val in pairs}
    if not isinstance(value, Mapping) or len(value) > HEADERS_MAX:
        raise ConfigError(f"headers: expected an object of at most {HEADERS_MAX} headers")
    return {str(name): str(val) for name, val in value.items()}


def _expected_codes(config: Mapping[str, Any]) -> frozenset[int] | None:
    value = config.get("expectCode", config.get("expect_codes"))
    if value is None or value == "":
        return None  # any 2xx
    if isinstance(value, bool):
        raise ConfigError("expectCode: expected a status code or a list of them")
    if isinstance(value, int):
        return frozenset({value})
    items = value.split(",") if isinstance(value, str) else value
    try:
        return frozenset(int(str(item).strip()) for item in items)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"expectCode: {exc}") from exc


async def run_http(config: Mapping[str, Any], info: AttemptInfo) -> ExecutionResult:
    started_ms = _now_ms()
    try:
        url = config.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError("url: expected an http:// or https:// URL")
        method = str(config.get("method", "GET")).upper()
        body = config.get("body", "")
        if not isinstance(body, str):
            raise ConfigError("body: expected a string")
        timeout_s = _seconds(config, "timeout", TIMEOUT_S_DEFAULT_HTTP)
        expected = _expected_codes(config)
        expect_body = re.compile(config["expectBody"]) if config.get("expectBody") else None
        limit = _output_limit(config)
        headers = {**_headers(config), "Idempotency-Key": info.execution_id,
                   "X-Raftcron-Execution": info.execution_id}
    except (ConfigError, re.error) as exc:
        return ExecutionResult(ok=False, error=f"bad executor_config: {exc}", started_ms=started_ms)
    return await _http_request(method, url, headers, body, timeout_s, expected, expect_body, limit,
                               started_ms)


async def _http_request(method: str, url: str, headers: dict[str, str], body: str,
                        timeout_s: float | None, expected: frozenset[int] | None,
                        expect_body: re.Pattern[str] | None, limit: int,
                        started_ms: int) -> ExecutionResult:
    output = TailBuffer(limit)
    try:
        async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client:
            with trio.fail_after(timeout_s or TIMEOUT_S_MAX):
                async with client.stream(method, url, headers=headers,
                                         content=body.encode() if body else None) as response:
                    async for chunk in response.aiter_bytes():
                        if len(output.data) < limit:
                            output.write(chunk[: limit - len(output.data)])
                        else:
                            output.truncated = True
                            break
    except (httpx.HTTPError, trio.TooSlowError) as exc:
        return ExecutionResult(ok=False, error=f"{type(exc).__name__}: {exc}"[:500],
                               started_ms=started_ms, duration_ms=_now_ms() - started_ms)
    status = response.status_code
    text = output.text()
    ok = status in expected if expected is not None else 200 <= status < 300
    error = "" if ok else f"unexpected status {status}"
    if ok and expect_body is not None and not expect_body.search(text):
        ok, error = False, "response body does not match expectBody"
    return ExecutionResult(ok=ok, status_code=status, output=text, output_truncated=output.truncated,
                           error=error, started_ms=started_ms, duration_ms=_now_ms() - started_ms)


async def run_executor(executor: str, config: Mapping[str, Any], info: AttemptInfo) -> ExecutionResult:
    """Run one attempt with the named executor."""
    if executor == "shell":
        return await run_shell(config, info)
    if executor == "http":
        return await run_http(config, info)
    return ExecutionResult(ok=False, error=f"executor {executor!r} is not available on this node")
