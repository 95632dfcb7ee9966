"""`raftcron plot timeline` and `raftcron sim --plot`: a trace becomes a readable figure, its
periods without a leader are measured like FailoverMeter's, and bad input is a one-line exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from papers.plots.timeline import TraceError, build_timeline, load_trace, plot_timeline
from raftcron.cli import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def sim_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default story, short: the leader crashes a third of the way in."""
    path = tmp_path_factory.mktemp("trace") / "run.jsonl"
    assert main(["sim", "--seconds", "12", "--trace", str(path), "--json"]) == 0
    return path


def record(t: float, node: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {"t": t, "node": node, "local": t, "kind": kind, **fields}


def synthetic() -> list[dict[str, Any]]:
    """Three nodes: an election, a one-way cut, a pause, a leader crash and a new leader, a clock
    jump, loss, and scheduler events including a miss and a duplicate."""
    events = [record(0, n, k, **f) for n in ("n1", "n2", "n3")
              for k, f in (("start", {"lifetime": 1}), ("role", {"role": "follower", "term": 0, "reason": "start"}))]
    events += [
        record(160, "n2", "role", role="candidate", term=1, reason="election timeout"),
        record(160, "n2", "campaign", term=1, pre_vote=False),
        record(163, "n1", "vote", candidate="n2", term=1, granted=True, pre_vote=False),
        record(166, "n2", "role", role="leader", term=1, leader="n2", reason="won election"),
        record(170, "n2", "commit", index=1, term=1),
        record(3000, "net", "one_way", sides=[["n2"], ["n1", "n3"]]),
        record(3100, "net", "heal"),
        record(4000, "n3", "pause"), record(4500, "n3", "resume"),
        record(6000, "n2", "crash"),
        record(6170, "n1", "role", role="candidate", term=2, reason="election timeout"),
        record(6173, "n3", "vote", candidate="n1", term=2, granted=True, pre_vote=False),
        record(6176, "n1", "role", role="leader", term=2, leader="n1", reason="won election"),
        record(6181, "n1", "commit", index=5, term=2),
        record(7000, "n3", "clock_jump", delta_ms=250),
        record(7500, "net", "net", loss=0.05, dup=0.0),
        record(8000, "n2", "start", lifetime=2),
        record(8000, "n2", "role", role="follower", term=1, reason="start"),
    ]
    for k in range(1, 10):
        events += [record(1000.0 * k, "n1", "fire", job="backup", tick=1000 * k),
                   record(1000.0 * k + 2, "n1", "exec_start", job="backup", tick=1000 * k, slot=0, attempt=1),
                   record(1000.0 * k + 300, "n1", "exec_finish", job="backup", tick=1000 * k, slot=0, attempt=1)]
    events += [record(6050, "n1", "miss", job="backup", tick=6000), record(7050, "n1", "duplicate", job="backup")]
    return events


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_simulated_trace_to_png_and_svg(sim_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png, svg = tmp_path / "t.png", tmp_path / "t.svg"
    assert main(["plot", "timeline", str(sim_trace), "-o", str(png)]) == 0
    assert main(["plot", "timeline", str(sim_trace), "-o", str(svg), "--from", "3.9", "--to", "4.5"]) == 0
    assert png.read_bytes().startswith(PNG_MAGIC) and png.stat().st_size > 30_000
    assert svg.read_text().lstrip().startswith("<?xml") and svg.stat().st_size > 30_000
    out = capsys.readouterr().out
    assert "no leader from 4.000 s" in out, "the crash at a third of 12 s is a failover"


def test_default_output_is_beside_the_trace(sim_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "copy.jsonl"
    copy.write_bytes(sim_trace.read_bytes())
    assert main(["plot", "timeline", str(copy), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["output"] == str(tmp_path / "copy.png")
    assert (tmp_path / "copy.png").exists()
    assert summary["nodes"] == ["n1", "n2", "n3", "n4", "n5"]
    assert len(summary["leaders"]) == 2


def test_sim_plot_uses_the_failover_meters_windows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "sim.png"
    assert main(["sim", "--seconds", "12", "--json", "--plot", str(plot)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert plot.read_bytes().startswith(PNG_MAGIC)
    records = [r for r in load_trace_from_sim(tmp_path)]
    assert records, "the same seed, traced, gives the records the plot was drawn from"
    meter_ms = summary["failovers"][0] * 1000
    inferred = [w for w in build_timeline(records).windows if w.cause != "first election"]
    # The trace-only measure ends at the new leader's first commit: a little after the meter's.
    assert len(inferred) == 1 and meter_ms <= inferred[0].duration_ms <= meter_ms + 25


def load_trace_from_sim(tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "again.jsonl"
    assert main(["sim", "--seconds", "12", "--json", "--trace", str(path)]) == 0
    return load_trace(str(path))


def test_synthetic_trace_with_scheduler_faults_and_warnings(tmp_path: Path) -> None:
    timeline = build_timeline(synthetic())
    assert timeline.nodes == ["n1", "n2", "n3"]
    windows = [(w.cause, round(w.duration_ms)) for w in timeline.windows]
    # The leader's one-way cut healed before anyone campaigned: it leads on, the outage ends.
    assert windows == [("first election", 170), ("leader cut off, then back", 100), ("n2 crashed", 181)]
    assert [(s.start_ms, s.end_ms) for s in timeline.down["n2"]] == [(6000, 8000)]
    assert [(s.start_ms, s.end_ms) for s in timeline.paused["n3"]] == [(4000, 4500)]
    assert [(s.start_ms, s.label) for s in timeline.cut["n2"]] == [(3000, "one-way")]
    # n3 never changed role but voted in term 2: its band changes colour there.
    assert [s.term for s in timeline.segments["n3"]] == [0, 2]
    for name in ("s.png", "s.svg"):
        summary = plot_timeline(timeline, str(tmp_path / name))
        assert (tmp_path / name).stat().st_size > 20_000
    assert summary["scheduler"] == {"fire": 9, "exec_start": 9, "exec_finish": 9, "miss": 1, "duplicate": 1}
    assert summary["warnings"] == 2


def test_a_trace_without_scheduler_events_has_no_scheduler_lane(sim_trace: Path, tmp_path: Path) -> None:
    summary = plot_timeline(build_timeline(load_trace(str(sim_trace))), str(tmp_path / "x.png"))
    assert summary["scheduler"] == {} and summary["warnings"] == 0


def test_long_traces_aggregate_marks(tmp_path: Path) -> None:
    """An hour of split votes (thousands of marks) still draws, as histograms."""
    events = [record(0, n, "role", role="follower", term=0) for n in ("n1", "n2", "n3")]
    for k in range(3000):
        t = 1000.0 * k + 1
        events.append(record(t, "n1", "campaign", term=k + 1, pre_vote=True))
        events.append(record(t + 1, "n2", "vote", candidate="n1", term=k + 1, granted=k % 3 == 0, pre_vote=True))
    summary = plot_timeline(build_timeline(events), str(tmp_path / "hour.png"))
    assert summary["to_s"] > 2900
    assert (tmp_path / "hour.png").stat().st_size > 20_000


@pytest.mark.parametrize("content, message", [
    ("", "holds no trace events"),
    ("\n\n", "holds no trace events"),
    ("this is not json\n", ":1: not a JSON trace line"),
    ('{"t": 1, "node": "n1", "local": 1, "kind": "role"}\n[1, 2]\n', ":2: a trace line must be a JSON object"),
    ('{"node": "n1", "kind": "role"}\n', "needs a time"),
    ('{"t": 1, "local": 1, "kind": "role"}\n', "needs a string `kind` and `node`"),
    ('{"t": 1, "node": "net", "local": 1, "kind": "heal"}\n', "no node or scheduler events"),
])
def test_bad_traces_exit_2_with_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    assert main(["plot", "timeline", str(path), "-o", str(tmp_path / "bad.png")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("raftcron plot: error:") and err.count("\n") == 1
    assert not (tmp_path / "bad.png").exists()


def test_binary_and_missing_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    binary = tmp_path / "x.jsonl"
    binary.write_bytes(PNG_MAGIC + bytes(range(256)))
    assert main(["plot", "timeline", str(binary)]) == 2
    assert main(["plot", "timeline", str(tmp_path / "missing.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "not a text file" in err and "cannot read" in err


@pytest.mark.parametrize("args", [["-o", "out.pdf"], ["--from", "5", "--to", "4"], ["--from", "100", "--to", "200"]])
def test_bad_windows_and_outputs_exit_2(sim_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       args: list[str]) -> None:
    args = [a if a != "out.pdf" else str(tmp_path / a) for a in args]
    if "-o" not in args:
        args += ["-o", str(tmp_path / "w.png")]
    code = main(["plot", "timeline", str(sim_trace), *args])
    if args[:2] == ["--from", "100"]:  # past the end of a 12 s trace: an empty but valid window
        assert code == 0
        return
    assert code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_sim_plot_rejects_a_bad_extension_before_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--seconds", "5", "--plot", str(tmp_path / "x.gif")]) == 2
    assert "must end in .png or .svg" in capsys.readouterr().err


def test_build_timeline_checks_records() -> None:
    with pytest.raises(TraceError):
        build_timeline([{"kind": "role"}])
