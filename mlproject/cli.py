"""The command line: one subcommand per pipeline stage, the same commands dvc.yaml runs.

Each subcommand reads params.yaml, validates it into typed config, and calls one library function.
Bad input ends with a one-line error naming the key or file, and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import dataclasses
import os
import sys
from pathlib import Path

from mlproject import config as cfg
from mlproject.fileio import read_json, write_json

STAGES = ["scrape", "validate", "tokenize", "train", "evaluate", "register", "promote", "generate"]


def cmd_scrape(params: cfg.Params, args) -> None:
    from mlproject.scrape import scrape

    p = params.paths
    report = scrape(params.scrape, p.raw_documents, p.scrape_report, p.http_cache)
    urls = ", ".join(f"{n} {outcome}" for outcome, n in report["urls"].items())
    print(f"scrape: {report['documents']} documents, {report['characters']} characters from "
          f"{len(report['sources'])} source(s){f' (URLs: {urls})' if urls else ''}, "
          f"{len(report['duplicates'])} duplicates dropped -> {p.raw_documents}; report {p.scrape_report}")


def cmd_validate(params: cfg.Params, args) -> None:
    from mlproject.validate import validate

    p = params.paths
    report = validate(params.validate, p.raw_documents, p.accepted_documents, p.rejected_documents,
                      p.validation_report, p.data_docs)
    print(f"validate: {report['accepted']} accepted, {report['rejected']} rejected "
          f"{report['rejected_by_reason'] or ''} -> {p.accepted_documents}; Data Docs: "
          f"{Path(p.data_docs) / 'index.html'}")


def cmd_tokenize(params: cfg.Params, args) -> None:
    from mlproject.tokens import tokenize

    summary = tokenize(params.tokenize, params.paths.accepted_documents, params.paths.tokens)
    print(f"tokenize: {summary['level']} vocabulary of {summary['vocabulary']}, "
          f"{summary['training_tokens']} training tokens, {summary['validation_characters']} "
          f"validation characters ({summary['validation_documents']} documents) -> {params.paths.tokens}")


def cmd_train(params: cfg.Params, args) -> None:
    import mlflow

    from mlproject.registry import connect
    from mlproject.train import resumable_run_id, train

    p = params.paths
    connect(params.mlflow)
    previous = resumable_run_id(params.train, params.seed, p.tokens, p.model_dir)
    with mlflow.start_run(run_id=previous) as run:
        if previous is None:
            mlflow.log_params({"seed": params.seed, "tokenize.level": params.tokenize.level,
                               **{f"train.{k}": v for k, v in dataclasses.asdict(params.train).items()}})

        def log_epoch(record: dict) -> None:
            mlflow.log_metrics({k: v for k, v in record.items() if k != "epoch"}, step=record["epoch"])

        result = train(params.train, params.seed, p.tokens, p.model_dir, p.training_plot,
                       on_epoch=log_epoch, run_id=run.info.run_id, stop_after=args.stop_after_epoch)
        mlflow.log_metric("parameters", result["parameters"])
    write_json(Path(p.model_dir) / "run.json", {"run_id": run.info.run_id})
    last = result["history"][-1]
    print(f"train: {result['parameters']} parameters, {last['epoch']} epochs, loss {last['loss']:.4f}, "
          f"val_loss {last.get('val_loss', float('nan')):.4f} -> {Path(p.model_dir) / 'model'}")


def cmd_evaluate(params: cfg.Params, args) -> None:
    from mlproject.evaluate import evaluate

    p = params.paths
    metrics, samples = evaluate(params.evaluate, params.seed, p.model_dir, p.tokens, p.metrics, p.samples)
    print(f"evaluate: {metrics['bits_per_character']:.4f} bits per character, "
          f"{metrics['bits_per_byte']:.4f} bits per byte, perplexity {metrics['perplexity']:.3f} "
          f"per {metrics['level']} over {metrics['characters']} characters -> {p.metrics}")
    for sample in samples:
        print(f"  T={sample['temperature']}: {(sample['prompt'] + sample['text'])[:100]!r}")


def cmd_register(params: cfg.Params, args) -> None:
    import yaml

    from mlproject.registry import connect, register

    p = params.paths
    connect(params.mlflow)
    run_id = read_json(Path(p.model_dir) / "run.json")["run_id"]
    raw = yaml.safe_load(Path(args.params).read_text(encoding="utf-8"))
    record = register(params.mlflow, run_id, p.model_dir, p.tokens, p.metrics, p.samples, raw,
                      p.registered)
    print(f"register: {record['model_uri']} (run {run_id}, commit {record['git_commit'][:10]})")


def cmd_promote(params: cfg.Params, args) -> None:
    from mlproject.registry import connect, promote

    p = params.paths
    connect(params.mlflow)
    report = promote(params.promote, params.mlflow, params.evaluate, p.registered, p.metrics,
                     p.tokens, p.promotion)
    champion = report["champion_bits_per_byte"]
    print(f"promote: version {report['candidate_version']} -> {report['decision']} "
          f"({report['candidate_bits_per_byte']:.4f} bits per byte vs champion "
          f"{'none' if champion is None else f'{champion:.4f}'}): {report['reason']}")


def cmd_generate(params: cfg.Params, args) -> None:
    from mlproject.generate import generate, read_prompts
    from mlproject.registry import connect

    prompts = read_prompts(params.generate.prompts_file)  # bad prompts fail before any work
    connect(params.mlflow)
    rows = generate(prompts, params.generate, params.mlflow.model_name, params.seed,
                    params.paths.generations)
    print(f"generate: {len(rows)} texts from {params.mlflow.model_name}@champion "
          f"(version {rows[0]['model_version']}) -> {params.paths.generations}")
    for row in rows[:3]:
        print(f"  {(row['prompt'] + row['text'])[:120]!r}")


def cmd_summary(params: cfg.Params, args) -> None:
    """Where the results of the last run are, and how to look at them."""
    p = params.paths
    metrics = read_json(p.metrics) if Path(p.metrics).is_file() else {}
    promotion = read_json(p.promotion) if Path(p.promotion).is_file() else {}
    uri = params.mlflow.tracking_uri
    print("\nPipeline finished.")
    print(f"  champion model:   models:/{params.mlflow.model_name}@champion "
          f"(version {promotion.get('champion_now', '?')}; this run: {promotion.get('decision', '?')})")
    if metrics:
        print(f"  metrics:          {p.metrics} ({metrics['bits_per_character']:.4f} bits per "
              f"character, {metrics['bits_per_byte']:.4f} bits per byte on validation)")
    print(f"  generated text:   {p.generations}")
    print(f"  validation docs:  {Path(p.data_docs) / 'index.html'}")
    print("Open the UIs on this run's data:")
    print(f"  .venv/bin/mlflow ui --backend-store-uri {uri} --port 5000")
    print("  PREFECT_HOME=.prefect .venv/bin/prefect server start   (flow runs of `make flow`)")


def merge_into(target, values, prefix: str, changed: list[str]) -> None:
    """Write `values` into the mapping `target`: nested mappings merge key by key, the rest replace."""
    for key, value in values.items():
        current = target.get(key)
        if isinstance(value, dict) and isinstance(current, dict):
            merge_into(current, value, f"{prefix}{key}.", changed)
            continue
        if current != value:
            changed.append(f"{prefix}{key}: {json.dumps(current, ensure_ascii=False)} -> "
                           f"{json.dumps(value, ensure_ascii=False)}")
        target[key] = value


def apply_preset(params_path: Path, preset_path: Path) -> list[str]:
    """Merge a preset's keys into params.yaml, keeping its comments; validate before writing."""
    import io

    import yaml as plain_yaml
    from ruamel.yaml import YAML

    from mlproject.fileio import write_text

    if not preset_path.is_file():
        available = ", ".join(sorted(p.stem for p in preset_path.parent.glob("*.yaml"))) or "none"
        raise cfg.ConfigError(f"{preset_path.stem}: no such preset in {preset_path.parent}/; "
                              f"available: {available}")
    yaml = YAML()
    yaml.preserve_quotes = True  # a URL in a flow sequence needs its quotes to stay YAML
    yaml.indent(mapping=2, sequence=4, offset=2)
    document = yaml.load(params_path.read_text(encoding="utf-8"))
    changed: list[str] = []
    merge_into(document, yaml.load(preset_path.read_text(encoding="utf-8")) or {}, "", changed)
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    # Validate the text exactly as DVC and the stages will read it; a bad preset never lands.
    cfg.params_from_dict(plain_yaml.safe_load(buffer.getvalue()))
    write_text(params_path, buffer.getvalue())
    return changed


