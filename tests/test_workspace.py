"""One DVC workspace shared by orchestrated runs: the run lock, a run's own params, the DVC
remote another machine rebuilds it from (test_pipeline.py), and the deployment command's bad input."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import yaml

from mlproject.config import ConfigError, StageFailed
from mlproject.workspace import one_run_at_a_time, params_for_this_run
from tests.conftest import ROOT, run


def test_a_second_run_is_refused_in_one_line_naming_the_holder(project):
    with one_run_at_a_time(project, "flow run brave-otter"):
        with pytest.raises(StageFailed) as refused:
            with one_run_at_a_time(project, "flow run second"):
                pytest.fail("two runs held one workspace")
    assert "another training run holds this workspace (flow run brave-otter" in str(refused.value)
    assert "\n" not in str(refused.value)
    with one_run_at_a_time(project, "flow run third"):  # released once the first ended
        pass


def test_a_runs_params_apply_to_that_run_only_and_bad_ones_change_nothing(project):
    original = (project / "params.yaml").read_text()
    with params_for_this_run(project, None, epochs=1, prompts_file="prompts/other.txt") as changed:
        params = yaml.safe_load((project / "params.yaml").read_text())
        assert (params["train"]["epochs"], params["generate"]["prompts_file"]) == (1, "prompts/other.txt")
        assert any("train.epochs" in line for line in changed)
    assert (project / "params.yaml").read_text() == original

    with pytest.raises(ConfigError, match="epochs"):
        with params_for_this_run(project, None, epochs=0):
            pytest.fail("a run started with epochs = 0")
    assert (project / "params.yaml").read_text() == original


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("env, expected", [
    ({"PREFECT_API_URL": "http://127.0.0.1:{port}/api"}, "no Prefect server answers at http://127.0.0.1:{port}/api"),
    ({"PREFECT_API_URL": ""}, "PREFECT_API_URL is not set"),
])
def test_deployments_refuse_an_unreachable_server_in_one_line_within_seconds(env, expected, tmp_path):
    port = closed_port()
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "flows.deployments"], cwd=ROOT,
                            text=True, capture_output=True,
                            env={**os.environ, **{k: v.format(port=port) for k, v in env.items()},
                                 "PREFECT_HOME": str(tmp_path)})
    assert time.monotonic() - started < 30
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert expected.format(port=port) in result.stderr


def test_deployments_refuse_a_folder_that_is_not_a_project(tmp_path):
    result = run(["python", "-m", "flows.deployments", "--repo", str(tmp_path)], ROOT, check=False)
    assert result.returncode != 0 and f"--repo {tmp_path}: no dvc.yaml there" in result.stderr
