"""The `gpt` kind: a small GPT (Llama or GPT-2 shaped, from params) and a byte-level BPE tokenizer
trained on the training split only, both from scratch."""

from __future__ import annotations

from pathlib import Path

from mlproject.data.tokens import read_separator
from mlproject.models.transformers_lm.model import CausalLM
from mlproject.models.transformers_lm.settings import GptTraining

END_OF_TEXT = "<|endoftext|>"


def train_tokenizer(text: str, vocab_size: int, separator: str):
    """A byte-level BPE tokenizer (every text encodes, and decodes back exactly) learnt from `text`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator((doc for doc in text.split(separator) if doc), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=END_OF_TEXT, pad_token=END_OF_TEXT, clean_up_tokenization_spaces=False
    )


def build_network(config: GptTraining, vocab_size: int, end_of_text: int):
    """A randomly initialised decoder of the shape params give (drawn from the seed set before)."""
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    if config.architecture == "gpt2":
        shape = GPT2Config(
            vocab_size=vocab_size,
            n_positions=config.sequence_length,
            n_embd=config.embedding_dim,
            n_layer=config.layers,
            n_head=config.heads,
            resid_pdrop=config.dropout,
            embd_pdrop=config.dropout,
            attn_pdrop=config.dropout,
            bos_token_id=end_of_text,
            eos_token_id=end_of_text,
        )
    else:
        shape = LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=config.embedding_dim,
            intermediate_size=4 * config.embedding_dim,
            num_hidden_layers=config.layers,
            num_attention_heads=config.heads,
            num_key_value_heads=config.heads,
            max_position_embeddings=config.sequence_length,
            attention_dropout=config.dropout,
            tie_word_embeddings=True,
            bos_token_id=end_of_text,
            eos_token_id=end_of_text,
            pad_token_id=end_of_text,
        )
    return AutoModelForCausalLM.from_config(shape, attn_implementation="sdpa")


class ScratchGPT(CausalLM):
    kind = "gpt"

    @classmethod
    def initial(cls, config: GptTraining, seed: int, tokens: Path) -> "ScratchGPT":
        separator = read_separator(tokens)
        tokenizer = train_tokenizer((tokens / "train.txt").read_text(encoding="utf-8"), config.vocab_size, separator)
        network = build_network(config, len(tokenizer), tokenizer.eos_token_id)
        details = {"architecture": config.architecture, "vocab_size": len(tokenizer)}
        return cls(network, tokenizer, separator, details)

    def tags(self) -> dict:
        return {"architecture": self.details["architecture"]}
