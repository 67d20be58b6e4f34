"""Typed configuration for every stage, read from params.yaml and validated once at the edge.

Each dataclass is one params.yaml section; each field's metadata carries the help text that the
command line prints, so `mlproject <stage> --help` and params.yaml can never disagree.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mlproject.models import WANT_A_GPU
from mlproject.models.settings import Training, for_kind, moved_key
from mlproject.param_rules import ConfigError, check_value, describe, param, parse_section, same_as  # noqa: F401

# Stages (comma-separated) a workspace may only restore from the DVC remote: run, they fail at once
# (`mlproject register --run` rebuilds a run from what it made, never training it again).
RESTORE_ONLY = "MLPROJECT_RESTORE_ONLY"


class StageFailed(RuntimeError):
    """A stage that cannot go on for a reason its one-line message explains (a rejected corpus,
    too many failed URLs); the command line prints it and exits 2."""


@dataclass(frozen=True)
class Paths:
    raw_documents: str = param("data/raw/documents.jsonl", "scraped documents, one JSON per line")
    scrape_report: str = param("reports/scrape.json", "what each source and each URL gave")
    http_cache: str = param("data/http_cache", "fetched pages with their ETag and Last-Modified")
    accepted_documents: str = param("data/validated/documents.jsonl", "documents that passed validation")
    rejected_documents: str = param("data/rejected/documents.jsonl", "documents that failed, with reasons")
    validation_report: str = param("reports/validation.json", "counts per expectation (a DVC metric)")
    data_docs: str = param("reports/data_docs", "Great Expectations Data Docs (HTML)")
    tokens: str = param("data/tokens", "vocabulary, training ids and validation text")
    word_ngrams: str = param(
        "data/word_8grams.npy", "the training text's word 8-grams, hashed: evaluate checks samples for copying"
    )
    model_dir: str = param("models", "the trained model, its checkpoints and the MLflow run id")
    training_plot: str = param("reports/training.csv", "loss and validation loss per epoch (DVC plot)")
    metrics: str = param("reports/metrics.json", "validation totals, perplexity, bits per char and byte")
    samples: str = param("reports/samples.jsonl", "sample generations at a few temperatures")
    document_scores: str = param(
        "reports/document_scores.json", "what each validation document cost the model (promotion pairs them up)"
    )
    registered: str = param("reports/registered.json", "the registered model version")
    promotion: str = param("reports/promotion.json", "the promotion decision and both figures")
    generations: str = param("outputs/generations.jsonl", "batch generations from the champion")
    batch_generations: str = param(
        "outputs/batch/generations.jsonl", "the generation flow's output, fanned out over Dask, in prompt order"
    )

    def under(self, root: str | Path) -> "Paths":
        """The same layout below `root` (tests and benchmarks work in a temporary folder)."""
        return Paths(**{f.name: str(Path(root) / getattr(self, f.name)) for f in dataclasses.fields(self)})

    @property
    def model(self) -> Path:
        """The trained model's folder, in the form every kind saves and loads."""
        return Path(self.model_dir) / "model"

    @property
    def checkpoints(self) -> Path:
        return Path(self.model_dir) / "checkpoints"

    @property
    def training_run(self) -> Path:
        """The MLflow run the model was trained in, for register to log into."""
        return Path(self.model_dir) / "run.json"


@dataclass(frozen=True)
class MlflowConfig:
    tracking_uri: str = param("sqlite:///mlflow.db", "MLflow store; MLFLOW_TRACKING_URI overrides it")
    experiment: str = param("text-generation", "MLflow experiment name")
    model_name: str = param("text-generator", "registered model name")


