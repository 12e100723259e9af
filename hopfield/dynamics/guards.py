"""Argument checks for the fixed-point solvers, and the tracing test that skips value checks.

The solvers (:mod:`hopfield.dynamics.solvers`) and :func:`~hopfield.dynamics.solve_fixed_point`
validate their settings before solving with these helpers: ``max_iter`` an int >= 0, ``tol`` a
finite number > 0 or ``None``, and ``solver_options`` only the keyword options the chosen solver's
signature declares. See ``docs/concepts/fast_layers.md#convergence-and-divergence``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping

import torch

from ..core.autodiff import is_batched
from ..core.validate import is_finite_real, is_int, is_real

__all__ = ["check_iteration_settings", "check_solver_call", "solver_option_names",
           "check_solver_options", "is_tracing"]

# the arguments every solver takes from its caller, never from solver_options
_RESERVED = ("max_iter", "tol")


def check_iteration_settings(who: str, max_iter, tol, *, max_name: str = "max_iter",
                             tol_name: str = "tol", min_iter: int = 0,
                             max_none_ok: bool = False) -> None:
    """Raise unless ``max_iter`` is an int >= ``min_iter`` and ``tol`` a finite number > 0 or
    ``None`` (``TypeError`` for a wrong type, ``ValueError`` for a wrong value; bools rejected)."""
    if not (max_none_ok and max_iter is None) and not (is_int(max_iter) and max_iter >= min_iter):
        cls = ValueError if is_int(max_iter) else TypeError
        alt = " or None (for the default)" if max_none_ok else ""
        raise cls(f"{who}: {max_name} must be an int >= {min_iter}{alt}, got "
                  f"{max_name}={max_iter!r} ({type(max_iter).__name__}). Pass a whole number "
                  f"of iterations.")
    if tol is not None and not (is_finite_real(tol) and tol > 0):
        cls = ValueError if is_real(tol) else TypeError
        raise cls(f"{who}: {tol_name} must be positive or None (a finite number > 0 such as "
                  f"1e-5), got {tol_name}={tol!r}. Pass None to run exactly {max_name} "
                  f"iterations.")


def check_solver_call(name: str, f, z0, max_iter, tol, stop_mode) -> None:
    """The checks every registered solver runs first: ``f`` callable, ``z0`` a batch-first
    tensor (an FX proxy passes), then :func:`check_iteration_settings` and ``stop_mode``."""
    if not callable(f):
        raise TypeError(f"{name}: f must be callable (the map z -> f(z)), got "
                        f"{type(f).__name__}.")
    if not isinstance(z0, torch.fx.Proxy) and (not isinstance(z0, torch.Tensor) or z0.dim() < 1):
        got = tuple(z0.shape) if isinstance(z0, torch.Tensor) else type(z0).__name__
        raise (ValueError if isinstance(z0, torch.Tensor) else TypeError)(
            f"{name}: z0 must be a tensor with the batch first, shape (batch, ...), got {got}.")
    check_iteration_settings(name, max_iter, tol)
    if stop_mode not in ("rel", "abs"):
        raise ValueError(f"{name}: stop_mode must be 'rel' or 'abs', got {stop_mode!r}.")


@functools.lru_cache(maxsize=64)
def solver_option_names(fn: Callable) -> list[str] | None:
    """The keyword options ``fn`` accepts besides ``f``, ``z0``, ``max_iter`` and ``tol``
    (``None`` when it takes ``**kwargs``, i.e. anything)."""
    params = list(inspect.signature(fn).parameters.values())
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                  inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    skip = {p.name for p in positional[:2]} | set(_RESERVED)  # f and z0, then the common ones
    return [p.name for p in params
            if p.name not in skip and p.kind in (inspect.Parameter.KEYWORD_ONLY,
                                                 inspect.Parameter.POSITIONAL_OR_KEYWORD)]


def check_solver_options(solver: str, fn: Callable, options, *,
                         who: str = "solve_fixed_point") -> dict:
    """Return ``options`` as a dict after checking its keys against ``fn``'s signature."""
    if not options:  # nothing to check: the common case costs nothing per solve
        if options is None or isinstance(options, Mapping):
            return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"{who}: solver_options must be a dict of keyword options for solver "
                        f"{solver!r} (or None), got {type(options).__name__}.")
    opts = dict(options)
    reserved = [k for k in _RESERVED if k in opts]
    if reserved:
        raise ValueError(f"{who}: solver_options may not set {', '.join(reserved)}; pass "
                         f"max_iter= and tol= as arguments of their own instead.")
    valid = solver_option_names(fn)
    unknown = [] if valid is None else sorted(k for k in opts if k not in valid)
    if unknown:
        raise ValueError(f"{who}: unknown option(s) {', '.join(map(repr, unknown))} in "
                         f"solver_options for solver {solver!r}; valid options: "
                         f"{', '.join(valid) or '(none)'}.")
    return opts


def is_tracing(z: torch.Tensor) -> bool:
    """True while ``torch.compile``, ``torch.export``, ``torch.jit`` or FX records the solve, for
    ``meta`` tensors, or for tensors batched by ``torch.func.vmap``: reading values then would
    break the graph (or is impossible)."""
    if torch.jit.is_scripting() or torch.jit.is_tracing():
        return True
    is_compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    if is_compiling is None:  # older torch: ask dynamo directly
        from torch import _dynamo

        is_compiling = _dynamo.is_compiling
    if is_compiling():
        return True
    return isinstance(z, torch.fx.Proxy) or z.device.type == "meta" or is_batched(z)
