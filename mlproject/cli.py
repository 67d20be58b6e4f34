"""The command line: one subcommand per pipeline stage, the same commands dvc.yaml runs.

Each subcommand reads params.yaml, validates it into typed config, and calls one library function.
Bad input ends with a one-line error naming the key or file, and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import os
import sys
from pathlib import Path

from mlproject import config as cfg
from mlproject.fileio import read_json

STAGES = ["scrape", "validate", "tokenize", "train", "evaluate", "register", "promote", "generate"]


def cmd_summary(params: cfg.Params, args) -> None:
    """Where the results of the last run are, and how to look at them."""
    p = params.paths
    metrics = read_json(p.metrics) if Path(p.metrics).is_file() else {}
    promotion = read_json(p.promotion) if Path(p.promotion).is_file() else {}
    uri = params.mlflow.tracking_uri
    print("\nPipeline finished.")
    print(
        f"  champion model:   models:/{params.mlflow.model_name}@champion "
        f"(version {promotion.get('champion_now', '?')}; this run: {promotion.get('decision', '?')})"
    )
    if metrics:
        print(
            f"  metrics:          {p.metrics} ({metrics['bits_per_character']:.4f} bits per "
            f"character, {metrics['bits_per_byte']:.4f} bits per byte on validation)"
        )
    print(f"  generated text:   {p.generations}")
    print(f"  validation docs:  {Path(p.data_docs) / 'index.html'}   (opens offline)")
    print("Try and compare the registered models:")
    print(f"  make demo      a web page on http://{params.serve.host}:{params.serve.port} that writes with any of them")
    print("  make compare   a table of them and a plot of their validation loss")
    print("Open the UIs on this run's data:")
    print(f"  .venv/bin/mlflow ui --backend-store-uri {uri} --port 5000")
    print("  PREFECT_HOME=.prefect .venv/bin/prefect server start   (flow runs of `make flow`)")


def connect_to_registered(params: cfg.Params) -> str:
    """The store's URI, once it holds a version of the model to compare or serve; else one line."""
    from mlflow import MlflowClient

    from mlproject.tracking.registry import connect

    uri, name = connect(params.mlflow), params.mlflow.model_name
    if not MlflowClient(tracking_uri=uri, registry_uri=uri).search_model_versions(f"name = '{name}'", max_results=1):
        raise cfg.StageFailed(
            f"mlflow.model_name = {name}: no registered version in {uri}; run the pipeline first (make run)"
        )
    return uri


def cmd_compare(params: cfg.Params, args) -> None:
    """The registered versions in one table, and their validation-loss curves in one plot."""
    from mlproject.tracking.comparison import compare, table, verdict

    if args.sweep:
        compare_sweep(params, args.sweep)
        return
    uri = connect_to_registered(params)
    rows, written = compare(params.compare, params.mlflow.model_name)
    print(f"{params.mlflow.model_name} in {uri}: the newest {len(rows)} version(s)\n")
    print(table(rows))
    if any(row.git_commit.endswith("*") for row in rows):
        print("* registered with uncommitted changes to tracked files (git_dirty)")
    if not all(row.comparable for row in rows):
        print("† scored before every byte was paid for (no score_rule tag): promote never compares it")
    print("in vocab: the share of validation bytes the version's vocabulary covers; its speller pays for the rest")
    print(f"\n{verdict(rows)}")
    print(f"validation-loss curves: {', '.join(map(str, written))}")


def compare_sweep(params: cfg.Params, sweep: str) -> None:
    """The trials of the newest run of a sweep, ranked by bits per byte."""
    from mlflow import MlflowClient

    from mlproject.tracking.comparison import sweep_trials, trial_table
    from mlproject.tracking.registry import connect

    uri = connect(params.mlflow)
    parent, rows = sweep_trials(MlflowClient(), params.mlflow.experiment, sweep)
    if not parent:
        raise cfg.StageFailed(
            f"no run of sweep {sweep} in {uri} (experiment {params.mlflow.experiment}); run mlproject sweep {sweep}"
        )
    print(f"sweep {sweep} (MLflow run {parent} in {uri}): {len(rows)} trial run(s), best first\n")
    print(trial_table(rows))


