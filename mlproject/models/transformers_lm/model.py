"""What the transformers kinds share once trained: a PyTorch causal LM and its tokenizer, scored by
a strided sliding window and sampled in left-padded batches.

A text is always read after the document separator's tokens (as every document in training
follows one), so its first token has context too and every token of it is scored.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from mlproject.config import EvaluateConfig, Paths
from mlproject.models import noise
from mlproject.models.interface import LanguageModel, Sampling, Totals, TrainingResult
from mlproject.models.transformers_lm.progress import progress_bar
from mlproject.models.transformers_lm.settings import TransformersTraining

DETAILS_FILE = "details.json"


class CausalLM(LanguageModel):
    """A transformers causal LM saved as safetensors with its tokenizer; subclasses say how the
    network and tokenizer start out (`initial`)."""

    # The precision generation runs in: None lets the hardware decide (generation_precision).
    generation_precision: str | None = None

    def __init__(self, network, tokenizer, separator: str, details: dict):
        self.network, self.tokenizer, self.separator, self.details = network, tokenizer, separator, details
        self.baseline = details.get("baseline")

    @functools.cached_property
    def writer(self):
        """The network generation runs: a bf16 copy where the hardware computes in bf16, else the
        fp32 network, on the CPU with its linear layers packed for oneDNN (fast_cpu.py). Scoring
        always reads the fp32 network as loaded, so the figures promotion compares never depend on
        the machine."""
        import torch

        if (self.generation_precision or generation_precision()) == "fp32":
            if self.network.device.type != "cpu":
                return self.network
            from mlproject.models.transformers_lm.fast_cpu import packed_copy

            return packed_copy(self.network)
        return copy.deepcopy(self.network).to(torch.bfloat16).eval()

    @property
    def token_level(self) -> str:
        return "subword"

    @property
    def context(self) -> int:
        """The most tokens the network can read at once."""
        config = self.network.config
        return int(getattr(config, "max_position_embeddings", None) or config.n_positions)

    # -- training and persistence ------------------------------------------------------------
    pretrained = False  # whether `initial` already knows a language (then its score is a baseline)

    @classmethod
    def initial(cls, config: TransformersTraining, seed: int, tokens: Path) -> "CausalLM":
        """The model before training on this corpus."""
        raise NotImplementedError

    def trainable(self, network, config: TransformersTraining):
        """The network whose trainable weights the optimizer updates."""
        return network

    def finished(self, network):
        """The trained network in the form `save` writes."""
        return network

    @classmethod
    def train(
        cls,
        config: TransformersTraining,
        seed: int,
        paths: Paths,
        on_epoch=None,
        run_id=None,
        stop_after=None,
        on_step=None,
        scoring=None,
    ) -> TrainingResult:
        from mlproject.models.transformers_lm import training

        return training.train(cls, config, seed, paths, on_epoch, run_id, stop_after, on_step, scoring)

    @classmethod
    def checkpoint_fingerprint(cls, config: TransformersTraining, seed: int, paths: Paths) -> str:
        from mlproject.models.transformers_lm.training import fingerprint

        return fingerprint(config, seed, Path(paths.tokens))

    def save(self, folder: Path) -> None:
        self.network.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        (folder / DETAILS_FILE).write_text(
            json.dumps({**self.details, "separator": self.separator}, indent=2, ensure_ascii=False), encoding="utf-8"
        )

    @classmethod
    def load(cls, folder: Path) -> "CausalLM":
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        details = json.loads((folder / DETAILS_FILE).read_text(encoding="utf-8"))
        # Weights from safetensors only, and only the code that ships with transformers.
        network = AutoModelForCausalLM.from_pretrained(
            folder,
            use_safetensors=True,
            trust_remote_code=False,
            device_map="cuda" if torch.cuda.is_available() else None,
        )
        tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=False)
        network.eval()
        return cls(network, tokenizer, details.pop("separator"), details)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def round_trip(self, text: str) -> str:
        return self.tokenizer.decode(self.encode(text))

    # -- scoring -----------------------------------------------------------------------------
    def score(self, text: str, config: EvaluateConfig, batch_size: int = 8) -> Totals:
        """Summed negative log-likelihood of every token of `text`, each read once by a window of
        `config.window` tokens moved by `config.stride` (the Hugging Face strided perplexity).

        Each window scores the tokens the previous window did not reach, with at least
        window - stride tokens of context before them; the text's first tokens have the separator
        before them. Windows of one length are run in batches.
        """
        import torch

        window, stride = config.window, config.stride
        if window > self.context:  # a small model's context: the same share of it is new each time
            window, stride = self.context, max(1, stride * self.context // window)
        prefix, encoded = (
            self.context_prefix(),
            self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True),
        )
        ids = encoded["input_ids"]
        stream = np.array(prefix + ids, dtype=np.int64)
        spans = scoring_spans(len(stream), len(prefix), window, stride)
        batches = [
            same[first : first + batch_size]
            for length in sorted({end - start for start, end, _ in spans})
            for same in [[span for span in spans if span[1] - span[0] == length]]
            for first in range(0, len(same), batch_size)
        ]
        costs = np.zeros(len(stream), np.float64)  # by position in the stream, the prefix's left at 0
        with torch.inference_mode(), progress_bar(len(spans), "scoring", "window", least=16) as progress:
            for batch in batches:
                self.window_nll(stream, batch, costs)
                progress.update(len(batch))
        scored = sum(count for *_, count in spans)  # the last ones: what the windows reached
        covered = text if scored == len(ids) else self.tokenizer.decode(ids[len(ids) - scored :])
        token_costs = costs[len(stream) - scored :]
        starts = np.array([start for start, _ in encoded["offset_mapping"]], np.int64)[len(ids) - scored :]
        return Totals(
            float(token_costs.sum()),
            scored,
            len(covered),
            len(covered.encode("utf-8")),
            token_costs=token_costs,
            token_starts=starts,
        )

    def window_nll(self, stream: np.ndarray, batch: list[tuple[int, int, int]], costs: np.ndarray) -> None:
        """The NLL of the last `scored` tokens of each window (start, end, scored), into `costs`
        at their positions in `stream`."""
        import torch

        inputs = torch.from_numpy(np.stack([stream[start:end] for start, end, _ in batch])).to(self.network.device)
        keep = max(scored for _, _, scored in batch) + 1  # logits only where they are needed
        logits = self.network(input_ids=inputs, logits_to_keep=keep).logits.float()
        log_probs = torch.log_softmax(logits[:, :-1], dim=-1)
        targets = inputs[:, -keep + 1 :]
        picked = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        for row, (_, end, scored) in enumerate(batch):
            costs[end - scored : end] = -picked[row, picked.shape[1] - scored :].double().cpu().numpy()

    # -- generation --------------------------------------------------------------------------
    def generate(
        self, prompts: list[str], sampling: Sampling, batch_size: int = 64, streamer=None, stop=None
    ) -> list[str]:
        """Continue each prompt; batches are left-padded with an attention mask and use the KV
        cache; a batch gives the same greedy text as one prompt at a time.

        A prompt's trailing space is not fed as a token of its own (BPE tokenizers attach a space
        to the word after it, so a lone space token is rare and derails the model); instead the
        first new token must start with it, and it is not repeated in the continuation.

        Text longer than the network's context is written in pieces of half the context, each
        read after the last tokens of the prompt and text so far that leave it room: a model
        trained on short blocks writes as much as it is asked. The pieces depend only on the
        context and `max_length`, never on the other prompts of the batch.

        `streamer` (one prompt) gets each new token as it is written; writing ends early once the
        threading.Event `stop` is set.
        """
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList
        from transformers.generation import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

        eos, pad = self.special_ids()
        # Greedy search over noisy logits: with Gumbel noise keyed by each prompt (noise.py) the
        # argmax is a draw from the filtered softmax that no other row of the batch changes.
        generation = GenerationConfig(
            max_new_tokens=sampling.max_length, eos_token_id=eos, pad_token_id=pad, use_cache=True, do_sample=False
        )
        warpers = []  # applied after the first-token rule, so that they never leave it nothing to pick
        if sampling.temperature > 0:
            if sampling.temperature != 1:  # dividing by 1 changes no logit: a pass over them saved
                warpers.append(TemperatureLogitsWarper(sampling.temperature))
            if sampling.top_k:
                warpers.append(TopKLogitsWarper(sampling.top_k))
            if sampling.top_p < 1:
                warpers.append(TopPLogitsWarper(sampling.top_p))
        prefix, piece = self.context_prefix(), max(1, self.context // 2)
        stopping = StoppingCriteriaList([StopWhenSet(stop)] if stop is not None else [])
        texts = []
        for start in range(0, len(prompts), batch_size):
            heads, tails = zip(*(self.split_prompt(p) for p in prompts[start : start + batch_size]))
            rows = [prefix + self.encode(head) for head in heads]
            written = [[] for _ in rows]
            device = self.writer.device
            while len(written[0]) < sampling.max_length and not all(eos in w for w in written):
                if stop is not None and stop.is_set():
                    break
                done = len(written[0])  # the same in every row: a row that ended goes on with padding
                count = min(piece, sampling.max_length - done)
                windows = [(row + new)[-(self.context - count) :] for row, new in zip(rows, written)]
                width = max(len(w) for w in windows)
                input_ids = torch.tensor([[pad] * (width - len(w)) + w for w in windows], device=device)
                mask = torch.tensor([[0] * (width - len(w)) + [1] * len(w) for w in windows], device=device)
                first = FirstTokenStartsWith([self.space_led_tokens if t and not done else None for t in tails], width)
                # Keyed by the step of the whole text, not of the piece: the same draws however it is cut.
                drawn = (
                    [GumbelNoise(noise.row_seeds(sampling.seed, prompts[start : start + batch_size]), width - done)]
                    if sampling.temperature > 0
                    else []
                )
                generation.max_new_tokens = count
                with torch.inference_mode():
                    out = self.writer.generate(
                        input_ids=input_ids,
                        attention_mask=mask,
                        generation_config=generation,
                        logits_processor=LogitsProcessorList([first, *warpers, *drawn]),
                        stopping_criteria=stopping,
                        streamer=streamer,
                        **self.kv_cache(len(windows), width + count),
                    )
                for new, row in zip(written, out[:, width:].tolist()):
                    new += row + [pad] * (count - len(row))  # a batch whose rows all ended stops early
            texts.extend(self.continuation(row, tail) for row, tail in zip(written, tails))
        return texts

    def kv_cache(self, rows: int, length: int) -> dict:
        """`generate`'s KV cache for `rows` of `length` tokens: on the CPU a static one of exactly that
        size, allocated once, instead of transformers' default that copies its growing cache at every
        token (benchmarks/optimisations.md). Made here, not by `cache_implementation="static"`, which
        sizes each call's cache for the longest call before it (and compiles on a GPU, not measured)."""
        from transformers import StaticCache

        if self.writer.device.type != "cpu":
            return {}
        return {"past_key_values": StaticCache(config=self.writer.config, max_cache_len=length)}

    def continuation(self, written: list[int], tail: str) -> str:
        """The text of the tokens written after a prompt, up to end-of-text, without the prompt's
        trailing space (`tail`) that its first token carries."""
        eos = self.special_ids()[0]
        if eos in written:
            written = written[: written.index(eos)]
        text = self.tokenizer.decode(written, skip_special_tokens=True)
        return text[len(tail) :] if text.startswith(tail) else text

    def stream(self, prompt: str, sampling: Sampling, stop=None) -> Iterator[str]:
        """The text as `generate` writes it, token by token (transformers' streamer, generation in a
        thread of its own): the same computation, so the last text is the batch call's."""
        import queue
        import threading

        ended = threading.Event()  # the reader stopped reading: its own, `stop` may be shared
        news, outcome, either = queue.Queue(), {}, AnyOf(ended, stop)

        def write() -> None:
            try:
                outcome["text"] = self.generate([prompt], sampling, streamer=NewTokens(news.put), stop=either)[0]
            except Exception as error:  # raised where the text is read
                outcome["error"] = error
            finally:
                news.put(None)

        writer = threading.Thread(target=write, name="stream", daemon=True)
        writer.start()
        tail, written = self.split_prompt(prompt)[1], []
        try:
            done = False
            while not done:
                arrived = [news.get()]
                while not news.empty():  # a reader slower than the writer takes all that is there
                    arrived.append(news.get())
                done = arrived[-1] is None  # the writer's last word
                written += [token for tokens in arrived if tokens for token in tokens]
                if not done:  # a character whose bytes are not all written yet waits for them
                    yield self.continuation(written, tail).rstrip("\ufffd")
        finally:  # also when the reader stops reading: the writer stops too
            ended.set()
            writer.join()
        if "error" in outcome:
            raise outcome["error"]
        yield outcome["text"]

    def split_prompt(self, prompt: str) -> tuple[str, str]:
        """The prompt without its last space, and that space where tokens start with one (else
        the whole prompt and nothing): a byte-level BPE tokenizer cuts a text before the space
        that precedes a word, so that space belongs to the next token."""
        if prompt.endswith(" ") and self.space_led_tokens is not None:
            return prompt[:-1], " "
        return prompt, ""

    @functools.cached_property
    def space_led_tokens(self):
        """A mask over the vocabulary of the tokens whose text is a space and more; None when
        there are none."""
        import torch

        texts = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
        allowed = torch.tensor([text.startswith(" ") and len(text) > 1 for text in texts])
        return allowed if bool(allowed.any()) else None

    def context_prefix(self) -> list[int]:
        """What every text is read after: the document separator, or end-of-text if it is empty."""
        return self.encode(self.separator) or [self.special_ids()[0]]

    def special_ids(self) -> tuple[int, int]:
        """End-of-text and the padding id (end-of-text again where the tokenizer has no pad)."""
        eos = self.tokenizer.eos_token_id
        pad = self.tokenizer.pad_token_id
        return eos, eos if pad is None else pad


