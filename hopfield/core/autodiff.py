r"""Currents by differentiation, through ``torch.func`` where transforms need it.

The graph derives every current it has no closed form for
(docs/concepts/synapses.md#currents-under-torch-func):

* tied: $I_A = -\partial E_s/\partial g_A$, the gradient with respect to a fresh alias of $g_A$:
  the partial derivative never follows paths through other activations computed from $g_A$
  (a fast layer's $g_h = \sigma(W g_x)$);
* untied: the gradient of the target's half energy with respect to a zero probe
  (docs/concepts/untying.md#probes).

Two routes give the same numbers. Inside a ``torch.func`` transform (``vmap``, ``jacrev``,
``jvp``, ``grad``, and ``functional_call`` under them) and under ``torch.compile`` the gradient
is :func:`torch.func.grad` of a function of the target activations, which composes with the
transforms (``torch.autograd.grad`` and ``requires_grad_`` do not) and with regular autograd:
called with grad mode on, its result carries the graph of the backward it ran, so a training step
differentiates through the derived update exactly (second order); under ``torch.no_grad`` it
carries none. Elsewhere the same gradient is taken by ``torch.autograd.grad`` on alias leaves
with ``create_graph`` in grad mode: identical values, without ``torch.func.grad``'s fixed cost
per call (about 0.3 ms on a CPU: 8-50% on the training step of a small Energy Transformer).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = ["energy_grads", "probe_grad", "transform_active", "is_batched"]

_F = torch._C._functorch


def _compiling() -> bool:
    check = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(check and check())


def transform_active() -> bool:
    """True inside a ``torch.func`` transform (grad, vjp, jvp, jacrev, vmap, functionalize);
    always False while ``torch.compile`` traces (dynamo handles the transforms itself)."""
    return not _compiling() and _F.peek_interpreter_stack() is not None


def is_batched(t: torch.Tensor) -> bool:
    """True when ``t`` is batched by ``torch.func.vmap`` at some level (its values cannot be read
    into Python: no ``bool()``, ``item()`` or ``tolist()``)."""
    if _compiling() or not isinstance(t, torch.Tensor):
        return False
    while _F.is_functorch_wrapped_tensor(t):
        if _F.is_batchedtensor(t):
            return True
        t = _F.get_unwrapped(t)
    return False


@contextmanager
def _parametrize_cache_guard() -> Iterator[None]:
    """Under ``parametrize.cached()``, drop what the transform cached: a parametrized weight first
    evaluated inside ``torch.func.grad`` is a tensor of that transform's level, dead after it."""
    if not parametrize._cache_enabled or _compiling():
        yield
        return
    before = set(parametrize._cache)
    try:
        yield
    finally:
        cache = parametrize._cache
        for key in [k for k in cache if k not in before]:
            if _F.is_functorch_wrapped_tensor(cache[key]):
                del cache[key]


def _prime(modules: Sequence[nn.Module]) -> None:
    """While ``torch.compile`` traces under ``parametrize.cached()``: evaluate the parametrized
    tensors of ``modules`` before the transform, so that a parametrization that writes its state
    (the spectral norm's power iteration) runs outside it."""
    if modules and parametrize._cache_enabled and _compiling():
        for module in modules:
            for m in module.modules():
                for name in getattr(m, "parametrizations", {}):
                    getattr(m, name)


# True: every current goes through torch.func, even where no transform runs (tests and
# benchmarks compare the two routes); False: torch.autograd.grad where it works
ALWAYS_FUNC = False


def _use_func() -> bool:
    return ALWAYS_FUNC or _compiling() or transform_active()


def _autograd(fn, tensors):
    """The plain route (no transform running): fresh alias leaves, ``torch.autograd.grad`` with
    ``create_graph`` when grad mode is on. Same numbers as the ``torch.func`` route."""
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        leaves = [t.view_as(t) if t.requires_grad else t.detach().requires_grad_(True)
                  for t in tensors]
        grads = torch.autograd.grad(fn(*leaves), leaves, create_graph=create_graph,
                                    allow_unused=True)
    return tuple(torch.zeros_like(t) if g is None else g
                 for g, t in zip(grads, tensors, strict=True))


def energy_grads(energy: Callable[..., torch.Tensor], tensors: Sequence[torch.Tensor], *,
                 modules: Sequence[nn.Module] = ()) -> tuple[torch.Tensor, ...]:
    """Gradients of the scalar ``energy(*tensors)`` with respect to each of ``tensors`` (zeros for
    one the energy does not read); ``modules``: those it calls. By :func:`torch.func.grad` inside
    a transform or ``torch.compile``, else by ``torch.autograd.grad`` (cheaper per call)."""
    if not _use_func():
        return _autograd(energy, tensors)
    _prime(modules)
    with _parametrize_cache_guard():
        return torch.func.grad(energy, argnums=tuple(range(len(tensors))))(*tensors)


def probe_grad(half_energy: Callable[[torch.Tensor], torch.Tensor], like: torch.Tensor, *,
               modules: Sequence[nn.Module] = ()) -> torch.Tensor:
    """Gradient of the scalar ``half_energy(probe)`` at a zero ``probe`` shaped as ``like``."""
    if not _use_func():
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            probe = torch.zeros_like(like, requires_grad=True)
            (gr,) = torch.autograd.grad(half_energy(probe), probe, create_graph=create_graph)
        return gr
    _prime(modules)
    with _parametrize_cache_guard():
        return torch.func.grad(half_energy)(torch.zeros_like(like))
