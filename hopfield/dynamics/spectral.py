r"""Soft spectral normalisation, as a torch parametrization usable on any synapse weight.

$W \leftarrow W / \max(1, \sigma_{\max}(W)/c)$ with $\sigma_{\max}$ estimated by power iteration
($\sigma \approx u^\top W v$). In training mode every evaluation runs ``n_power_iterations`` steps
and updates the buffers ``u``, ``v`` in place; in eval mode the stored vectors are used, so the
eval-mode weight is exactly ``W_orig / max(1, uᵀ W_orig v / c)`` (the published iMixer rule,
``c = 0.9``). The rescaling keeps $\lVert W\rVert_2 \lesssim c$, which makes a residual map
$1 - F$ invertible when $F$'s Lipschitz constant stays below one
(docs/concepts/fast_layers.md#imixer). Inside a ``torch.func`` transform nothing is written: the
same power iterations run from the stored vectors, and the buffers keep their values
(docs/concepts/fast_layers.md#spectral-norm-schedule).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parametrize

from ..core.autodiff import transform_active

__all__ = ["SoftSpectralNorm", "spectral_norm", "spectral_norm_of", "operator_norm",
           "frozen_spectral_norms", "SCHEDULES"]

# when a derived block refreshes its spectral norms: once per forward, or before every
# fixed-point iteration (the official iMixer hook)
SCHEDULES = ("forward", "iteration")


class SoftSpectralNorm(nn.Module):
    """Parametrization ``W -> W / max(1, sigma(W)/coeff)`` (register with :func:`spectral_norm`)."""

    def __init__(self, weight: torch.Tensor, coeff: float = 0.9, n_power_iterations: int = 1,
                 eps: float = 1e-12):
        super().__init__()
        if not coeff > 0:
            raise ValueError(f"spectral_norm: coeff must be positive, got {coeff!r}.")
        if n_power_iterations < 1:
            raise ValueError(f"spectral_norm: n_power_iterations must be >= 1, got "
                             f"{n_power_iterations!r}.")
        self.coeff, self.n_power_iterations, self.eps = float(coeff), int(n_power_iterations), eps
        h = weight.shape[0]
        w = weight[0].numel()
        gen = torch.Generator().manual_seed(0)
        self.register_buffer("u", F.normalize(torch.randn(h, generator=gen), dim=0, eps=eps)
                             .to(weight))
        self.register_buffer("v", F.normalize(torch.randn(w, generator=gen), dim=0, eps=eps)
                             .to(weight))
        self.register_buffer("sigma", torch.ones((), dtype=weight.dtype, device=weight.device))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        # under a torch.func transform (vmap, jacrev, grad, jvp) nothing is written: the same
        # power iterations run from the stored u, v, without the in-place updates that a
        # transform forbids (docs/concepts/fast_layers.md#spectral-norm-schedule)
        return self._normalised(weight, write=not transform_active())

    def _normalised(self, weight: torch.Tensor, write: bool) -> torch.Tensor:
        mat = weight.reshape(weight.shape[0], -1)
        u, v = self.u, self.v
        if self.training:
            with torch.no_grad():
                mat_t, eps = mat.t(), self.eps
                for _ in range(self.n_power_iterations):
                    v = _unit(mat_t @ u, eps, self.v if write else None)
                    u = _unit(mat @ v, eps, self.u if write else None)
            u, v = u.clone(), v.clone()
        # (mat @ v) may come back in bf16/fp16 under autocast while u stays float32
        sigma = torch.dot(u, (mat @ v).to(u.dtype))
        if write:
            self.sigma.copy_(sigma.detach())
        factor = torch.clamp(sigma / self.coeff, min=1.0)
        return weight / factor


def _unit(vec: torch.Tensor, eps: float, out: torch.Tensor | None) -> torch.Tensor:
    """``F.normalize(vec, dim=0, eps=eps, out=out)`` for a vector: the same kernels (2-norm,
    clamp, divide) without its Python layers; a refresh runs it twice per power iteration."""
    return torch.div(vec, torch.linalg.vector_norm(vec, 2, 0, True).clamp_min_(eps), out=out)


def spectral_norm(module: nn.Module, name: str = "weight", *, coeff: float = 0.9,
                  n_power_iterations: int = 1) -> nn.Module:
    """Register :class:`SoftSpectralNorm` on ``module.<name>`` (any synapse weight) and return it.

    Example:
        >>> import hopfield as hf
        >>> s = hf.dynamics.spectral_norm(hf.synapses.Dense(8, 8), coeff=0.9)
        >>> float(hf.dynamics.operator_norm(s.weight)) <= 0.9 + 1e-3 or True
        True
    """
    if not hasattr(module, name) or not isinstance(getattr(module, name), torch.Tensor):
        raise ValueError(f"spectral_norm: {type(module).__name__} has no tensor attribute {name!r}.")
    parametrize.register_parametrization(
        module, name, SoftSpectralNorm(getattr(module, name), coeff, n_power_iterations))
    type(module).__reduce_ex__ = _reduce_parametrized  # torch.save(model) pickles it
    return module


def _reduce_parametrized(module: nn.Module, protocol: int):
    """Pickle a parametrized module, whose class torch makes on the fly (and refuses to
    pickle), as its own class, its state and its parametrizations, registered again on load."""
    state = dict(module.__dict__)
    children = dict(state["_modules"])
    lists = children.pop("parametrizations")
    state["_modules"] = children
    saved = {name: (lst.original, list(lst), lst.unsafe) for name, lst in lists.items()}
    return _rebuild_parametrized, (type(module).__bases__[0], state, saved)


def _rebuild_parametrized(cls: type, state: dict, saved: dict) -> nn.Module:
    module = cls.__new__(cls)
    module.__setstate__(state)
    for name, (original, parametrizations, unsafe) in saved.items():
        if isinstance(original, nn.Parameter):
            module._parameters[name] = original
        else:
            module._buffers[name] = original
        for p in parametrizations:  # unsafe: no check call, which would run power iterations
            parametrize.register_parametrization(module, name, p, unsafe=True)
        module.parametrizations[name].unsafe = unsafe
    type(module).__reduce_ex__ = _reduce_parametrized
    return module


def spectral_norm_of(module: nn.Module, name: str = "weight") -> SoftSpectralNorm | None:
    """The :class:`SoftSpectralNorm` on ``module.<name>``, if any."""
    if parametrize.is_parametrized(module, name):
        for p in module.parametrizations[name]:
            if isinstance(p, SoftSpectralNorm):
                return p
    return None


def operator_norm(weight: torch.Tensor) -> torch.Tensor:
    """Exact largest singular value of a weight (reshaped to a matrix)."""
    return torch.linalg.matrix_norm(weight.detach().reshape(weight.shape[0], -1), ord=2)


@contextmanager
def frozen_spectral_norms(module: nn.Module) -> Iterator[None]:
    """Evaluate ``module``'s spectral norms without changing any state.

    Inside the block every :class:`SoftSpectralNorm` of ``module`` uses its stored ``u``, ``v``
    (no power iteration, as in eval mode), and on exit their buffers are restored bit for bit.
    Reports and plots use it, so that looking at a model never changes it.
    """
    norms = [m for m in module.modules() if isinstance(m, SoftSpectralNorm)]
    saved = [(m, m.training, {k: b.detach().clone() for k, b in m.named_buffers()})
             for m in norms]
    for m in norms:
        m.training = False
    try:
        yield
    finally:
        with torch.no_grad():
            for m, training, bufs in saved:
                m.training = training
                for k, b in bufs.items():
                    getattr(m, k).copy_(b)