@dataclass(frozen=True)
class Source:
    name: str = param("", "a short name recorded on every document")
    kind: str = param(
        "files",
        "files: local files or folders; url: one file by URL; gutenberg: a "
        "Project Gutenberg book (licence header and footer stripped); crawl: pages "
        "reached from seeds",
        ("files", "url", "gutenberg", "crawl"),
    )
    location: str = param(
        "", "files: a path or file:// URL; url: the URL; gutenberg: a book id or URL; crawl: unused (see seeds)"
    )
    format: str = param(
        "fortunes",
        "how a text file splits into documents: fortunes: by lines "
        "holding only '%'; paragraphs: by blank lines; text: the whole file; jsonl: "
        "one JSON object with a 'text' key per line (HTML pages are one document each)",
        ("fortunes", "paragraphs", "text", "jsonl"),
    )
    include: list = param(["*"], "glob patterns (relative to a folder) of files to read")
    exclude: list = param([], "glob patterns of files to skip")
    licence: str = param("unknown", "licence note recorded on every document")
    seeds: list = param([], "crawl: the URLs the crawl starts from")
    allowed_domains: list = param([], "crawl: hosts the crawl may visit; empty means the seeds' hosts")
    follow: list = param(
        [], "crawl: regular expressions; a link is followed if it matches one (empty: every link on an allowed host)"
    )
    max_pages: int = param(100, "crawl: most pages fetched", minimum=1)
    max_depth: int = param(2, "crawl: most links followed from a seed", minimum=0)
    selector: str = param(
        "",
        "crawl and url: CSS selector of the text to keep; empty means the "
        "page's main content (mlproject/data/extract.py) without navigation",
    )
    headers_from_env: dict = param(
        {},
        "HTTP header -> name of the environment variable holding "
        "its value (API tokens stay out of params, logs and reports)",
    )


@dataclass(frozen=True)
class HttpConfig:
    user_agent: str = param(
        "mlproject-scraper/0.1 (text-generation corpus builder)", "User-Agent sent, and matched against robots.txt"
    )
    delay_seconds: float = param(
        1.0, "least time between two requests to one host (robots.txt Crawl-delay wins when longer)", minimum=0.0
    )
    connect_timeout: float = param(10.0, "seconds to wait for a connection", minimum=0.001)
    read_timeout: float = param(30.0, "seconds to wait for data", minimum=0.001)
    max_retries: int = param(3, "retries after a timeout, connection error, 429 or 5xx", minimum=0)
    backoff_seconds: float = param(1.0, "first retry wait, doubled each retry (Retry-After wins)", minimum=0.0)
    max_retry_after: float = param(120.0, "longest wait honoured for one retry", minimum=0.0)
    max_redirects: int = param(5, "redirects followed per URL", minimum=0)
    max_bytes: int = param(20_000_000, "largest response body accepted", minimum=1)
    content_types: list = param(["text/html", "application/xhtml+xml", "text/plain"], "content types accepted")
    max_failed_share: float = param(
        0.2, "the stage fails when more than this share of URLs failed", minimum=0.0, maximum=1.0
    )


@dataclass(frozen=True)
class ScrapeConfig:
    sources: list = param(
        [], "list of sources, each with name, kind, location, format, include, exclude, licence (and the crawl keys)"
    )
    # A mapping in params.yaml, an HttpConfig once validated.
    http: dict = field(
        default=HttpConfig(), metadata={"help": "politeness and limits of every HTTP request (see below)"}
    )


@dataclass(frozen=True)
class ValidateConfig:
    min_chars: int = param(2, "shortest document kept, in characters", minimum=1)
    max_chars: int = param(5000, "longest document kept, in characters", minimum=1)
    min_documents: int = param(10, "fewest accepted documents that can train a model", minimum=1)
    min_corpus_chars: int = param(2000, "fewest accepted characters that can train a model", minimum=1)
    max_markup_per_1000_chars: float = param(
        0.5,
        "HTML tags or entities per 1,000 characters above "
        "which a document is rejected as markup residue (a "
        "manual that shows a few as text is kept)",
        minimum=0.0,
    )
    language: str | list = param(
        "es",
        "the corpus language, or a list of them, as ISO 639 codes "
        "(es, en, fr...): documents identified as another language are "
        "rejected (and, for es and en, those mostly outside its alphabet); "
        "any turns both checks off",
    )
    language_min_chars: int = param(
        100,
        "documents shorter than this are judged by the alphabet "
        "check alone: language identification is unreliable on a few "
        "words",
        minimum=1,
    )
    language_min_confidence: float = param(
        0.7,
        "a document is rejected when identified as another language with at least this probability",
        minimum=0.0,
        maximum=1.0,
    )
    max_foreign_share: float = param(
        0.1,
        "largest share of a document's characters outside the language's alphabet, digits and punctuation",
        minimum=0.0,
        maximum=1.0,
    )
    max_duplicate_share: float = param(
        0.5, "the corpus fails when more than this share of its documents are duplicates", minimum=0.0, maximum=1.0
    )

    @property
    def languages(self) -> list:
        """The expected languages; empty when any language goes."""
        codes = [self.language] if isinstance(self.language, str) else list(self.language)
        return [] if "any" in codes else codes