def cmd_serve(params: cfg.Params, args) -> None:
    """The web page that writes with any registered version (Ctrl-C stops it)."""
    from mlproject.serving.page import serve

    uri = connect_to_registered(params)
    serve(params.serve, params.mlflow.model_name, params.generate, params.seed, uri)


def cmd_register_run(params: cfg.Params, args) -> None:
    from mlproject.tracking.register_run import register_run
    from mlproject.tracking.registry import connect

    outcome = register_run(args.run, Path(args.params).resolve().parent, connect(params.mlflow))
    registered, promotion = outcome["registered"], outcome["promotion"]
    print(
        f"register: version {registered['version']} of {registered['model_name']} (run {registered['run_id']}) "
        f"-> {promotion['decision']}: {promotion['reason']}"
    )


def cmd_approval(params: cfg.Params, args) -> None:
    """A person's answer for the version awaiting approval (promote.approval: required)."""
    import getpass

    from mlproject.tracking.promotion import answer_approval
    from mlproject.tracking.registry import connect

    connect(params.mlflow)
    approved = args.command == "approve"
    outcome = answer_approval(params.mlflow.model_name, args.version, approved, args.by or getpass.getuser())
    print(
        f"{args.command}: version {outcome['version']} -> {outcome['decision']}: {outcome['reason']} "
        f"(champion: version {outcome['champion_now']})"
    )
    if approved and outcome["decision"] != "promoted":
        raise cfg.StageFailed(f"version {outcome['version']} was not promoted: {outcome['reason']}")
    if outcome["decision"] == "promoted":
        print("next: dvc repro -f generate, for batch generation with the new champion")


def cmd_sweep(params: cfg.Params, args) -> None:
    from mlproject.search.sweep import run_sweep
    from mlproject.search.sweep_file import load_sweep

    sweep = load_sweep(args.name, args.params, args.sweeps)
    if args.parallelism is not None:
        if args.parallelism < 1:
            raise cfg.ConfigError(f"--parallelism {args.parallelism}: expected trials side by side, from 1")
        sweep = dataclasses.replace(sweep, parallelism=args.parallelism)
    report = run_sweep(sweep, Path(args.params).resolve().parent, args.storage)
    best, promotion = report["best"], report["promotion"]
    print(
        f"sweep {sweep.name}: best trial {best['trial']} at {best['bits_per_byte']:.4f} bits per byte "
        f"({', '.join(f'{k}={v}' for k, v in best['values'].items())}); version "
        f"{best['registered']['version']} -> {promotion['decision']}: {promotion['reason']}; "
        "report: reports/sweep.json"
    )


def cmd_preset(args) -> None:
    presets = Path(args.presets)
    if not args.name:
        for path in sorted(presets.glob("*.yaml")):
            first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
            print(f"  {path.stem:16} {first}")
        return
    from mlproject.params_file import apply_preset

    changed = apply_preset(Path(args.params), presets / f"{args.name}.yaml")
    print(f"preset {args.name}: {len(changed)} param(s) changed in {args.params}")
    for line in changed:
        print(f"  {line}")
    print("Run `make run` (or `dvc repro`): DVC reruns only the stages whose params changed.")


SECTION_OF = {
    "scrape": [cfg.ScrapeConfig, cfg.Source, cfg.HttpConfig],
    "validate": [cfg.ValidateConfig],
    "tokenize": [cfg.TokenizeConfig],
    "train": [cfg.TrainConfig],
    "evaluate": [cfg.EvaluateConfig],
    "register": [cfg.MlflowConfig],
    "promote": [cfg.PromoteConfig],
    "generate": [cfg.GenerateConfig],
    "compare": [cfg.CompareConfig],
    "serve": [cfg.ServeConfig],
}
ALSO_READS = {"serve": "'seed', 'mlflow' and 'generate', the page's first settings", "compare": "'mlflow'"}
SUMMARIES = {
    "scrape": "collect documents from the sources in params into a JSONL with provenance",
    "validate": "run the Great Expectations suite: accepted and rejected documents, report, Data Docs",
    "tokenize": "build the vocabulary and split training and validation text by document hash",
    "train": "train the model kind train.kind names; resumes from its last checkpoint",
    "evaluate": "perplexity, bits per character and per byte on the validation text; samples",
    "register": "log the model to MLflow as a pyfunc with lineage; register a new version",
    "promote": "move alias champion to the new version only if it beats the champion",
    "generate": "batch generation from models:/<name>@champion for the prompts file",
}


