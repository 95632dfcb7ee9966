"""`raftcron sim` as a user meets it: defaults, JSON fields, errors, exit codes, reproduction."""

from __future__ import annotations

import json

import pytest

from raftcron.cli import main

REQUIRED_KEYS = {
    "seed", "nodes", "sim_seconds", "events", "wall_seconds", "events_per_second", "leaders",
    "leader_changes", "failovers", "commits", "safety_violations", "trace_sha256",
    "snapshots_taken", "snapshots_installed", "max_log_entries",
}


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict]:
    code = main(["sim", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_default_story_elects_fails_over_and_stays_safe(capsys: pytest.CaptureFixture[str]) -> None:
    code, summary = run_json(capsys, "--seconds", "30")
    assert code == 0
    assert REQUIRED_KEYS <= summary.keys()
    assert summary["nodes"] == 5
    assert summary["safety_violations"] == []
    assert summary["leader_changes"] >= 1, "the default run crashes the leader"
    assert len(summary["failovers"]) == 1
    # Followers last heard the leader up to one heartbeat (50 ms) before the crash, so the
    # earliest election is 150 - 50 ms after it; a split vote or two stays well under a second.
    assert 0.1 <= summary["failovers"][0] <= 1.0
    assert summary["commits"] >= summary["proposals"] * 0.9


def test_human_summary_mentions_leaders_and_safety(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--seconds", "10"]) == 0
    out = capsys.readouterr().out
    assert "term" in out and "safety" in out and "all held" in out


def test_trace_file_is_json_lines_matching_the_hash(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import hashlib

    trace = tmp_path / "trace.jsonl"
    code, summary = run_json(capsys, "--seconds", "5", "--trace", str(trace))
    assert code == 0
    data = trace.read_bytes()
    assert hashlib.sha256(data).hexdigest() == summary["trace_sha256"]
    first = json.loads(data.splitlines()[0])
    assert {"t", "node", "local", "kind"} <= first.keys()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--nodes", "0"], "--nodes"),
        (["--faults", "crash,meteor"], "meteor"),
        (["--election-timeout", "300-150"], "election-timeout"),
        (["--heartbeat", "500"], "heartbeat"),
        (["--bug", "no-such-bug"], "no-such-bug"),
        (["--replay", "/nonexistent/schedule.json"], "cannot replay"),
    ],
)
def test_bad_arguments_give_one_line_and_exit_2(args: list[str], message: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1


def test_a_planted_bug_is_found_and_the_reproduce_line_replays_it(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--bug", "no-truncate", "--faults", "crash,partition,pause,loss", "--seconds", "30",
            "--rate", "50", "--snapshot-entries", "0", "--seed", "0"]
    code, summary = run_json(capsys, *args)
    assert code == 129
    assert summary["safety_violations"], "the no-truncate bug breaks log matching"
    kinds = {v["kind"] for v in summary["safety_violations"]}
    assert "log_matching" in kinds or "state_machine_safety" in kinds


def test_replay_of_a_saved_schedule_gives_the_same_trace(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    schedule = tmp_path / "schedule.json"
    code, first = run_json(capsys, "--faults", "all", "--seconds", "20", "--seed", "5",
                           "--save-schedule", str(schedule))
    assert code == 0
    code, again = run_json(capsys, "--seconds", "20", "--seed", "5", "--replay", str(schedule))
    assert code == 0
    assert again["trace_sha256"] == first["trace_sha256"]


def test_lmdb_storage_runs_the_same_story_safely(capsys: pytest.CaptureFixture[str]) -> None:
    code, summary = run_json(capsys, "--storage", "lmdb", "--faults", "crash", "--seconds", "20",
                             "--snapshot-entries", "50")
    assert code == 0
    assert summary["safety_violations"] == []
    assert summary["commits"] > 0


def test_a_run_that_never_elects_a_leader_is_a_liveness_failure(capsys: pytest.CaptureFixture[str]) -> None:
    code, summary = run_json(capsys, "--seconds", "10", "--loss", "1.0")
    assert code == 128
    assert summary["first_leader_s"] is None and "no leader was elected" in summary["no_leader"]
    code, summary = run_json(capsys, "--seconds", "2", "--loss", "1.0")  # too short to judge
    assert code == 0 and "no_leader" not in summary


def test_a_replay_refuses_flags_it_would_ignore_and_takes_bug_switches(
        capsys: pytest.CaptureFixture[str], tmp_path) -> None:  # type: ignore[no-untyped-def]
    saved = tmp_path / "run.json"
    code, _ = run_json(capsys, "--seconds", "10", "--loss", "1.0", "--save-schedule", str(saved))
    assert code == 128  # a self-contained schedule is saved for a failing run
    assert main(["sim", "--replay", str(saved), "--nodes", "3"]) == 2
    assert "--nodes would be ignored" in capsys.readouterr().err
    code, summary = run_json(capsys, "--replay", str(saved), "--bug", "vote-any-log")
    assert code == 128
    assert summary["replay_command"] == f"raftcron sim --replay {saved} --bug vote-any-log"
    assert main(["sim", "--bug", "none", "--bug", "stale-read"]) == 2


def test_entries_per_message_reaches_the_cluster(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--entries-per-message", "0"]) == 2
    capsys.readouterr()
    code, one = run_json(capsys, "--seconds", "5", "--rate", "50", "--entries-per-message", "1")
    code_many, many = run_json(capsys, "--seconds", "5", "--rate", "50")
    assert code == code_many == 0
    assert one["trace_sha256"] != many["trace_sha256"]