@dataclass(frozen=True)
class TokenizeConfig:
    level: str = param(
        "char",
        "char: one token per character; word: words, punctuation and whitespace runs (lossless)",
        ("char", "word"),
    )
    validation_fraction: float = param(
        0.1, "share of documents held out, chosen by a hash of the document text", minimum=0.0, maximum=0.9
    )
    document_separator: str = param("\n\n", "text put between documents")
    max_vocab: int = param(20000, "largest vocabulary; rarer tokens become <unk>", minimum=2)
    min_count: int = param(1, "fewest occurrences for a token to enter the vocabulary", minimum=1)


@dataclass(frozen=True)
class TrainConfig(Training):
    """Section `train`: the settings every kind shares (models/settings.py), where a deployed run
    trains, and one section per kind, read and checked by the kind's own dataclass (`settings`)."""

    runner: str = param(
        "auto",
        "where a deployed training flow runs train and evaluate: gpu, the GPU work "
        f"pool (a run fails when none is deployed); cpu, the CPU pool with the other stages; "
        f"auto, gpu for {' and '.join(WANT_A_GPU)} when a GPU pool has a worker, else cpu. "
        "dvc repro and make flow run every stage where they are",
        ("auto", "cpu", "gpu"),
    )
    rnn: dict = param({}, "the settings of kind rnn (mlproject/models/keras_rnn/settings.py)")
    window_rnn: dict = param({}, "the settings of kind window_rnn (mlproject/models/keras_rnn/settings.py)")
    finetune: dict = param({}, "the settings of kind finetune (mlproject/models/transformers_lm/settings.py)")
    gpt: dict = param({}, "the settings of kind gpt (mlproject/models/transformers_lm/settings.py)")

    def settings(self) -> Training:
        """The chosen kind's whole settings (shared and its own), checked; only the stages that
        train, score or register a model ask, so only they import the kind's settings."""
        return for_kind(self, getattr(self, self.kind))

    def logged(self) -> dict:
        """What a training run records: the kind's settings under the same flat names for every kind
        (so MLflow's compare view lines runs up), and the runner."""
        return {**dataclasses.asdict(self.settings()), "runner": self.runner}


@dataclass(frozen=True)
class EvaluateConfig:
    streams: int = param(32, "parallel contiguous streams the validation text is scored in", minimum=1)
    chunk_length: int = param(256, "tokens scored per call, state carried across calls", minimum=1)
    window: int = param(512, "transformers kinds: tokens of context per scoring window", minimum=2)
    stride: int = param(
        256,
        "transformers kinds: tokens the window moves by; each token is scored "
        "once, with at least window - stride tokens of context",
        minimum=1,
    )
    sample_prompts: list = param(["El ", "Quien "], "prompts for the sample generations")
    temperatures: list = param([0.5, 1.0], "sampling temperatures of the samples")
    sample_length: int = param(200, "tokens generated per sample", minimum=1)


@dataclass(frozen=True)
class PromoteConfig:
    min_improvement_bpb: float = param(
        0.0,
        "bits per byte the candidate must beat the champion by, beyond doubt: the whole interval of "
        "the difference must lie below minus this",
        minimum=0.0,
    )
    confidence: float = param(
        0.95,
        "how sure the interval of the difference (candidate minus champion, a paired bootstrap over "
        "the validation documents) is",
        minimum=0.5,
        maximum=0.999,
    )
    bootstrap_resamples: int = param(
        2000, "resamples of the validation documents the interval is drawn from", minimum=100, maximum=1_000_000
    )
    max_copy_share: float = param(
        1.0,
        "a candidate whose samples copy a larger share of their word 8-grams verbatim from the training "
        "text is refused (1.0: never)",
        minimum=0.0,
        maximum=1.0,
    )
    max_repeat_share: float = param(
        1.0,
        "a candidate whose samples repeat a longer span of themselves, as a share of their length "
        "(averaged), is refused (1.0: never)",
        minimum=0.0,
        maximum=1.0,
    )
    approval: str = param(
        "none",
        "none: a candidate better beyond doubt becomes champion at once; required: it awaits a person's "
        "approval (the form of the paused flow run in the Prefect UI, or mlproject approve|reject VERSION)",
        choices=("none", "required"),
    )
    approval_timeout: str = param(
        "24h",
        "how long a candidate awaits approval before it stays challenger: a whole number and a unit "
        "(s, m, h or d: 30m, 24h, 7d)",
    )

    @property
    def approval_seconds(self) -> int:
        return duration_seconds(self.approval_timeout, "promote.approval_timeout")


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration_seconds(text: str, key: str) -> int:
    """`30m`, `24h`, `7d` in seconds; one line naming `key` otherwise."""
    match = re.fullmatch(r"([1-9][0-9]*)([smhd])", text.strip()) if isinstance(text, str) else None
    if not match:
        raise ConfigError(f"{key} = {text!r}: expected a duration, a whole number and a unit: s, m, h or d (24h)")
    return int(match.group(1)) * DURATION_UNITS[match.group(2)]


