"""Start-up refusals and the bearer token (scheduler/server/options.py, http_api.py Rule 5)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from scheduler.server.options import OptionsError, ServerOptions, load_secret
from scheduler.server.client import ApiClient
from scheduler.server.testing import ProcessCluster, poll

AUTH = {"Authorization": "Bearer sesame"}


def options(**changes: object) -> ServerOptions:
    base: dict[str, object] = dict(node_id="n1", data_dir=Path("/tmp/unused"),
                                   raft_address=("127.0.0.1", 7001), http_address=("127.0.0.1", 8080),
                                   peers={"n1": ("127.0.0.1", 7001)})
    base.update(changes)
    return ServerOptions(**base)  # type: ignore[arg-type]


def test_a_public_raft_bind_without_a_secret_is_refused() -> None:
    with pytest.raises(OptionsError, match="without a cluster secret"):
        options(raft_address=("0.0.0.0", 7001))
    options(raft_address=("0.0.0.0", 7001), secret=b"x" * 32)  # with one it is fine


def test_a_public_http_bind_needs_a_token_or_an_explicit_opt_out() -> None:
    with pytest.raises(OptionsError, match="without a token"):
        options(http_address=("0.0.0.0", 8080))
    options(http_address=("0.0.0.0", 8080), token="t")
    options(http_address=("0.0.0.0", 8080), insecure_http=True)


def test_the_secret_comes_from_a_file_or_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    path.write_text("s" * 32 + "\n")
    assert load_secret(str(path), env={}) == b"s" * 32
    assert load_secret(None, env={"RAFTCRON_SECRET": "e" * 20}) == b"e" * 20
    assert load_secret(None, env={}) is None
    with pytest.raises(OptionsError, match="shorter"):
        load_secret(None, env={"RAFTCRON_SECRET": "short"})


def test_the_cli_refuses_with_one_line_and_exit_2_and_has_no_secret_flag(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "RAFTCRON_SECRET"}
    result = subprocess.run(
        [sys.executable, "-m", "raftcron", "server", "--id", "n1", "--data-dir", str(tmp_path),
         "--raft", "0.0.0.0:7001", "--peers", "n1=127.0.0.1:7001"],
        capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 2
    assert "without a cluster secret" in result.stderr
    help_text = subprocess.run([sys.executable, "-m", "raftcron", "server", "--help"],
                               capture_output=True, text=True, timeout=60).stdout
    assert "--secret-file" in help_text
    assert "--secret " not in help_text


def test_a_token_protects_every_path_but_health_and_survives_redirects(tmp_path: Path) -> None:
    with ProcessCluster(tmp_path / "c", 3, env={"RAFTCRON_TOKEN": "sesame"}) as cluster:
        cluster.start()
        url = cluster.url("n1")
        poll(lambda: _get(url + "/health") == 200, timeout_s=15, what="n1 serving")
        assert _get(url + "/v1/") == 401
        assert _get(url + "/metrics") == 401
        assert _get(url + "/v1/", token="wrong") == 401
        assert _get(url + "/v1/", token="sesame") == 200
        leader = poll(lambda: (r := httpx.get(url + "/v1/leader", headers=AUTH)).status_code == 200
                      and r.json()["id"], timeout_s=15, what="a leader")
        follower = next(i for i in cluster.ids if i != leader)
        client = ApiClient([cluster.url(follower)], token="sesame")  # redirected to the leader
        assert client.request("PUT", "/v1/kv/t", body={"value": 1})["ok"]
        client.close()


def _get(url: str, token: str | None = None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        return httpx.get(url, headers=headers).status_code
    except httpx.HTTPError:
        return 0


def test_addresses_and_peer_lists_are_parsed_strictly() -> None:
    from scheduler.server.options import parse_address, parse_peers, parse_tags_option

    assert parse_address("[::1]:7001", "--raft") == ("::1", 7001)
    assert parse_peers("n1=127.0.0.1:1,n2=127.0.0.1:2") == {"n1": ("127.0.0.1", 1), "n2": ("127.0.0.1", 2)}
    assert parse_tags_option("zone=a, role=web") == {"zone": "a", "role": "web"}
    for bad in ("n1", "n1=host", "n1=host:99999", "n1=h:1,n1=h:2", "=h:1"):
        with pytest.raises(OptionsError):
            parse_peers(bad)
    with pytest.raises(OptionsError, match="must include this server"):
        options(peers={"n2": ("127.0.0.1", 7002)})
    with pytest.raises(OptionsError, match="wildcard"):
        options(voter=False, raft_address=("0.0.0.0", 7009), secret=b"x" * 32)