def run_stage(stage: str, params: cfg.Params, args) -> None:
    """Only this stage's module is imported: its code is what dvc.yaml lists as its deps."""
    if stage in os.environ.get(cfg.RESTORE_ONLY, "").split(","):
        raise cfg.StageFailed(
            "this run's stages may only be restored from the DVC remote, and it has no run of this "
            "stage with this code, data and these params"
        )
    if stage == "register" and args.run:
        cmd_register_run(params, args)
        return
    importlib.import_module(f"mlproject.stages.{stage}").run(params, args)


def raw_params(path: str) -> dict:
    """params.yaml as written, for --help; empty where it is missing or does not parse."""
    import yaml

    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return raw if isinstance(raw, dict) else {}


def section_help(stage: str, raw: dict, source: str) -> str:
    """The params a stage reads, with the values `source` holds (else the built-in defaults)."""
    classes = SECTION_OF[stage]
    name = {cfg.MlflowConfig: "mlflow"}.get(classes[0], stage)
    values = raw.get(name) if isinstance(raw.get(name), dict) else {}
    also = ALSO_READS.get(stage, "'seed' and 'paths'")
    text = (
        f"params.yaml section '{name}', with the values in {source} (also reads {also}):\n"
        f"{cfg.describe(classes[0], values, source)}"
    )
    if stage == "train":
        text += kind_help(values, source)
    if len(classes) > 1:
        text += f"\n\neach entry of scrape.sources:\n{cfg.describe(classes[1])}"
        http = values.get("http") if isinstance(values.get("http"), dict) else {}
        text += f"\n\nscrape.http:\n{cfg.describe(classes[2], http, source)}"
    return text


def kind_help(train: dict, source: str) -> str:
    """The settings of the kind `train` names (else the default kind): its section of params.yaml."""
    from mlproject.models.settings import SHARED, settings_class

    kind = train.get("kind", cfg.TrainConfig.kind)
    try:
        cls = settings_class(kind)
    except cfg.ConfigError as error:
        return f"\n\n{error}"
    own = train.get(kind) if isinstance(train.get(kind), dict) else {}
    return (
        f"\n\ntrain.{kind}, the settings of kind {kind} (each kind has its section; "
        f"--params with another train.kind shows its own):\n{cfg.describe(cls, own, source, skip=SHARED)}"
    )


class HelpParser(argparse.ArgumentParser):
    """A parser whose epilog (the params a command reads) is written only when help is shown, so a
    stage imports nothing for help text it does not print (a kind's settings, say)."""

    epilog_of = None

    def format_help(self) -> str:
        if self.epilog_of is not None:
            self.epilog = self.epilog_of()
        return super().format_help()


