"""papers/dkron_study: the USL fit and the 2^(6-3) analysis on synthetic data with known
answers, and the simulated study is a pure function of its seed. Fast: the full study is
`raftcron paper dkron-study`."""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from papers.dkron_study.factorial import DKRON_DESIGN, Design, analyse
from papers.dkron_study.study import StudyOptions, run_study
from papers.dkron_study.usl import fit_usl, usl
from raftcron.cli import main


# ---- USL ------------------------------------------------------------------------------------------
def test_usl_fit_recovers_known_parameters_exactly() -> None:
    ns = list(range(1, 17))
    fit = fit_usl(ns, usl(ns, 50.0, 0.05, 0.002))
    assert fit.lam == pytest.approx(50.0, rel=1e-6)
    assert fit.a == pytest.approx(0.05, rel=1e-5)
    assert fit.b == pytest.approx(0.002, rel=1e-5)
    assert fit.r2 == pytest.approx(1.0, abs=1e-9)
    assert fit.n_peak == pytest.approx(((1 - 0.05) / 0.002) ** 0.5, rel=1e-5)


@pytest.mark.parametrize("a,b", [(0.15, 0.0005), (0.02, 0.01), (0.3, 0.0)])
def test_usl_fit_recovers_known_parameters_from_noisy_data(a: float, b: float) -> None:
    rng = random.Random(7)
    ns = [n for n in range(1, 13) for _ in range(3)]
    xs = [float(x) * (1 + rng.gauss(0, 0.01)) for x in usl(ns, 80.0, a, b)]
    fit = fit_usl(ns, xs)
    assert fit.lam == pytest.approx(80.0, rel=0.03)
    assert fit.a == pytest.approx(a, abs=0.02)
    assert fit.b == pytest.approx(b, abs=0.001)
    assert fit.r2 > 0.98
    if b == 0.0:
        assert fit.n_peak is None or fit.n_peak > 30


def test_usl_fit_needs_three_points() -> None:
    with pytest.raises(ValueError):
        fit_usl([1, 2], [10.0, 19.0])


# ---- the 2^(6-3) design ------------------------------------------------------------------------------
def test_design_has_the_studys_generators() -> None:
    signs = DKRON_DESIGN.factor_signs()
    assert DKRON_DESIGN.runs == 8
    for factor, word in {"D": "AB", "E": "AC", "F": "BC"}.items():
        assert signs[factor] == [p * q for p, q in zip(signs[word[0]], signs[word[1]])]
    # Standard order: A alternates fastest.
    assert signs["A"] == [-1, 1, -1, 1, -1, 1, -1, 1]
    assert signs["C"] == [-1, -1, -1, -1, 1, 1, 1, 1]
    # I = ABD = ACE = BCF and their products; resolution III (shortest word: 3 letters).
    relation = DKRON_DESIGN.defining_relation()
    assert {"ABD", "ACE", "BCF", "DEF", "ABEF", "ACDF", "BCDE"} == set(relation)
    assert min(len(w) for w in relation) == 3
    assert DKRON_DESIGN.aliases("A") == ["A", "BD", "CE"]
    assert DKRON_DESIGN.label("AB") == "D = AB = EF"
    assert DKRON_DESIGN.label("ABC") == "AF = BE = CD"


def test_design_is_orthogonal_and_balanced() -> None:
    table = DKRON_DESIGN.sign_table()
    columns = list(table.values())
    for i, j in itertools.combinations_with_replacement(range(len(columns)), 2):
        dot = int(np.dot(columns[i], columns[j]))
        assert dot == (8 if i == j else 0), (i, j)
    signs = DKRON_DESIGN.factor_signs()
    for factor, column in signs.items():
        assert sum(column) == 0, factor
    # All six factors in 8 distinct runs, and every pair of factors orthogonal.
    runs = {tuple(signs[f][r] for f in "ABCDEF") for r in range(8)}
    assert len(runs) == 8
    for f, g in itertools.combinations("ABCDEF", 2):
        assert int(np.dot(signs[f], signs[g])) == 0


def _synthetic(design: Design, effects: dict[str, float], q0: float) -> list[float]:
    table = design.sign_table()
    return [q0 + sum(q * table[col][run] for col, q in effects.items()) for run in range(design.runs)]