def cmd_preset(args) -> None:
    presets = Path(args.presets)
    if not args.name:
        for path in sorted(presets.glob("*.yaml")):
            first = path.read_text(encoding="utf-8").splitlines()[0].lstrip("# ")
            print(f"  {path.stem:16} {first}")
        return
    changed = apply_preset(Path(args.params), presets / f"{args.name}.yaml")
    print(f"preset {args.name}: {len(changed)} param(s) changed in {args.params}")
    for line in changed:
        print(f"  {line}")
    print("Run `make run` (or `dvc repro`): DVC reruns only the stages whose params changed.")


SECTION_OF = {"scrape": [cfg.ScrapeConfig, cfg.Source, cfg.HttpConfig], "validate": [cfg.ValidateConfig],
              "tokenize": [cfg.TokenizeConfig], "train": [cfg.TrainConfig],
              "evaluate": [cfg.EvaluateConfig], "register": [cfg.MlflowConfig],
              "promote": [cfg.PromoteConfig], "generate": [cfg.GenerateConfig]}
SUMMARIES = {
    "scrape": "collect documents from the sources in params into a JSONL with provenance",
    "validate": "run the Great Expectations suite: accepted and rejected documents, report, Data Docs",
    "tokenize": "build the vocabulary and split training and validation text by document hash",
    "train": "train the Keras recurrent model; resumes from the last epoch's checkpoint",
    "evaluate": "perplexity, bits per character and per byte on the validation text; samples",
    "register": "log the model to MLflow as a pyfunc with lineage; register a new version",
    "promote": "move alias champion to the new version only if it beats the champion",
    "generate": "batch generation from models:/<name>@champion for the prompts file",
}
COMMANDS = {**{s: globals()[f"cmd_{s}"] for s in STAGES}, "summary": cmd_summary}


