"""A derived block for ``torch.export`` and ONNX (docs/tutorials/custom_energy.md#exporting-a-bare-block).

``torch.export`` turns a module into an ``fx.GraphModule``, whose attribute ``graph`` is the
traced program. A :class:`~hopfield.DerivedBlock` keeps its energy under the same name
(``block.graph``, and ``graph.*`` in its state dict), so the exported program of a bare block
cannot be turned back into a module (``ExportedProgram.module()``, ``run_decompositions()`` and
the ONNX exporter fail with "references nonexistent attribute neurons of graph"). Behind one more
module level the name no longer sits at the root: the models of :mod:`hopfield.models` export
as they are, and a bare block exports through :func:`exportable`.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ExportableBlock", "exportable"]


class ExportableBlock(nn.Module):
    """``block`` as the child ``block``: the same forward, the state dict keys prefixed with
    ``block.``."""

    def __init__(self, block: nn.Module):
        super().__init__()
        self.block = block

    def forward(self, *states: torch.Tensor, **clamped: torch.Tensor):
        return self.block(*states, **clamped)


def exportable(block: nn.Module) -> ExportableBlock:
    """Wrap a derived block for ``torch.export.export`` / ``torch.onnx.export`` (the weights are
    shared, not copied).

    Example:
        >>> import torch, hopfield as hf
        >>> blk = hf.blocks.imixer_block(6, 8, max_iter=2).eval()
        >>> x = torch.randn(3, 6, 8)
        >>> batch = torch.export.Dim("batch", min=1)
        >>> program = torch.export.export(blk.exportable(), (x,), dynamic_shapes=(({0: batch},),))
        >>> torch.allclose(program.module()(x), blk(x))
        True
    """
    return ExportableBlock(block)
