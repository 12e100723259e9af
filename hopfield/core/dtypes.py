"""The dtype a state must have to meet a module's weights: one check for graphs and blocks.

A state must be a floating-point tensor, and outside ``torch.autocast`` it must have the dtype of
the weights it is multiplied with; otherwise the first matrix product fails deep inside torch
("mat1 and mat2 must have the same dtype") or an integer state is silently promoted.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["WeightsDtype"]


class WeightsDtype(nn.Module):
    """Mixin for modules that check the states they are given (``EnergyGraph``, ``DerivedBlock``)."""

    def weights_dtype(self) -> torch.dtype | None:
        """The one floating dtype of this module's parameters (``None``: none, or several).
        Cached until a conversion (``.to``, ``.double``, ...) runs ``_apply``."""
        dtype = self.__dict__.get("_weights_dtype", False)
        if dtype is False:
            dtypes = {p.dtype for p in self.parameters() if p.is_floating_point()}
            dtype = dtypes.pop() if len(dtypes) == 1 else None
            self.__dict__["_weights_dtype"] = dtype
        return dtype

    def _apply(self, fn, recurse: bool = True):
        out = super()._apply(fn, recurse)
        self.__dict__.pop("_weights_dtype", None)  # a conversion may change the dtype
        return out

    def check_state_dtype(self, who: str, name: str, x: torch.Tensor) -> None:
        """Raise ``TypeError`` naming layer ``name`` if state ``x`` is not floating point, or
        (outside autocast) not in the weights' dtype."""
        if not x.is_floating_point():
            raise TypeError(f"{who}: the state of layer {name!r} must be a floating-point tensor, "
                            f"got {x.dtype}; convert it first (x.float()).")
        dtype = self.weights_dtype()
        if dtype is None or x.dtype == dtype or torch.is_autocast_enabled(x.device.type):
            return
        self.__dict__.pop("_weights_dtype", None)  # weights swapped in place (functional_call)
        dtype = self.weights_dtype()
        if dtype is not None and x.dtype != dtype:
            raise TypeError(f"{who}: the state of layer {name!r} is {x.dtype}, the weights are "
                            f"{dtype}; convert the input (x.to({dtype})) or the module "
                            f"(.to({x.dtype})), or run under torch.autocast.")
