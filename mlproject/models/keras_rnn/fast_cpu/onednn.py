"""Which of TensorFlow's CPU kernels run fastest here, chosen from the CPU's feature flags.

The choice was measured on CPUs with and without AVX-512 (benchmarks/optimisations.md).
"""

from __future__ import annotations

import os

from mlproject.models.cpu import cpu_flags


def use_onednn(training: bool, flags: frozenset[str] | None = None) -> None:
    """TensorFlow's oneDNN kernels on where they are faster, unless TF_ENABLE_ONEDNN_OPTS says
    otherwise: on a CPU with AVX-512 always (TensorFlow's own choice), without it only to train.

    TensorFlow leaves them off without AVX-512, where they speed training up and slow generation
    down; with AVX-512 they speed up training and scoring (benchmarks/optimisations.md).
    `kernels.multiply` picks the kernel layout each is fastest with. TensorFlow reads the setting
    once, when it starts: call this before it is imported.
    """
    flags = cpu_flags() if flags is None else flags
    helps = "avx512f" in flags or (training and "avx" in flags)
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1" if helps else "0")
