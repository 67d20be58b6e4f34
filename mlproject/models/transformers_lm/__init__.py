"""The transformers kinds: `finetune` (a pretrained causal LM fine-tuned, finetune.py) and `gpt`
(a small GPT and its byte-level BPE tokenizer trained from scratch, gpt.py), on PyTorch.

Both train with training.py and are scored and sampled by model.py.
"""
