"""The transformers kinds: `finetune` (a pretrained causal LM fine-tuned, pretrained.py) and `gpt`
(a small GPT and its byte-level BPE tokenizer trained from scratch, scratch.py), on PyTorch.

Both train with training.py and are scored and sampled by model.py.
"""
