"""The only code on PyTorch internals: generation's linear layers on oneDNN's prepacked fp32 kernel.

On the CPU, `torch.nn.functional.linear` multiplies by the weight as stored, through MKL; oneDNN's
linear reads a copy of the weight reordered once into its own blocked layout, which generation at
batch 64 runs about a quarter faster, with the same greedy text (benchmarks/optimisations.md). The
reorder and the kernel are `torch.ops.mkldnn._reorder_linear_weight` and `_linear_pointwise`,
undocumented operators that inductor's freezing pass uses: `check_torch_internals` says plainly
when a PyTorch upgrade moves them, and generation then runs torch's own linear, with one line
saying so.
"""

from __future__ import annotations

import copy
import functools

import torch

REORDER, LINEAR = "_reorder_linear_weight", "_linear_pointwise"


def check_torch_internals() -> None:
    """Raise, naming what is missing, if this PyTorch lacks oneDNN or the operators used here."""
    if not torch.backends.mkldnn.is_available():
        raise RuntimeError("this PyTorch was built without oneDNN (torch.backends.mkldnn)")
    missing = [name for name in (REORDER, LINEAR) if not hasattr(torch.ops.mkldnn, name)]
    if missing:
        raise RuntimeError(f"torch.ops.mkldnn has no {', '.join(missing)} any more")


class PackedLinear(torch.nn.Module):
    """A `torch.nn.Linear` for inference, its weight reordered once for oneDNN."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.packed = getattr(torch.ops.mkldnn, REORDER)(linear.weight.detach(), 1)
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return getattr(torch.ops.mkldnn, LINEAR)(x, self.packed, self.bias, "none", [], "")


@functools.cache
def packing_available() -> bool:
    """Whether generation can run on packed linears here; says once why not."""
    try:
        check_torch_internals()
    except RuntimeError as reason:
        print(f"generate: with torch's own linear layers: {reason}", flush=True)
        return False
    return True


def packed_copy(network: torch.nn.Module) -> torch.nn.Module:
    """The network for fp32 generation on the CPU: its fp32 linear layers packed, every other weight
    shared with `network` (generation never changes them). The network itself where packing is
    not available."""
    if not packing_available():
        return network
    # deepcopy's memo: each linear layer becomes its packed form, each tensor is shared, not copied.
    memo = {id(t): t for t in [*network.parameters(), *network.buffers()]}
    memo.update(
        {
            id(module): PackedLinear(module)
            for module in network.modules()
            if type(module) is torch.nn.Linear and module.weight.dtype == torch.float32
        }
    )
    return copy.deepcopy(network, memo).eval()
