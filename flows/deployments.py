"""The scheduled deployments: training every week, batch generation every day, both run by a
worker of the CPU work pool, and sweeps there on demand; and the training stages that want a GPU
(`train.runner`), run by a worker of the GPU pool (`make servers` starts one of each, as processes).

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.deployments

Then `prefect deployment run training/weekly` (parameters with `--param`/`--params`), or wait
for the schedule; the Prefect UI shows each run, its task runs and artifacts.
"""

from __future__ import annotations

import argparse
import os
import sys
import urllib.request
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse
from uuid import UUID

from prefect import Flow
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.exceptions import ObjectNotFound

from infra.servers import GPU_POOL, WORK_POOL
from tasks.stages import GPU_DEPLOYMENT

TRAINING = ("flows/training.py:training_flow", "weekly", "0 3 * * 1")  # Mondays 03:00
GENERATION = ("flows/generation.py:generation_flow", "daily", "0 6 * * *")  # every day 06:00
STAGES_ON_GPU = "flows/training.py:training_stages_flow"  # started by training runs, never scheduled
SWEEP = ("flows/sweep.py:sweep_flow", "on-demand")  # a search, started by a person: no schedule
# Each run works in a workspace of its own (mlproject.workspace) and promotions take a lock in the
# registry, so runs of one deployment may overlap; more than this many queue for a slot.
CONCURRENCY = 2
# A deployed run's heartbeat, in seconds (Prefect's minimum; its default is 180), and how long a
# run may miss them before it is marked Crashed: its worker, pod or machine is gone.
HEARTBEAT_SECONDS = 30
UNRESPONSIVE_AFTER = 90
CRASH_AUTOMATION = "mlproject: crash the runs that stop answering"
# A failed or crashed run of the deployments is told to the team's webhook (Slack's incoming
# webhooks, and most chat tools', take a JSON body with a `text`).
FAILURE_AUTOMATION = "mlproject: tell the team when a run fails"
FAILURE_WEBHOOK_BLOCK = "mlproject-failures"
FAILURE_WEBHOOK_ENV = "MLPROJECT_FAILURE_WEBHOOK"
FAILURE_SUBJECT = "{{ flow.name }}/{{ deployment.name }}: run {{ flow_run.name }} {{ flow_run.state.name }}"
FAILURE_BODY = "{{ flow_run.state.message }}"
JOB_VARIABLES = {"env": {"PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}}


def check_server(api_url: str | None, seconds: float = 5) -> str:
    """The Prefect API's URL, once its health check answers; one line naming it otherwise."""
    if not api_url:
        raise SystemExit(
            "deployments: PREFECT_API_URL is not set; start the servers (make servers) and "
            "export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    try:
        with urllib.request.urlopen(f"{api_url.rstrip('/')}/health", timeout=seconds) as response:
            if response.status == 200:
                return api_url
    except OSError as error:
        raise SystemExit(
            f"deployments: no Prefect server answers at {api_url} ({error}); "
            "start it with make servers, or fix PREFECT_API_URL"
        ) from None
    raise SystemExit(f"deployments: {api_url}/health answered {response.status}, not 200")


def ensure_work_pool(name: str) -> None:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
            print(f"created work pool {name} (process); start a worker: prefect worker start --pool {name}")


def crash_unresponsive_runs(deployments: list[UUID], seconds: int = UNRESPONSIVE_AFTER) -> None:
    """The server's automation (made again each time) that marks a run of `deployments` Crashed
    once it has missed heartbeats for `seconds`. A training run waiting for its GPU stages then
    runs them again on a worker that is alive, which resumes from the last checkpoint kept in MLflow."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    replace_automation(
        Automation(
            name=CRASH_AUTOMATION,
            description=f"A run of these deployments that sends no heartbeat for {seconds} s is marked Crashed "
            "(made by python -m flows.deployments)",
            trigger=EventTrigger(
                after={"prefect.flow-run.heartbeat"},
                expect={
                    "prefect.flow-run.heartbeat",
                    "prefect.flow-run.Completed",
                    "prefect.flow-run.Failed",
                    "prefect.flow-run.Cancelled",
                    "prefect.flow-run.Crashed",
                },
                **deployment_runs(deployments),
                for_each={"prefect.resource.id"},
                posture=Posture.Proactive,
                threshold=1,
                within=timedelta(seconds=seconds),
            ),
            actions=[
                ChangeFlowRunState(
                    state=StateType.CRASHED, message=f"no heartbeat for {seconds} s: its worker, pod or machine is gone"
                )
            ],
        )
    )


def deployment_runs(deployments: list[UUID]):
    """The events' resources of the flow runs of `deployments`: what an automation watches."""
    from prefect.events.schemas.events import ResourceSpecification

    return {
        "match": ResourceSpecification({"prefect.resource.id": "prefect.flow-run.*"}),
        "match_related": ResourceSpecification(
            {
                "prefect.resource.role": "deployment",
                "prefect.resource.id": [f"prefect.deployment.{d}" for d in deployments],
            }
        ),
    }


def replace_automation(automation) -> None:
    """`automation` on the server, instead of the one of its name made by an earlier deploy."""
    from prefect.automations import Automation

    try:
        Automation.read(name=automation.name).delete()
    except ValueError:  # none yet
        pass
    automation.create()


def notify_failures(deployments: list[UUID], url: str) -> None:
    """The server's automation (made again each time) that sends a failed or crashed run of
    `deployments` to the webhook at `url`: the flow, the deployment, the run, its state and its
    one line of why (a stage's own error line: tasks.stages.run_stage)."""
    from prefect.automations import Automation
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    # The URL is a credential (Slack's are): kept as the block's secret, masked in the UI.
    webhook = CustomWebhookNotificationBlock(
        name="mlproject", url="{{url}}", json_data={"text": "{{subject}}: {{body}}"}, secrets={"url": url}
    )
    block = webhook.save(FAILURE_WEBHOOK_BLOCK, overwrite=True)
    replace_automation(
        Automation(
            name=FAILURE_AUTOMATION,
            description=f"A failed or crashed run of these deployments is posted to the block "
            f"{FAILURE_WEBHOOK_BLOCK} (made by python -m flows.deployments --failure-webhook)",
            trigger=EventTrigger(
                expect={"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                **deployment_runs(deployments),
                posture=Posture.Reactive,
                threshold=1,
            ),
            actions=[SendNotification(block_document_id=block, subject=FAILURE_SUBJECT, body=FAILURE_BODY)],
        )
    )


def deploy_flow(repo: Path, entrypoint: str, name: str, pool: str, **options) -> tuple[str, UUID]:
    """One flow of `repo` deployed to `pool`, its runs cloning `repo`; its name and id."""
    flow = Flow.from_source(source=str(repo), entrypoint=entrypoint)
    deployment = flow.deploy(
        name=name,
        work_pool_name=pool,
        parameters={"repo_dir": str(repo)},
        job_variables=JOB_VARIABLES,
        build=False,
        push=False,
        print_next_steps=False,
        **options,
    )
    return f"{flow.name}/{name}", deployment


def deploy(
    repo: Path,
    pool: str,
    training_cron: str,
    generation_cron: str,
    concurrency: int = CONCURRENCY,
    gpu_pool: str = GPU_POOL,
    gpu_repo: Path | None = None,
    unresponsive_after: int = UNRESPONSIVE_AFTER,
    failure_webhook: str | None = None,
) -> list[str]:
    """Create (or update) the deployments; their names as `flow/deployment`."""
    names, ids = [], []
    limit = ConcurrencyLimitConfig(limit=concurrency, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE)
    for (entrypoint, name, _), cron in ((TRAINING, training_cron), (GENERATION, generation_cron)):
        deployed, deployment = deploy_flow(repo, entrypoint, name, pool, cron=cron, concurrency_limit=limit)
        names.append(deployed)
        ids.append(deployment)
        print(
            f"deployed {deployed}: cron '{cron}' (UTC), pool {pool}, up to {concurrency} runs at once, "
            f"runs cloned from {repo}"
        )
    deployed, deployment = deploy_flow(repo, SWEEP[0], SWEEP[1], pool)
    names.append(deployed)
    ids.append(deployment)
    print(
        f"deployed {deployed}: no schedule (prefect deployment run {deployed} "
        f"--param name=char-rnn-size), pool {pool}, trials in workspaces cloned from {repo}"
    )
    gpu_repo = gpu_repo or repo
    deployed, deployment = deploy_flow(gpu_repo, STAGES_ON_GPU, GPU_DEPLOYMENT.split("/")[1], gpu_pool)
    names.append(deployed)
    ids.append(deployment)
    print(
        f"deployed {deployed}: pool {gpu_pool}, train and evaluate of the training runs that want a "
        f"GPU (train.runner), in workspaces cloned from {gpu_repo}"
    )
    crash_unresponsive_runs(ids, unresponsive_after)
    print(
        f"automation '{CRASH_AUTOMATION}': a run that sends no heartbeat for {unresponsive_after} s is marked "
        f"Crashed; a training run then reruns its {gpu_pool} stages on a live worker, from the last checkpoint"
    )
    if failure_webhook:
        notify_failures(ids, failure_webhook)
        print(
            f"automation '{FAILURE_AUTOMATION}': a failed or crashed run is posted to {masked(failure_webhook)} "
            f"(block {FAILURE_WEBHOOK_BLOCK}): the flow, the run and its one line of why"
        )
    return names


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of runs, 1 or more")
    return int(text)


def heartbeats(text: str) -> int:
    if not text.isdigit() or int(text) <= HEARTBEAT_SECONDS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected whole seconds above the {HEARTBEAT_SECONDS} s between heartbeats"
        )
    return int(text)


def masked(url: str) -> str:
    """A webhook's URL as it may be printed: its path is the secret."""
    parsed = urlparse(url)
    return f"{parsed.scheme}://{parsed.netloc}/..."


def webhook_url(text: str) -> str:
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an http:// or https:// URL with a host")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flows.deployments",
        description="Create the training (weekly) and batch-generation (daily) deployments on the Prefect "
        "server at PREFECT_API_URL, in a process work pool that runs them from --repo, and "
        f"{GPU_DEPLOYMENT}, which runs the train and evaluate stages of the training runs that "
        "want a GPU (train.runner) in the GPU pool.",
    )
    parser.add_argument(
        "--repo",
        default=".",
        help="the checkout whose commit each run clones into a workspace of its own (default: here)",
    )
    parser.add_argument(
        "--pool", default=WORK_POOL, help=f"work pool, created as a process pool if missing (default: {WORK_POOL})"
    )
    parser.add_argument(
        "--gpu-pool",
        default=GPU_POOL,
        help=f"work pool of the training stages that want a GPU, "
        f"created as a process pool if missing (default: {GPU_POOL})",
    )
    parser.add_argument(
        "--gpu-repo",
        help="the checkout the GPU pool's runs clone (default: --repo); it must hold the training runs' commits",
    )
    parser.add_argument("--training-cron", default=TRAINING[2], help=f"default: '{TRAINING[2]}'")
    parser.add_argument("--generation-cron", default=GENERATION[2], help=f"default: '{GENERATION[2]}'")
    parser.add_argument(
        "--concurrency",
        type=positive,
        default=CONCURRENCY,
        help=f"runs of one deployment at once, each in a workspace of its own; more wait "
        f"for a slot (default: {CONCURRENCY})",
    )
    parser.add_argument(
        "--unresponsive-after",
        type=heartbeats,
        default=UNRESPONSIVE_AFTER,
        metavar="SECONDS",
        help=f"a run that sends no heartbeat (every {HEARTBEAT_SECONDS} s) for this long is marked "
        f"Crashed, and GPU stages run again elsewhere (default: {UNRESPONSIVE_AFTER})",
    )
    parser.add_argument(
        "--failure-webhook",
        type=webhook_url,
        default=os.environ.get(FAILURE_WEBHOOK_ENV) or None,
        metavar="URL",
        help=f"post each failed or crashed run (its flow, run and one line of why) to this webhook, "
        f'as JSON {{"text": ...}} (Slack\'s incoming webhooks take it) (default: ${FAILURE_WEBHOOK_ENV}; '
        "unset: an earlier deploy's webhook stays as it was)",
    )
    args = parser.parse_args(argv)
    repo = Path(args.repo).resolve()
    if not (repo / "dvc.yaml").is_file():
        raise SystemExit(f"deployments: --repo {args.repo}: no dvc.yaml there; point it at a clone of this project")
    gpu_repo = Path(args.gpu_repo).resolve() if args.gpu_repo else repo
    if not (gpu_repo / "dvc.yaml").is_file():
        raise SystemExit(
            f"deployments: --gpu-repo {args.gpu_repo}: no dvc.yaml there; point it at a clone of this project"
        )
    from prefect.settings import PREFECT_API_URL

    check_server(os.environ.get("PREFECT_API_URL") or PREFECT_API_URL.value())
    ensure_work_pool(args.pool)
    ensure_work_pool(args.gpu_pool)
    try:
        deploy(
            repo,
            args.pool,
            args.training_cron,
            args.generation_cron,
            args.concurrency,
            args.gpu_pool,
            gpu_repo,
            args.unresponsive_after,
            args.failure_webhook,
        )
    except ValueError as error:  # a cron Prefect cannot read
        raise SystemExit(f"deployments: {str(error).splitlines()[0]}") from None
    print(
        f"next: prefect deployment run training/{TRAINING[1]}   (a worker must serve pool {args.pool}, and one "
        f"pool {args.gpu_pool} for the runs that want a GPU)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
