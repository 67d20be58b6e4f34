"""The Prefect training flow, run for real against Prefect's temporary test server."""

import asyncio

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.testing.utilities import prefect_test_harness

from flows.training import RUNNERS, training_flow
from mlproject.cli import STAGES


@pytest.fixture(scope="module")
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


async def task_states_and_artifacts(flow_run_id):
    async with get_client() as client:
        flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
        task_runs = await client.read_task_runs(flow_run_filter=flow_filter)
        artifacts = await client.read_artifacts(flow_run_filter=flow_filter)
    return {t.name: t.state.name for t in task_runs}, {a.key for a in artifacts}


def test_flow_runs_each_stage_through_dvc_and_shows_skipped_stages(project, prefect_server):
    first = training_flow(repo_dir=str(project), return_state=True)
    assert first.is_completed()
    assert first.result() == {stage: "ran" for stage in STAGES}
    assert (project / "outputs/generations.jsonl").is_file()
    assert "train" in (project / "dvc.lock").read_text()

    second = training_flow(repo_dir=str(project), return_state=True)
    assert second.result() == {stage: "skipped" for stage in STAGES}
    states, artifacts = asyncio.run(task_states_and_artifacts(second.state_details.flow_run_id))
    assert {states[stage] for stage in STAGES} == {"Skipped"}
    assert {"scrape-report", "validation-metrics", "promotion"} <= artifacts


def test_scrape_task_retries_transient_failures():
    assert RUNNERS["scrape"].retries == 2