@functools.cache
def generation_precision() -> str:
    """bf16 where the device computes in it natively; fp32 elsewhere, said once."""
    from mlproject.models.transformers_lm.training import computes_in_bf16

    if computes_in_bf16():
        return "bf16"
    print("generate: in fp32: this CPU has no bf16 instructions (AVX512_BF16 or AMX)", flush=True)
    return "fp32"


def scoring_spans(length: int, first: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, end, scored) of each window over a stream of `length` tokens whose tokens from
    `first` on are scored: every one of them exactly once, the last `scored` of its window."""
    spans, scored_up_to, end = [], max(first, 1), 0
    while scored_up_to < length:
        end = min(max(end + stride, window), length)
        start = max(0, end - window)
        spans.append((start, end, end - scored_up_to))
        scored_up_to = end
    return spans


# The sampling noise's operations (noise.py) on int64 tensors: what every device has.
TORCH_BITS = noise.int64_bits(
    xor=lambda x, y: x ^ y,
    shift_right=lambda x, places: x >> places,
    mask=lambda x, constant: x & constant,
    to_float32=lambda x: x.float(),
)


def as_int32_pattern(x):
    """int64 values in [0, 2**32) as int32 tensors holding the same 32 bits."""
    import torch

    x = x & noise.MASK_32
    return torch.where(x >= 2**31, x - 2**32, x).to(torch.int32)


def times_32(x, constant: int):
    """x * constant mod 2**32: an unsigned multiply (it wraps by definition) on 32-bit patterns;
    int64 values (a row's key before it is wrapped) by int64_bits' 16-bit halves."""
    import torch

    if x.dtype == torch.int64:
        return TORCH_BITS.times(x, constant)
    return (x.view(torch.uint32) * constant).view(torch.int32)


# The same operations on 32-bit patterns in int32 tensors, for the CPU: a generation step's noise
# is a hash per row and token (64 x 49,152 values for SmolLM2 at batch 64), and at half the bytes
# and a third of the operations of the int64 form it takes a third of the time, with the same bits.
# PyTorch multiplies uint32 tensors on the CPU but has no uint32 shift or add, and CUDA no uint32
# multiply; a shift is therefore the arithmetic one, its sign-extended bits masked off.
CPU_TORCH_BITS = noise.Bits(
    xor=lambda x, y: x ^ y,
    shift_right=lambda x, places: (x >> places) & ((1 << (32 - places)) - 1),
    times=times_32,
    wrap=as_int32_pattern,
    to_float32=lambda x: x.float(),
)


# How much of the noise the CPU computes at once (2 MiB: ten rows of SmolLM2's 49,152 tokens in int32),
# small enough to stay in a core's cache (benchmarks/optimisations.md).
NOISE_BLOCK_BYTES = 2**21


class GumbelNoise:
    """A logits processor: each row's Gumbel noise for this step, keyed by its prompt's seed."""

    def __init__(self, seeds: list[int], prompt_width: int):
        self.seeds, self.prompt_width = seeds, prompt_width

    def __call__(self, input_ids, scores):
        import torch

        device = scores.device
        on_cpu = device.type == "cpu"
        bits, wide = (CPU_TORCH_BITS, torch.int32) if on_cpu else (TORCH_BITS, torch.int64)
        seeds = torch.tensor(self.seeds, dtype=torch.int64, device=device)[:, None]
        token_ids = torch.arange(scores.shape[1], dtype=wide, device=device)[None, :]
        step = torch.tensor(input_ids.shape[1] - self.prompt_width, dtype=torch.int64)
        # On the CPU a few rows at a time: each of the hash's ~20 passes then reads what the last one
        # left in the cache, not main memory (a row's noise never depends on another row's).
        rows = max(1, NOISE_BLOCK_BYTES // (4 * scores.shape[1])) if on_cpu else len(seeds)
        noisy = torch.empty_like(scores)
        for start in range(0, len(seeds), rows):
            hashes = noise.hashed(seeds[start : start + rows], step, token_ids, bits)
            block = noise.gumbel(hashes, torch.log, bits)
            torch.add(scores[start : start + rows], block.to(scores.dtype), out=noisy[start : start + rows])
        return noisy


class NewTokens:
    """A transformers streamer: each token written hands its id to `take`; each call's prompt,
    which `generate` hands over first, is not new."""

    def __init__(self, take):
        self.take, self.prompt_seen = take, False

    def put(self, value) -> None:
        if self.prompt_seen:
            self.take(value.reshape(-1).tolist())
        self.prompt_seen = True

    def end(self) -> None:
        self.prompt_seen = False  # the next piece of a long text is another call, with its prompt


class AnyOf:
    """Set when any of its events (None: never) is."""

    def __init__(self, *events):
        self.events = [event for event in events if event is not None]

    def is_set(self) -> bool:
        return any(event.is_set() for event in self.events)


class StopWhenSet:
    """A stopping criterion: every row is done once `event` is set (the reader stopped)."""

    def __init__(self, event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class FirstTokenStartsWith:
    """A logits processor: the first new token of each row must be one its mask allows."""

    def __init__(self, masks: list, prompt_width: int):
        self.masks, self.prompt_width = masks, prompt_width

    def __call__(self, input_ids, scores):
        import torch

        if input_ids.shape[1] != self.prompt_width or all(m is None for m in self.masks):
            return scores
        allowed = torch.ones_like(scores, dtype=torch.bool)
        for row, mask in enumerate(self.masks):
            if mask is not None:
                allowed[row] = False
                allowed[row, : mask.shape[0]] = mask
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))