@dataclass(frozen=True)
class Sampling:
    """How a model continues a prompt; the command line, the pyfunc and any server built on it
    check a request against these rules (`checked`). The same prompt, settings and seed give the
    same text."""

    max_length: int = param(
        200, "new tokens per prompt (characters, or words at word level)", minimum=1, maximum=100_000
    )
    temperature: float = param(
        1.0, "softmax temperature; lower is more conservative; 0: greedy, always the likeliest token", minimum=0.0
    )
    top_k: int = param(0, "sample among the k likeliest tokens; 0 means all", minimum=0)
    top_p: float = param(
        1.0, "sample among the likeliest tokens whose mass reaches p; 1 means all", above=0.0, maximum=1.0
    )
    seed: int = param(0, "seed of the sampling", minimum=0)

    @classmethod
    def checked(cls, values: dict, prefix: str = "params") -> "Sampling":
        """Settings from a request's values (NumPy scalars accepted), naming the first bad one."""
        plain = {key: value.item() if hasattr(value, "item") else value for key, value in values.items()}
        return parse_section(cls, plain, prefix)


def checked_prompts(prompts) -> list[str]:
    """The prompts of a request; a missing or non-text prompt is refused, naming its row."""
    checked = list(prompts)
    for row, prompt in enumerate(checked):
        if not isinstance(prompt, str):
            raise ConfigError(f"prompt {row} = {prompt!r}: expected text (an empty string is a prompt)")
    if not checked:
        raise ConfigError("prompt: expected at least one prompt")
    return checked


@dataclass(frozen=True)
class GenerateConfig:
    prompts_file: str = param("prompts/default.txt", "one prompt per line")
    max_length: int = same_as(Sampling, "max_length", 200)
    temperature: float = same_as(Sampling, "temperature", 0.8)
    top_k: int = same_as(Sampling, "top_k", 0)
    top_p: float = same_as(Sampling, "top_p", 1.0)


@dataclass(frozen=True)
class ServeConfig:
    host: str = param("127.0.0.1", "address the web page listens on; 0.0.0.0 opens it to your network")
    port: int = param(7860, "port of the web page", minimum=1, maximum=65535)
    max_length_limit: int = param(
        1000, "the longest generation a visitor may ask for, in tokens", minimum=1, maximum=100_000
    )
    cached_versions: int = param(
        4, "loaded model versions kept in memory; the least recently used one is dropped first", minimum=1
    )


@dataclass(frozen=True)
class CompareConfig:
    output: str = param("reports/comparison", "where `mlproject compare` writes its plot: OUTPUT.png and OUTPUT.html")
    max_versions: int = param(20, "the newest versions compared", minimum=1)


SECTIONS = {
    "paths": Paths,
    "mlflow": MlflowConfig,
    "scrape": ScrapeConfig,
    "validate": ValidateConfig,
    "tokenize": TokenizeConfig,
    "train": TrainConfig,
    "evaluate": EvaluateConfig,
    "promote": PromoteConfig,
    "generate": GenerateConfig,
    "serve": ServeConfig,
    "compare": CompareConfig,
}


