"""Tests for scheduler.job: JobSpec validation, normalisation, tags, `raftcron cron validate`."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftcron.cli import main
from scheduler.job import JobSpec, JobValidationError, TagSelector, parse_tags
from scheduler.schedule import load_timezone, parse_rfc3339_ms, ticks_between

T2026 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def at(text: str, tz: str = "UTC") -> int:
    return parse_rfc3339_ms(text, load_timezone(tz))


def job(**fields: Any) -> dict[str, Any]:
    """A valid minimal job with some fields replaced."""
    return {"name": "backup", "schedule": "0 3 * * *", **fields}


def rejected(obj: object) -> JobValidationError:
    with pytest.raises(JobValidationError) as caught:
        JobSpec.from_json(obj)
    return caught.value


# --------------------------------------------------------------------------- accepting


def test_minimal_job_gets_documented_defaults() -> None:
    spec = JobSpec.from_json({"name": "backup", "schedule": "0 3 * * *"})
    assert spec.to_json() == {
        "name": "backup", "displayname": "", "schedule": "0 3 * * *", "timezone": "UTC",
        "owner": "", "owner_email": "", "metadata": {}, "disabled": False, "tags": {},
        "concurrency": "allow", "retries": 0, "executor": "shell", "executor_config": {},
        "parent_job": None, "ephemeral": False, "starts_at": None, "expires_at": None,
        "priority": 2, "weight": 1, "grace_seconds": 60}
    assert spec.tags.count == 1  # no tags: one eligible node per tick


FULL_JOB: dict[str, Any] = {
    "name": "nightly-report_2",
    "displayname": "Nightly report",
    "schedule": "0  30 2 * * mon-fri",
    "timezone": "Europe/Berlin",
    "owner": "ops",
    "owner_email": "ops@example.com",
    "metadata": {"team": "data", "cost": "low"},
    "disabled": False,
    "tags": {"role": "worker:2", "dc": "eu-west"},
    "concurrency": "forbid",
    "retries": 3,
    "executor": "http",
    "executor_config": {"url": "https://example.com/run", "method": "POST",
                        "headers": ["X-A: 1"], "timeout": 30, "nested": {"ok": [True, None, 1.5]}},
    "parent_job": None,
    "ephemeral": True,
    "starts_at": "2026-01-01T00:00:00",
    "expires_at": "2027-01-01T00:00:00+01:00",
    "priority": 1,
    "weight": 5,
    "grace_seconds": 0,
}


def test_full_job_is_normalised_and_round_trips() -> None:
    spec = JobSpec.from_json(FULL_JOB)
    assert spec.schedule == "0 30 2 * * mon-fri"
    assert spec.starts_at == at("2025-12-31T23:00:00Z")  # naive: read in the job's zone
    assert spec.expires_at == at("2026-12-31T23:00:00Z")
    out = spec.to_json()
    assert out["starts_at"] == "2025-12-31T23:00:00Z"
    assert out["metadata"] == {"cost": "low", "team": "data"}
    assert out["tags"] == {"dc": "eu-west", "role": "worker:2"}
    assert out["executor_config"]["nested"] == {"ok": [True, None, 1.5]}
    assert JobSpec.from_json(out) == spec
    assert JobSpec.from_json(json.loads(json.dumps(out))).to_json() == out


def test_job_spec_is_frozen_deeply() -> None:
    spec = JobSpec.from_json(FULL_JOB)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        spec.metadata["team"] = "x"  # type: ignore[index]
    with pytest.raises(TypeError):
        spec.executor_config["nested"]["ok"] = 1  # mappingproxy inside
    assert isinstance(spec.executor_config["headers"], tuple)


@pytest.mark.parametrize("name", ["a", "job_1-x", "\u00f1and\u00fa", "x" * 200, "0", "-_-"])
def test_names_follow_dkrons_slug_rule(name: str) -> None:
    assert JobSpec.from_json(job(name=name)).name == name


def test_schedule_obj_is_anchored_and_windowed() -> None:
    spec = JobSpec.from_json(job(schedule="@every 1h", expires_at="2026-01-01T05:30:00Z"))
    anchor = T2026 + 7_000
    schedule = spec.schedule_obj(anchor)
    assert schedule.kind == "every"
    assert ticks_between(schedule, 0, 2**62, 10) == [anchor + k * 3_600_000 for k in range(1, 6)]


def test_starts_at_hides_earlier_ticks() -> None:
    spec = JobSpec.from_json(job(schedule="0 * * * *", starts_at="2026-01-01T10:00:00Z"))
    assert spec.schedule_obj(0).next_after(T2026) == at("2026-01-01T10:00:00Z")


def test_dependent_job_has_no_schedule_and_no_ticks() -> None:
    spec = JobSpec.from_json({"name": "child", "parent_job": "parent", "schedule": ""})
    assert spec.schedule is None and spec.parent_job == "parent"
    assert spec.schedule_obj(0).kind == "manually"
    assert spec.schedule_obj(0).next_after(0) is None
    assert JobSpec.from_json(spec.to_json()) == spec
    assert JobSpec.from_json(job(parent_job="")).parent_job is None  # Dkron writes ""


# --------------------------------------------------------------------------- tags


def test_tag_counts_lowest_wins_and_tags_are_anded() -> None:
    selector = parse_tags({"role": "web:3", "dc": "eu:2", "disk": "ssd"})
    assert selector.count == 2
    assert selector.matches({"role": "web", "dc": "eu", "disk": "ssd", "extra": "x"})
    assert not selector.matches({"role": "web", "dc": "eu"})
    assert not selector.matches({"role": "web", "dc": "us", "disk": "ssd"})
    assert selector.to_json() == {"dc": "eu:2", "disk": "ssd", "role": "web:3"}


def test_tag_count_absent_means_every_matching_node_and_no_tags_means_one() -> None:
    assert parse_tags({"role": "web"}).count is None
    assert parse_tags({}).count == 1
    assert TagSelector().matches({}) and TagSelector().matches({"any": "thing"})


@pytest.mark.parametrize(("tags", "fragment"), [
    ({"role": "web:0"}, "count must be at least 1"),
    ({"role": "web:x"}, "is not value[:count]"),
    ({"role": "web:2:3"}, "is not value[:count]"),
    ({"role": ":2"}, "empty value"),
    ({"role": ""}, "empty value"),
    ({"role": 2}, "must be a string"),
    ({"": "web"}, "keys must be strings"),
    (["role"], "expected an object, got array"),
])
def test_bad_tags_name_the_tags_field(tags: object, fragment: str) -> None:
    error = rejected(job(tags=tags))
    assert error.field == "tags" and fragment in str(error)


# --------------------------------------------------------------------------- rejecting

REJECT_CASES: list[tuple[dict[str, Any], str, str]] = [
    ({"schedule": "@daily"}, "name", "required"),
    (job(name=""), "name", "must not be empty"),
    (job(name="Backup"), "name", "may contain only lower-case letters"),
    (job(name="back up"), "name", "(found ' ')"),
    (job(name="a.b"), "name", "(found '.')"),
    (job(name="x" * 201), "name", "longer than 200"),
    (job(name="\u0661"), "name", "may contain only"),  # a digit, but not an ASCII one
    (job(name=7), "name", "expected a string, got integer"),
    (job(schedule="61 * * * *"), "schedule", "'61 * * * *': minute value 61 out of range 0-59"),
    (job(schedule="@every 0s"), "schedule", "is zero"),
    (job(schedule=5), "schedule", "expected a string, got integer"),
    ({"name": "x"}, "schedule", "required unless parent_job is set"),
    (job(schedule=None), "schedule", "required unless parent_job is set"),
    (job(parent_job="other"), "schedule", "must be empty when parent_job is set"),
    (job(timezone="Mars/Base"), "timezone", "'Mars/Base': unknown IANA time zone"),
    (job(timezone="localtime"), "timezone", "depends on the host"),
    (job(timezone=None), "timezone", "expected an IANA zone name, got null"),
    (job(schedule="61 * * * *", timezone="Mars/Base"), "timezone", "unknown IANA"),
    (job(parent_job="backup", schedule=""), "parent_job", "cannot be its own parent"),
    (job(parent_job="Other"), "parent_job", "may contain only"),
    (job(surprise=1), "surprise", "unknown field"),
    (job(id="backup"), "id", "unknown field"),
    (job(disabled="yes"), "disabled", "expected true or false, got string"),
    (job(ephemeral=1), "ephemeral", "expected true or false, got integer"),
    (job(concurrency="replace"), "concurrency", "must be one of allow, forbid"),
    (job(executor="docker"), "executor", "must be one of shell, http, sim"),
    (job(retries=-1), "retries", "out of range 0..100"),
    (job(retries=101), "retries", "out of range 0..100"),
    (job(retries=True), "retries", "expected an integer, got boolean"),
    (job(retries=1.0), "retries", "expected an integer, got number"),
    (job(retries="3"), "retries", "expected an integer, got string"),
    (job(priority=3), "priority", "out of range 1..2"),
    (job(weight=0), "weight", "out of range 1..1000"),
    (job(grace_seconds=-1), "grace_seconds", "out of range"),
    (job(metadata={"k": 1}), "metadata", "must be a string"),
    (job(metadata="k=v"), "metadata", "expected an object"),
    (job(executor_config=[]), "executor_config", "expected an object, got array"),
    (job(executor_config={"x": float("nan")}), "executor_config", "finite"),
    (job(executor_config={"x": {1, 2}}), "executor_config", "is not JSON data"),
    (job(executor_config={"a": [[[[[[[[[[1]]]]]]]]]]}), "executor_config", "nested deeper"),
    (job(executor_config={"a": "x" * 70_000}), "executor_config", "bytes encoded"),
    (job(owner_email="nobody"), "owner_email", "is not an e-mail address"),
    (job(displayname="d" * 201), "displayname", "longer than 200"),
    (job(starts_at="soon"), "starts_at", "is not an RFC 3339 time"),
    (job(starts_at=1767225600000), "starts_at", "expected an RFC 3339 time or null"),
    (job(expires_at="2026-13-01T00:00:00Z"), "expires_at", "month must be in 1..12"),
    (job(starts_at="2026-02-01T00:00:00Z", expires_at="2026-01-01T00:00:00Z"), "expires_at",
     "must be later than starts_at"),
]


@pytest.mark.parametrize(("obj", "field", "fragment"), REJECT_CASES)
def test_invalid_jobs_name_the_field(obj: dict[str, Any], field: str, fragment: str) -> None:
    error = rejected(obj)
    assert error.field == field
    assert str(error).startswith(f"job field '{field}': ")
    assert fragment in str(error)
    assert isinstance(error, ValueError)


@pytest.mark.parametrize("obj", [None, [], "job", 3])
def test_non_objects_are_rejected(obj: object) -> None:
    assert "expected a JSON object" in str(rejected(obj))


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)
_field_names = st.sampled_from([
    "name", "schedule", "timezone", "tags", "metadata", "retries", "executor_config",
    "parent_job", "starts_at", "expires_at", "priority", "weight", "grace_seconds",
    "concurrency", "disabled", "owner_email", "unknown"])


@settings(max_examples=300, deadline=None)
@given(obj=st.dictionaries(_field_names, _json_values | st.sampled_from(
    ["backup", "@daily", "*/5 * * * *", "UTC", "web:2", "2026-01-01T00:00:00Z", "allow"]),
    max_size=8))
def test_random_json_only_ever_raises_job_validation_error(obj: dict[str, Any]) -> None:
    try:
        spec = JobSpec.from_json(obj)
    except JobValidationError:
        return
    assert JobSpec.from_json(spec.to_json()) == spec


@settings(max_examples=50, deadline=None)
@given(obj=_json_values)
def test_random_top_level_json_is_rejected_cleanly(obj: object) -> None:
    try:
        JobSpec.from_json(obj)
    except JobValidationError:
        pass


# --------------------------------------------------------------------------- the CLI


def write(tmp_path: Path, document: object | str) -> str:
    path = tmp_path / "job.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return str(path)


def test_cli_validate_prints_the_normalised_job(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cron", "validate", "-f", write(tmp_path, FULL_JOB)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == JobSpec.from_json(FULL_JOB).to_json()


def test_cli_validate_accepts_a_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    jobs = [job(), job(name="second", schedule="@every 5m")]
    assert main(["cron", "validate", "-f", write(tmp_path, jobs)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [item["schedule"] for item in printed] == ["0 3 * * *", "@every 5m"]


@pytest.mark.parametrize(("document", "fragment"), [
    (job(schedule="61 * * * *"), "job field 'schedule': '61 * * * *': minute value 61"),
    ([job(), job(name="x", retries=-1)], "jobs[1]: job field 'retries'"),
    ([job(), job()], "jobs[1]: duplicate job name 'backup'"),
    ('{"name": "a", "name": "b", "schedule": "@daily"}', "duplicate key 'name'"),
    ("{not json", "invalid JSON"),
])
def test_cli_validate_reports_the_error_and_exits_2(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], document: object,
        fragment: str) -> None:
    assert main(["cron", "validate", "-f", write(tmp_path, document)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert fragment in captured.err and captured.err.count("\n") == 1


def test_cli_validate_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cron", "validate", "-f", str(tmp_path / "absent.json")]) == 2
    assert "cannot read" in capsys.readouterr().err
