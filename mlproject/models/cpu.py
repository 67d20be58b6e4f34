"""What the CPU can do, as Linux lists it: kinds choose their kernels and precision from it."""

from __future__ import annotations

import functools


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them; empty elsewhere (the safe choices follow)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def has_bf16(flags: frozenset[str] | None = None) -> bool:
    """Whether the CPU computes in bf16 natively (AVX512_BF16 or AMX): about twice its fp32 speed
    there, and slower than fp32 where it is emulated."""
    return bool({"avx512_bf16", "amx_bf16"} & (cpu_flags() if flags is None else flags))