def section_help(stage: str) -> str:
    classes = SECTION_OF[stage]
    name = {cfg.MlflowConfig: "mlflow"}.get(classes[0], stage)
    text = f"params.yaml section '{name}' (also reads 'seed' and 'paths'):\n{cfg.describe(classes[0])}"
    if len(classes) > 1:
        text += f"\n\neach entry of scrape.sources:\n{cfg.describe(classes[1])}"
        text += f"\n\nscrape.http:\n{cfg.describe(classes[2])}"
    return text


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="mlproject", description="A text-generation pipeline. Each stage reads params.yaml; "
        "`dvc repro` runs them in order; `python -m flows.training` runs them as a Prefect flow.")
    subs = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for stage in STAGES:
        sub = subs.add_parser(stage, help=SUMMARIES[stage], description=SUMMARIES[stage],
                              epilog=section_help(stage), formatter_class=argparse.RawDescriptionHelpFormatter)
        sub.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
        if stage == "train":
            sub.add_argument("--stop-after-epoch", type=int, default=None, metavar="N",
                             help="stop after epoch N (a later run resumes from its checkpoint)")
    for name, text in [("summary", "print where the last run's results are and how to open the UIs")]:
        sub = subs.add_parser(name, help=text, description=text)
        sub.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    text = ("list the presets of the classic notebook models, or apply one: its keys are written "
            "into params.yaml (comments kept); the other params stay as they are")
    sub = subs.add_parser("preset", help="list or apply a params preset (tf-tutorial, chollet-lstm, ...)",
                          description=text)
    sub.add_argument("name", nargs="?", help="preset to apply; leave out to list them")
    sub.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    sub.add_argument("--presets", default="presets", help="folder of presets (default: presets)")
    return top


# No network here or on many users' machines: keep the libraries from phoning home or chattering.
QUIET_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_DISABLE_TELEMETRY": "true",
                     "DO_NOT_TRACK": "1", "GX_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1",
                     "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "HF_HUB_OFFLINE": "1"}


def main(argv: list[str] | None = None) -> int:
    for key, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    args = parser().parse_args(argv)
    from mlproject.cpu import use_onednn

    use_onednn(training=args.command == "train")  # before anything imports TensorFlow
    from mlproject.scrape import ScrapeFailed
    from mlproject.validate import CorpusRejected

    try:
        if args.command == "preset":
            cmd_preset(args)
            return 0
        params = cfg.load_params(args.params)
        COMMANDS[args.command](params, args)
    except (cfg.ConfigError, CorpusRejected, ScrapeFailed) as error:
        print(f"mlproject {args.command}: error: {error}", file=sys.stderr)
        return 2
    except FileNotFoundError as error:
        print(f"mlproject {args.command}: error: {error.filename}: file not found "
              f"(has the stage before this one run?)", file=sys.stderr)
        return 2
    except InterruptedError as error:
        print(f"mlproject {args.command}: {error}; run it again to resume", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