def parser(params_path: str = "params.yaml") -> argparse.ArgumentParser:
    top = HelpParser(
        prog="mlproject",
        description="A text-generation pipeline. Each stage reads params.yaml; "
        "`dvc repro` runs them in order; `python -m flows.training` runs them as a Prefect flow.",
    )
    subs = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    raw = raw_params(params_path)
    for stage in STAGES:
        sub = subs.add_parser(
            stage,
            help=SUMMARIES[stage],
            description=SUMMARIES[stage],
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.epilog_of = functools.partial(section_help, stage, raw, params_path)
        sub.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        if stage == "train":
            sub.add_argument(
                "--stop-after-epoch",
                type=int,
                default=None,
                metavar="N",
                help="stop after epoch N (a later run resumes from its checkpoint)",
            )
        if stage == "register":
            sub.add_argument(
                "--run",
                metavar="ID",
                help="instead: register training run ID (a sweep's trial, say) and put it through promotion, "
                "its stages restored from the DVC remote in a workspace of their own",
            )
        if stage == "promote":
            sub.add_argument(
                "--rescore-champion",
                action="store_true",
                help="score the champion again on the validation text under the current "
                "rule, even where a figure of it on that text is recorded",
            )
    for name, text in [
        ("summary", "print where the last run's results are and how to open the UIs"),
        (
            "compare",
            "a table of the registered versions (kind, figures, training time, "
            "the params that differ, data, commit) and a plot of their validation-loss "
            "curves (params section 'compare')",
        ),
        (
            "serve",
            "a web page to write with the champion, the challenger or any "
            "version, one or two side by side (params section 'serve'; Ctrl-C stops it)",
        ),
    ]:
        sub = subs.add_parser(name, help=text, description=text, formatter_class=argparse.RawDescriptionHelpFormatter)
        if name in SECTION_OF:
            sub.epilog_of = functools.partial(section_help, name, raw, params_path)
        if name == "compare":
            sub.add_argument(
                "--sweep",
                metavar="NAME",
                help="instead: the trials of sweep NAME's newest run, ranked (mlproject sweep)",
            )
        sub.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    text = (
        "search for the best model: run the trials of a sweep file (sweeps/NAME.yaml: what to vary, "
        "the search, the budget, how many side by side), each a pipeline run in a workspace of its "
        "own, then register the best and put it through the promotion gate. Killed, it resumes "
        "where it was when started again."
    )
    sub = subs.add_parser(
        "sweep", help="run a sweep of trials (sweeps/NAME.yaml) and promote the best", description=text
    )
    sub.add_argument("name", help="a sweep in --sweeps (char-rnn-size, kinds), or a sweep file")
    sub.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub.add_argument("--sweeps", default="sweeps", help="folder of sweep files (default: sweeps)")
    sub.add_argument(
        "--storage",
        default=None,
        help="the Optuna study's database (default: MLPROJECT_SWEEP_STORAGE, which the team's servers set, "
        "else sqlite:///sweeps.db)",
    )
    sub.add_argument(
        "--parallelism", type=int, default=None, help="trials side by side (default: the sweep file's parallelism)"
    )
    for name, short, text in (
        (
            "approve",
            "let the version awaiting approval become champion",
            "let the version awaiting approval (promote.approval: required) serve: it becomes champion, "
            "and the champion it was compared with challenger; past promote.approval_timeout, or once "
            "another champion came, it stays challenger",
        ),
        (
            "reject",
            "keep the version awaiting approval from serving",
            "keep the version awaiting approval (promote.approval: required) from serving: it stays challenger",
        ),
    ):
        sub = subs.add_parser(name, help=short, description=text)
        sub.add_argument("version", help="the version awaiting approval (mlproject promote names it)")
        sub.add_argument(
            "--by", default=None, help="who answers, recorded on the version (default: the user's login name)"
        )
        sub.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    text = (
        "list the presets of the classic notebook models, or apply one: its keys are written "
        "into params.yaml (comments kept); the other params stay as they are"
    )
    sub = subs.add_parser(
        "preset", help="list or apply a params preset (tf-tutorial, chollet-lstm, ...)", description=text
    )
    sub.add_argument("name", nargs="?", help="preset to apply; leave out to list them")
    sub.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub.add_argument("--presets", default="presets", help="folder of presets (default: presets)")
    return top


# No network here or on many users' machines: keep the libraries from phoning home or chattering.
QUIET_ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
    "GX_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "GRADIO_ANALYTICS_ENABLED": "False",
}


def params_file(argv: list[str] | None) -> str:
    """The --params a command line names, read before the parser is built: its --help shows it."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--params", default="params.yaml")
    return early.parse_known_args(argv)[0].params


COMMANDS = {
    "summary": cmd_summary,
    "compare": cmd_compare,
    "serve": cmd_serve,
    "sweep": cmd_sweep,
    "approve": cmd_approval,
    "reject": cmd_approval,
}


def main(argv: list[str] | None = None) -> int:
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    args = parser(params_file(argv)).parse_args(argv)
    try:
        if args.command == "preset":
            cmd_preset(args)
            return 0
        params = cfg.load_params(args.params)
        if args.command in COMMANDS:
            COMMANDS[args.command](params, args)
        else:
            run_stage(args.command, params, args)
    except (cfg.ConfigError, cfg.StageFailed) as error:
        print(f"mlproject {args.command}: error: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(
            f"mlproject {args.command}: error: {error.filename}: file not found (has the stage before this one run?)",
            file=sys.stderr,
        )
        return 2
    except InterruptedError as error:
        print(f"mlproject {args.command}: {error}; run it again to resume", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
