"""Which of TensorFlow's CPU kernels run fastest here, chosen from the CPU's feature flags.

Measured on the two kinds of AMD EPYC runner this project runs on (benchmarks/optimisations.md):
Milan, without AVX-512, and Genoa, with it.
"""

from __future__ import annotations

import functools
import os


def use_onednn(training: bool, flags: frozenset[str] | None = None) -> None:
    """TensorFlow's oneDNN kernels on where they are faster, unless TF_ENABLE_ONEDNN_OPTS says
    otherwise: on a CPU with AVX-512 always (TensorFlow's own choice), without it only to train.

    TensorFlow leaves them off without AVX-512 (Milan). There, training ran 1.2 to 1.4 times as
    fast with them, and generation at batch 256 0.62 times. On Genoa (AVX-512), training ran 1.2
    to 1.4 times as fast with them, scoring 1.5, generation the same; `recurrent.multiply` picks
    the kernel layout each is fastest with. Read once, when TensorFlow starts: call this first.
    """
    flags = cpu_flags() if flags is None else flags
    helps = "avx512f" in flags or (training and "avx" in flags)
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1" if helps else "0")


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them; empty elsewhere (oneDNN then stays off)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()