@dataclass(frozen=True)
class Params:
    seed: int
    paths: Paths
    mlflow: MlflowConfig
    scrape: ScrapeConfig
    validate: ValidateConfig
    tokenize: TokenizeConfig
    train: TrainConfig
    evaluate: EvaluateConfig
    promote: PromoteConfig
    generate: GenerateConfig
    serve: ServeConfig
    compare: CompareConfig


def _check_sources(scrape: ScrapeConfig) -> ScrapeConfig:
    sources = [parse_section(Source, s, f"scrape.sources[{i}]") for i, s in enumerate(scrape.sources)]
    for i, source in enumerate(sources):
        if not source.name:
            raise ConfigError(f"scrape.sources[{i}].name: expected a non-empty name")
        if source.kind == "crawl" and not source.seeds:
            raise ConfigError(f"scrape.sources[{i}].seeds: expected at least one seed URL for kind crawl")
        if source.kind != "crawl" and not source.location:
            raise ConfigError(f"scrape.sources[{i}].location: expected a path, URL or book id for kind {source.kind}")
        if source.selector:
            import soupsieve

            try:
                soupsieve.compile(source.selector)
            except soupsieve.SelectorSyntaxError as error:
                raise ConfigError(
                    f"scrape.sources[{i}].selector = {source.selector!r}: not a CSS "
                    f"selector ({str(error).splitlines()[0]})"
                ) from None
        for j, pattern in enumerate(source.follow):
            try:
                re.compile(pattern)
            except re.error as error:
                raise ConfigError(
                    f"scrape.sources[{i}].follow[{j}] = {pattern!r}: not a regular expression ({error})"
                ) from None
    if not sources:
        raise ConfigError("scrape.sources: expected at least one source")
    if len({s.name for s in sources}) != len(sources):
        raise ConfigError("scrape.sources: expected each source name once")
    http = scrape.http if isinstance(scrape.http, HttpConfig) else parse_section(HttpConfig, scrape.http, "scrape.http")
    return dataclasses.replace(scrape, sources=sources, http=http)


def _check_consistency(params: Params) -> None:
    if params.evaluate.stride >= params.evaluate.window:
        raise ConfigError(
            f"evaluate.stride = {params.evaluate.stride}: expected a value < "
            f"evaluate.window ({params.evaluate.window}), so that each scored token "
            "has context"
        )
    if params.validate.min_chars > params.validate.max_chars:
        raise ConfigError(
            f"validate.min_chars = {params.validate.min_chars}: expected a value <= "
            f"validate.max_chars ({params.validate.max_chars})"
        )
    language = params.validate.language
    codes = [language] if isinstance(language, str) else language
    if not codes or not all(isinstance(code, str) and re.fullmatch(r"[a-z]{2,3}|any", code) for code in codes):
        raise ConfigError(
            f"validate.language = {params.validate.language!r}: expected an ISO 639 "
            "code (es, en, fr...), a list of them, or any"
        )
    duration_seconds(params.promote.approval_timeout, "promote.approval_timeout")  # one line at load
    if not params.evaluate.temperatures:
        raise ConfigError("evaluate.temperatures = []: expected at least one temperature")
    for index, temperature in enumerate(params.evaluate.temperatures):
        check_value(Sampling, "temperature", temperature, f"evaluate.temperatures[{index}]")


def check_train_keys(train) -> None:
    """A `train` key of the flat layout before each kind had its section is named with its new place."""
    if not isinstance(train, dict):
        return
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in train:
        moved = None if key in known else moved_key(key, train.get("kind", "rnn"))
        if moved:
            raise ConfigError(moved)


def params_from_dict(raw) -> Params:
    if not isinstance(raw, dict):
        raise ConfigError("params: expected a mapping at the top level")
    unknown = set(raw) - set(SECTIONS) - {"seed"}
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown params section; known: seed, {', '.join(SECTIONS)}")
    seed = raw.get("seed", 1234)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed = {seed!r}: expected an integer >= 0")
    check_train_keys(raw.get("train"))
    sections = {name: parse_section(cls, raw.get(name), name) for name, cls in SECTIONS.items()}
    sections["scrape"] = _check_sources(sections["scrape"])
    params = Params(seed=seed, **sections)
    _check_consistency(params)
    return params


def load_params(path: str | Path = "params.yaml") -> Params:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{path}{where}: not valid YAML ({problem})") from None
    return params_from_dict(raw)
