"""`raftcron paper fig16`: the Figure 16 reproduction is deterministic, its setup is the paper's,
and its numbers are sane. Few trials, so this stays fast; the full run is `raftcron paper fig16`."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from papers.raft_election import fig16
from papers.raft_election.fig16 import Fig16Config, Fig16Options, TrialOptions, run_trial, trial_seed
from raft.node import RaftNode
from raftcron.cli import main

TRIALS = 30
SUMMARY_KEYS = {"trials", "median_ms", "mean_ms", "p90_ms", "p99_ms", "max_ms", "quorum", "capped"}


@pytest.fixture(scope="module")
def small_run() -> tuple[dict, dict[str, list[float]]]:
    options = Fig16Options(configs=[Fig16Config(150, 150), Fig16Config(150, 175), Fig16Config(150, 300)],
                           trials=TRIALS, seed=0, workers=1)
    return fig16.run(options)


def test_same_seed_same_numbers_whatever_the_worker_count(small_run: tuple[dict, dict]) -> None:
    _summary, downtimes = small_run
    configs = [Fig16Config(150, 175), Fig16Config(25, 50)]
    parallel = fig16.run_trials(Fig16Options(configs=configs, trials=TRIALS, seed=0, workers=2))
    assert [t.downtime_ms for t in parallel["150-175"]] == downtimes["150-175"]
    serial = fig16.run_trials(Fig16Options(configs=configs[1:], trials=TRIALS, seed=0, workers=1))
    assert serial["25-50"] == parallel["25-50"]
    other_seed = fig16.run_trials(Fig16Options(configs=configs[:1], trials=TRIALS, seed=1, workers=1))
    assert [t.downtime_ms for t in other_seed["150-175"]] != downtimes["150-175"]


def test_every_trial_has_the_papers_worst_case_setup() -> None:
    """2 of the 4 survivors cannot win (a shorter log); all 4 heard the leader's last heartbeat
    within the latency jitter (1 ms), so their timers are synchronised; the crash falls within
    one heartbeat interval after that broadcast."""
    for config in (Fig16Config(150, 300), Fig16Config(12, 24), Fig16Config(150, 155, pre_vote=True)):
        for index in range(8):
            trial = run_trial(config, trial_seed(0, config, index))
            assert trial.eligible == 2, (config.name, index)
            assert trial.sync_spread_ms <= 1.0 + 1e-6, (config.name, index)
            assert 0.0 <= trial.crash_phase < 1.0
            assert not trial.capped
            assert trial.downtime_quorum_ms <= trial.downtime_ms


def test_statistics_are_sane_and_show_split_votes(small_run: tuple[dict, dict]) -> None:
    summary, downtimes = small_run
    median_150_300 = statistics.median(downtimes["150-300"])
    assert 150 <= median_150_300 <= 400
    # The leader crashed at most one heartbeat (75 ms) after the followers' timers were reset, and
    # no timer fires before 150 ms: nobody can be elected within 75 ms of the crash.
    assert min(downtimes["150-300"]) > 75
    # No randomness: the synchronised followers keep splitting the vote for seconds.
    assert statistics.median(downtimes["150-150"]) > 10 * statistics.median(downtimes["150-175"])
    assert summary["configs"]["150-150"]["elections_mean"] > 10
    for name, line in summary["configs"].items():
        assert SUMMARY_KEYS <= line.keys(), name
        assert line["trials"] == TRIALS
        assert line["median_ms"] <= line["p90_ms"] <= line["p99_ms"] <= line["max_ms"]
        assert line["eligible_survivors"] == [2]


def test_pre_vote_keeps_ineligible_servers_from_bumping_the_term() -> None:
    config = Fig16Config(150, 300, pre_vote=True)
    trials = [run_trial(config, trial_seed(0, config, i)) for i in range(10)]
    assert all(t.elections == 1 for t in trials)


def test_figure2_timer_ablation_patches_single_nodes_only() -> None:
    before = RaftNode._become_follower
    ablation, baseline = Fig16Config(150, 300, figure2_timer=True), Fig16Config(150, 300)
    with_figure2 = [run_trial(ablation, trial_seed(0, ablation, i)).downtime_ms for i in range(12)]
    assert RaftNode._become_follower is before, "the ablation must never patch the class"
    without = [run_trial(baseline, trial_seed(0, baseline, i)).downtime_ms for i in range(12)]
    # Keeping the timer can only help here: an ineligible candidate no longer re-arms the
    # eligible servers' timers (README.md, "Why ours is slower").
    assert sum(with_figure2) <= sum(without)


def test_a_trial_capped_by_simulated_time_is_counted_not_hung() -> None:
    trial = run_trial(Fig16Config(150, 150), trial_seed(0, Fig16Config(150, 150), 0), TrialOptions(sim_ms_max=2_000))
    assert trial.capped
    assert trial.downtime_ms > 1_000


def test_config_names_round_trip_and_reject_nonsense() -> None:
    for text in ("150-300", "12-24+prevote", "150-155+loss5", "50-100+prevote+loss5", "150-175+fig2timer"):
        assert Fig16Config.parse(text).name == text
    for text in ("fast", "300-150", "150-300+magic", "0-10", "150-300+loss100"):
        with pytest.raises(ValueError):
            Fig16Config.parse(text)


def test_cli_json_has_the_documented_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["paper", "fig16", "--trials", "6", "--configs", "150-300,25-50+prevote", "--json",
                 "--no-plot", "--out", str(tmp_path), "--workers", "1"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["configs"]) == {"150-300", "25-50+prevote"}
    for line in result["configs"].values():
        assert SUMMARY_KEYS <= line.keys()
        assert line["trials"] == 6
    assert result["configs"]["150-300"]["paper"]["median_ms"] == 171
    assert "paper" not in result["configs"]["25-50+prevote"]
    assert json.loads((tmp_path / "fig16.json").read_text())["configs"].keys() == result["configs"].keys()
    assert "| 150-300 |" in (tmp_path / "fig16_table.md").read_text()


def test_cli_writes_figures_and_a_replayable_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = tmp_path / "slowest.jsonl"
    code = main(["paper", "fig16", "--trials", "5", "--configs", "150-175,150-175+loss5", "--out", str(tmp_path),
                 "--trace", str(trace), "--workers", "1"])
    assert code == 0
    out = capsys.readouterr().out
    assert "150-175" in out and "/ 141" in out, "our median beside the paper's"
    for name in ("fig16.png", "fig16.svg", "fig16_extras.png", "fig16_extras.svg"):
        assert (tmp_path / name).stat().st_size > 10_000, name
    kinds = {json.loads(line)["kind"] for line in trace.read_text().splitlines()}
    assert {"crash", "role", "campaign", "vote"} <= kinds


@pytest.mark.parametrize("args", [
    ["--configs", "150-300+warp"],
    ["--configs", "150-300,150-300"],
    ["--trials", "0"],
    ["--latency", "9-1"],
    ["--workers", "0"],
    ["--trace", "x.jsonl", "--trace-trial", "99", "--trials", "5"],
])
def test_cli_bad_usage_exits_2(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["paper", "fig16", "--no-plot", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("raftcron paper: error:") and err.count("\n") == 1
