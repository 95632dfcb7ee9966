"""The shell executor's argv: a job's JSON list command arrives frozen as a tuple."""

from __future__ import annotations

import pytest

from scheduler.job import JobSpec
from scheduler.server.executors import ConfigError, shell_argv


def test_a_list_command_from_a_job_spec_is_an_argv() -> None:
    spec = JobSpec.from_json({"name": "argv", "schedule": "@every 1s", "executor": "shell",
                              "executor_config": {"command": ["echo", "a b"]}})
    assert shell_argv(spec.executor_config) == ["echo", "a b"]


def test_a_string_command_is_split_and_shell_true_runs_sh() -> None:
    assert shell_argv({"command": "echo 'a b'"}) == ["echo", "a b"]
    assert shell_argv({"command": "echo $HOME", "shell": True}) == ["/bin/sh", "-c", "echo $HOME"]


@pytest.mark.parametrize("config", [{}, {"command": ""}, {"command": []}, {"command": ["echo", 1]},
                                    {"command": ["echo"], "shell": True}])
def test_bad_commands_are_config_errors(config: dict) -> None:
    with pytest.raises(ConfigError):
        shell_argv(config)