def test_effects_and_allocation_of_variation_on_a_known_response() -> None:
    effects = {"A": 30.0, "B": -4.0, "C": 2.0, "AB": 10.0, "AC": 0.0, "BC": -1.0, "ABC": 0.5}
    y = _synthetic(DKRON_DESIGN, effects, q0=100.0)
    result = analyse(DKRON_DESIGN, [[v] for v in y])
    got = {e["column"]: e for e in result["effects"]}
    assert got["I"]["effect"] == pytest.approx(100.0)
    total = sum(q * q for q in effects.values())
    for col, q in effects.items():
        assert got[col]["effect"] == pytest.approx(q)
        assert got[col]["variation"] == pytest.approx(q * q / total)
        assert got[col]["ss"] == pytest.approx(8 * q * q)
    assert result["sse"] == pytest.approx(0.0, abs=1e-9)
    assert sum(e["variation"] for e in result["effects"] if e["column"] != "I") == pytest.approx(1.0)
    assert got["AB"]["label"].startswith("D = AB")


def test_replicated_analysis_has_error_and_confidence_intervals() -> None:
    rng = random.Random(3)
    effects = {"A": 5.0, "B": 0.0, "C": 1.0, "AB": 0.0, "AC": 3.0, "BC": 0.0, "ABC": 0.0}
    base = _synthetic(DKRON_DESIGN, effects, q0=50.0)
    noise = [[rng.gauss(0.0, 0.5) for _ in range(3)] for _ in base]
    y = [[b + e for e in row] for b, row in zip(base, noise)]
    result = analyse(DKRON_DESIGN, y, confidence=0.90)
    got = {e["column"]: e for e in result["effects"]}
    # SST = sum of effect SS + SSE, exactly.
    assert result["sst"] == pytest.approx(sum(e["ss"] for e in result["effects"] if "ss" in e) + result["sse"])
    assert result["error_variation"] == pytest.approx(result["sse"] / result["sst"])
    expected_sse = sum((v - sum(row) / 3) ** 2 for row in y for v in row)
    assert result["sse"] == pytest.approx(expected_sse)
    for col in ("A", "AC"):
        low, high = got[col]["ci"]
        assert low < effects[col] < high
        assert got[col]["significant"]
    assert not got["B"]["significant"]
    assert got["A"]["effect"] == pytest.approx(5.0, abs=0.3)


# ---- the simulated study ------------------------------------------------------------------------------
def _study_cli(tmp: Path, seed: int, only: str = "stages,load_shape") -> dict[str, Any]:
    out = tmp / f"out{seed}-{only.replace(',', '-')}"
    code = main(["paper", "dkron-study", "--quick", "--only", only, "--json", "--no-plot",
                 "--workers", "1", "--seed", str(seed), "--out", str(out)])
    assert code == 0
    assert (out / "dkron_study.json").exists() and (out / "tables.md").exists()
    result: dict[str, Any] = json.loads((out / "dkron_study.json").read_text())
    result.pop("wall_seconds")
    return result


def test_quick_run_is_deterministic_by_seed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = _study_cli(tmp_path, 0)
    again = _study_cli(tmp_path, 0)
    assert first == again
    printed = json.loads(capsys.readouterr().out.splitlines()[0])
    assert printed["stages"] == first["stages"]
    other = _study_cli(tmp_path, 1, only="stages")
    assert other["stages"] != first["stages"]


@pytest.fixture(scope="module")
def stages() -> dict[str, Any]:
    result = run_study(StudyOptions(quick=True, only=("stages",)))
    return result


def test_stage_decomposition_adds_up(stages: dict[str, Any]) -> None:
    for name, scenario in stages["stages"].items():
        table = scenario["stages_ms"]
        assert table["runs"] > 0, name
        means = [s["mean"] for s in table["stages"].values()]
        assert all(m >= 0 for m in means), name
        assert sum(means) == pytest.approx(table["total"]["mean"], abs=0.01 * len(means)), name


def test_the_costed_cluster_shows_the_disk_and_the_planner_period(stages: dict[str, Any]) -> None:
    """At light load a commit needs, after the proposing batch left the leader (its synced
    save done), a follower's synced save (save_us) and two one-way latencies; the new commit
    index alone costs no save (it is volatile, Figure 2). An applied run waits for the next
    planner round (period 100 ms: about half of it on average)."""
    save_ms = stages["cost_model"]["save_us"] / 1000.0
    light = next(v for k, v in stages["stages"].items() if k.startswith("light"))["stages_ms"]["stages"]
    assert light["propose → commit (replication)"]["p50"] >= save_ms
    assert 20.0 <= light["apply → dispatch decision"]["mean"] <= 80.0
    assert light["apply → dispatch decision"]["max"] <= 100.0 + 2 * save_ms
    run = light["run"]
    assert 50.0 <= run["mean"] <= 150.0  # run_ms 100 ± 50%
