"""Everything a server process is told at start-up, validated before anything listens.

Security rules live here because they are decided from the options alone:
  * The cluster secret comes from a file (`--secret-file`) or the environment
    (`RAFTCRON_SECRET`), never from the command line, where `ps` would show it to every user.
  * Without a secret the Raft port may bind only to loopback (with a warning): anyone who
    can reach it could otherwise append to the log.
  * Without an API token the HTTP API may bind only to loopback, unless the operator says
    `--insecure-http` explicitly.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

__all__ = ["OptionsError", "ServerOptions", "is_loopback", "load_secret", "parse_address",
           "parse_peers", "parse_tags_option"]

SECRET_ENV: Final = "RAFTCRON_SECRET"
TOKEN_ENV: Final = "RAFTCRON_TOKEN"
SECRET_BYTES_MIN: Final = 16
NODE_ID_CHARS_MAX: Final = 64


class OptionsError(ValueError):
    """A start-up option is wrong; the message says which and how to fix it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerOptions:
    node_id: str
    data_dir: Path
    raft_address: tuple[str, int]
    http_address: tuple[str, int]
    peers: dict[str, tuple[str, int]]  # every voter's Raft address, this node included
    peers_http: dict[str, tuple[str, int]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    cluster_id: str = "raftcron"
    secret: bytes | None = None
    token: str | None = None
    insecure_http: bool = False
    voter: bool = True  # False: an agent that runs jobs but never votes
    election_timeout_ms: float = 300.0  # the minimum; the maximum is twice this
    heartbeat_interval_ms: float = 50.0
    request_timeout_s: float = 5.0
    snapshot_entries: int = 10_000
    wal: bool = True  # WalStorage: one flush per save (docs/storage.md, "The write-ahead log")
    tokens: int = 16  # capacity for job weights on this node (Dianemo tokens)
    reserved_tokens: int = 0  # kept for priority-1 jobs
    lease_ms: int = 12_000  # an attempt's lease; renewed every lease_ms / 6
    clock_offset_ms_max: int = 2_000  # the assumed bound on clock offset between servers (δ)
    trace_path: Path | None = None  # Raft events as JSON lines, the simulator's trace schema
    fault_drop_file: Path | None = None  # testing only: peer ids whose Raft traffic is dropped

    def __post_init__(self) -> None:
        if not self.node_id or len(self.node_id) > NODE_ID_CHARS_MAX or not self.node_id.isprintable():
            raise OptionsError(f"--id must be 1-{NODE_ID_CHARS_MAX} printable characters")
        if self.voter and self.node_id not in self.peers:
            raise OptionsError(f"--peers must include this server ({self.node_id}=HOST:PORT)")
        if not self.voter and self.raft_address[0] in ("0.0.0.0", "::", ""):
            raise OptionsError("an agent's --raft must be an address the servers can reach "
                               "(it is announced to them), not a wildcard")
        if self.secret is None and not is_loopback(self.raft_address[0]):
            raise OptionsError(
                f"refusing to bind the Raft port to {self.raft_address[0]} without a cluster secret: "
                f"anyone who reaches it could write to the log. Put a secret of at least "
                f"{SECRET_BYTES_MIN} bytes in a file and pass --secret-file FILE, or set {SECRET_ENV}")
        if self.token is None and not self.insecure_http and not is_loopback(self.http_address[0]):
            raise OptionsError(
                f"refusing to serve the HTTP API on {self.http_address[0]} without a token: set "
                f"{TOKEN_ENV} or --token-file FILE (or pass --insecure-http if you really mean it)")
        if not 0 < self.heartbeat_interval_ms < self.election_timeout_ms:
            raise OptionsError("--heartbeat-ms must be positive and below --election-timeout-ms")
        if not 0 <= self.reserved_tokens <= self.tokens:
            raise OptionsError("--reserved-tokens must be between 0 and --tokens")
        from scheduler.leases import LeasePolicy

        try:
            LeasePolicy(lease_ms=self.lease_ms, renew_every_ms=self.lease_ms // 6,
                        max_offset_ms=self.clock_offset_ms_max).validate()
        except ValueError as exc:
            raise OptionsError(f"--lease-ms / --clock-offset-ms: {exc}") from exc

    @property
    def raft_peer_ids(self) -> frozenset[str]:
        return frozenset(self.peers)


def is_loopback(host: str) -> bool:
    """True only for names that cannot be reached from another machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def parse_address(text: str, what: str) -> tuple[str, int]:
    """`HOST:PORT` (IPv6 as `[::1]:PORT`); port 0 asks the OS for a free one."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
        raise OptionsError(f"{what}: expected HOST:PORT, got {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port_text)


def parse_peers(text: str, what: str = "--peers") -> dict[str, tuple[str, int]]:
    """`n1=HOST:PORT,n2=HOST:PORT,...`"""
    peers: dict[str, tuple[str, int]] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        node, sep, address = item.partition("=")
        if not sep or not node:
            raise OptionsError(f"{what}: expected ID=HOST:PORT, got {item!r}")
        if node in peers:
            raise OptionsError(f"{what}: {node} is listed twice")
        peers[node] = parse_address(address, f"{what} {node}")
    return peers


def parse_tags_option(text: str) -> dict[str, str]:
    """`k=v,k2=v2` for --tags."""
    tags: dict[str, str] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise OptionsError(f"--tags: expected KEY=VALUE, got {item!r}")
        tags[key] = value
    return tags


def load_secret(secret_file: str | None, *, env: dict[str, str] | None = None) -> bytes | None:
    """The cluster secret from a file or RAFTCRON_SECRET (the file wins); None when neither."""
    environment = os.environ if env is None else env
    if secret_file:
        try:
            secret = Path(secret_file).read_bytes().strip()
        except OSError as exc:
            raise OptionsError(f"--secret-file: cannot read {secret_file}: {exc.strerror}") from exc
        source = secret_file
    elif environment.get(SECRET_ENV):
        secret = environment[SECRET_ENV].encode().strip()
        source = SECRET_ENV
    else:
        return None
    if len(secret) < SECRET_BYTES_MIN:
        raise OptionsError(f"the cluster secret in {source} is shorter than {SECRET_BYTES_MIN} bytes")
    return secret


def load_token(token_file: str | None, *, env: dict[str, str] | None = None) -> str | None:
    """The HTTP bearer token from a file or RAFTCRON_TOKEN; None when neither."""
    environment = os.environ if env is None else env
    if token_file:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as exc:
            raise OptionsError(f"--token-file: cannot read {token_file}: {exc.strerror}") from exc
    else:
        token = environment.get(TOKEN_ENV, "").strip()
    return token or None
