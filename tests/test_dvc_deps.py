"""DVC's picture is exact: each stage depends on all the project code its command imports, so
editing that code makes `dvc status` report the stage."""

import json
import subprocess

import yaml

from mlproject.cli import STAGES
from mlproject.models.epoch_log import code_files
from tests.conftest import ROOT, run


def code_deps(kind: str = "rnn") -> dict[str, list[str]]:
    """Each stage's code deps for `kind`, a kind's link (models/by_kind/) read as the folder it names."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    return {
        name: [
            str((ROOT / d.replace("${train.kind}", kind)).resolve().relative_to(ROOT))
            for d in stage["deps"]
            if d.startswith("mlproject")
        ]
        for name, stage in stages.items()
    }


def project_files(modules: list[str]) -> set[str]:
    files = set()
    for module in modules:
        path = ROOT / module.replace(".", "/")
        files.add(str((path / "__init__.py" if path.is_dir() else path.with_suffix(".py")).relative_to(ROOT)))
    return files


def covered(file: str, deps: list[str]) -> bool:
    return any(file == dep or file.startswith(dep.rstrip("/") + "/") for dep in deps)


def test_each_stage_depends_on_all_the_project_code_its_command_imports(reproduced):
    # What each stage's process imported when `dvc repro` ran it (tests/import_probe).
    deps = code_deps()
    imported = {
        stage: project_files(json.loads((reproduced.imports / f"{stage}.json").read_text())) for stage in STAGES
    }
    for stage in STAGES:
        missing = sorted(f for f in imported[stage] if not covered(f, deps[stage]))
        assert not missing, f"stage {stage} imports {missing}, which dvc.yaml does not list in its deps"
    assert "mlproject/stages/train.py" in imported["train"]
    assert "mlproject/models/keras_rnn/fast_cpu/kernels.py" in imported["train"]
    assert not any("/keras_rnn/" in f for f in imported["scrape"] | imported["tokenize"])
    # A checkpoint is stale when any code that computes the weights changed.
    fingerprinted = {str(p.relative_to(ROOT)) for p in code_files("rnn")}
    weights_code = {
        f
        for f in imported["train"]
        if not f.startswith(("mlproject/stages", "mlproject/tracking"))
        and f not in ("mlproject/cli.py", "mlproject/config.py")
    }  # config.py: paths and other sections
    assert weights_code <= fingerprinted, sorted(weights_code - fingerprinted)


def changed_stages(project) -> set[str]:
    status = run(["dvc", "status", "--json"], project).stdout
    return set(json.loads(status or "{}"))


def test_editing_a_module_reports_the_stages_that_run_it_and_none_upstream(reproduced):
    project = reproduced.project
    assert changed_stages(project) == set()
    kernels = project / "mlproject/models/keras_rnn/fast_cpu/kernels.py"
    kernels.write_text(kernels.read_text() + "\n# an edit\n")
    # Promote and generate run the champion by the code registered with it, whatever its kind.
    assert changed_stages(project) == {"train", "evaluate", "register"}
    subprocess.run(["git", "checkout", "--", "mlproject"], cwd=project, check=True)
    # Another kind's code changes nothing.
    for module in ("transformers_lm/gpt.py", "transformers_lm/finetune.py", "transformers_lm/training.py"):
        edited = project / "mlproject/models" / module
        edited.write_text(edited.read_text() + "\n# an edit\n")
    assert changed_stages(project) == set()
    subprocess.run(["git", "checkout", "--", "mlproject"], cwd=project, check=True)
    # Another kind's settings change nothing; this kind's rerun its training.
    original = (project / "params.yaml").read_text()
    params = yaml.safe_load(original)
    params["train"]["gpt"]["heads"] = 8
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert changed_stages(project) == set()
    params["train"]["rnn"]["units"] += 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert changed_stages(project) == {"train"}  # the stages after it see its new outputs when it has run
    (project / "params.yaml").write_text(original)
    fetch = project / "mlproject/data/fetch.py"
    fetch.write_text(fetch.read_text() + "\n# an edit\n")
    assert changed_stages(project) == {"scrape"}
    subprocess.run(["git", "checkout", "--", "mlproject"], cwd=project, check=True)
