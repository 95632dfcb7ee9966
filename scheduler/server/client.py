"""`ApiClient`: the CLI's HTTP client. Finds the leader, follows redirects itself, retries.

Why not httpx's own redirect following: it drops the Authorization header when the redirect
goes to another port (another origin), and every leader redirect does. We follow 307 by hand,
to the addresses the cluster itself names, keeping the token and re-sending the body.

Retries: connection failures move on to the next endpoint, 503 waits for `Retry-After` (or
a short pause) and tries again, all within one overall deadline. A 504 is returned to the
caller, never retried blindly: the write may have committed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Final

import httpx

__all__ = ["ApiClient", "ClientError", "endpoints_from"]

REDIRECTS_MAX: Final = 5
ATTEMPTS_MAX: Final = 50


class ClientError(Exception):
    """A request that failed for good; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


def endpoints_from(option: str | None, cluster_dir: Path | None) -> list[str]:
    """--endpoints, else RAFTCRON_ENDPOINTS, else `cluster up`'s cluster.json, else :8080."""
    text = option or os.environ.get("RAFTCRON_ENDPOINTS")
    if text:
        return [url.strip().rstrip("/") for url in text.split(",") if url.strip()]
    if cluster_dir is not None and (cluster_dir / "cluster.json").exists():
        try:
            plan = json.loads((cluster_dir / "cluster.json").read_text())
            return [node["http_url"] for node in plan["nodes"]]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ClientError(f"cannot read {cluster_dir / 'cluster.json'}: {exc}") from exc
    return ["http://127.0.0.1:8080"]


def load_client_token(token_file: str | None) -> str | None:
    if token_file:
        try:
            return Path(token_file).read_text().strip() or None
        except OSError as exc:
            raise ClientError(f"cannot read --token-file {token_file}: {exc.strerror}") from exc
    return os.environ.get("RAFTCRON_TOKEN", "").strip() or None


class ApiClient:
    def __init__(self, endpoints: list[str], *, token_file: str | None = None, token: str | None = None,
                 timeout_s: float = 10.0, follow_leader: bool = True) -> None:
        assert endpoints, "need at least one endpoint"
        self.endpoints = endpoints
        self.timeout_s = timeout_s
        self.follow_leader = follow_leader
        self._token = token if token is not None else load_client_token(token_file)
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        self._http = httpx.Client(timeout=timeout_s, headers=headers, follow_redirects=False)
        self._preferred = 0

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                body: Any = None, headers: dict[str, str] | None = None,
                ok: tuple[int, ...] = (200, 201, 202, 204)) -> Any:
        """JSON of the first definitive answer; ClientError otherwise."""
        response = self.send(method, path, params=params, body=body, headers=headers)
        payload = _json_or_text(response)
        if response.status_code not in ok:
            message = payload.get("error") if isinstance(payload, dict) else payload
            raise ClientError(f"{method} {path}: HTTP {response.status_code}: {message}",
                              status=response.status_code, body=payload)
        return payload

    def send(self, method: str, path: str, *, params: dict[str, Any] | None = None,
             body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
        """The raw response after redirects and retries (any status but 307/503)."""
        deadline = time.monotonic() + self.timeout_s
        content = None if body is None else json.dumps(body).encode()
        request_headers = dict(headers or {})
        if content is not None:
            request_headers["Content-Type"] = "application/json"
        url: str | None = None
        last_error = "no endpoint answered"
        for _ in range(ATTEMPTS_MAX):
            if time.monotonic() > deadline:
                break
            target = url or self.endpoints[self._preferred % len(self.endpoints)] + path
            try:
                response = self._http.request(method, target, params=params if url is None else None,
                                              content=content, headers=request_headers)
            except httpx.HTTPError as exc:
                last_error = f"{target}: {exc}"
                self._preferred += 1
                url = None
                time.sleep(0.05)
                continue
            if response.status_code == 307 and self.follow_leader and "location" in response.headers:
                url = response.headers["location"]
                continue
            if response.status_code == 503:
                last_error = f"{target}: HTTP 503: {_json_or_text(response)}"
                url = None
                time.sleep(min(float(response.headers.get("retry-after", "0.2") or 0.2), 0.5))
                continue
            return response
        raise ClientError(f"{method} {path}: gave up: {last_error}")


def _json_or_text(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
