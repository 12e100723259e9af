r"""Fixed-point solves to a tolerance with no data-dependent control flow.

The eager solvers (:mod:`hopfield.dynamics.solvers`) stop once the residual is below ``tol``: a
Python branch on a tensor value, which ``torch.compile(fullgraph=True)`` cannot trace ("could not
guard on data-dependent expression") and ``torch.func.vmap`` cannot run. Under those
(:func:`~hopfield.dynamics.guards.is_tracing`), :func:`~hopfield.dynamics.solve_fixed_point`
runs these masked variants of ``fixed_point`` and ``anderson`` instead (``broyden`` has none and
raises; a registered solver of your own runs as it is; docs/concepts/fast_layers.md#masked-solves):

* every one of the ``max_iter`` iterations evaluates the map, so the graph has a fixed length;
* once the residual (the eager solver's measure, ``stop_mode`` and all) falls below ``tol``, the
  iterate is frozen with ``torch.where``: the later iterations change nothing. By default the
  test is the eager one, the largest residual over the batch, so the result equals the eager
  solve's; ``per_sample=True`` freezes each sample as soon as its own residual is small.

No value is read in Python: the stats say ``checked=False`` and ``converged=False`` (unknown),
``iterations`` and ``nfev`` count the ``max_iter`` evaluations, and the residual traces (one
tensor per iteration, the batch's largest; not recorded under ``vmap``) let a caller check
convergence after the call. Nothing raises on divergence either (a NaN stays visible in the
result); ``warn``, ``divergence_factor`` and ``record`` are accepted and ignored.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..core.autodiff import is_batched
from .guards import check_solver_call
from .solvers import SolverStats, anderson_step

__all__ = ["masked_fixed_point", "masked_anderson", "static_solver"]


def _residual(diff: torch.Tensor, fz: torch.Tensor, stop_mode: str):
    """Per-sample absolute and relative residuals, as the eager solvers measure them."""
    wide = torch.promote_types(diff.dtype, torch.float32)
    d = diff.detach().reshape(diff.shape[0], -1).to(wide).norm(dim=-1)
    f = fz.detach().reshape(fz.shape[0], -1).to(wide).norm(dim=-1)
    rel = d / (f + 1e-12)
    return d, rel, (rel if stop_mode == "rel" else d)


def _stats(name, z0, max_iter, tol, stop_mode):
    stats = SolverStats(name, tol=tol, stop_mode=stop_mode)
    stats.checked = False
    stats.iterations = stats.nfev = max_iter
    return stats, not is_batched(z0)


def _now(crit: torch.Tensor, tol: float, per_sample: bool, z: torch.Tensor) -> torch.Tensor:
    """The samples whose residual is below ``tol`` now, shaped to broadcast against ``z``."""
    ok = crit < tol if per_sample else (crit.max() < tol).expand(crit.shape)
    return ok.reshape(-1, *([1] * (z.dim() - 1)))


def masked_fixed_point(f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, *,
                       max_iter: int = 50, tol: float | None = None, stop_mode: str = "rel",
                       damping: float = 1.0, per_sample: bool = False, **_ignored):
    r""":func:`~hopfield.dynamics.solvers.fixed_point` with frozen, not stopped, converged
    iterates: $z \leftarrow (1-\lambda) z + \lambda f(z)$ while the residual is at least ``tol``."""
    check_solver_call("fixed_point", f, z0, max_iter, tol, stop_mode)
    if not 0 < damping <= 1:
        raise ValueError(f"fixed_point: damping must be in (0, 1], got {damping!r}.")
    stats, record = _stats("fixed_point", z0, max_iter, tol, stop_mode)
    if isinstance(z0, torch.Tensor) and z0.shape[0] == 0:
        return z0, stats  # an empty batch: nothing to solve
    z, done = z0, None
    for _ in range(max_iter):
        fz = f(z)
        diff = fz - z
        new = fz if damping == 1.0 else z + damping * diff
        if tol is None:
            z = new
            continue
        a, r, crit = _residual(diff, fz, stop_mode)
        if record:
            stats.abs_residuals.append(a.max())
            stats.rel_residuals.append(r.max())
        z = new if done is None else torch.where(done, z, new)
        now = _now(crit, tol, per_sample, z)
        done = now if done is None else done | now
    return z, stats


def masked_anderson(f, z0, *, max_iter: int = 50, tol: float | None = 1e-5,
                    stop_mode: str = "rel", memory: int = 5, lam: float = 1e-4,
                    mixing: float = 1.0, per_sample: bool = False, **_ignored):
    r""":func:`~hopfield.dynamics.solvers.anderson` with frozen, not stopped, converged iterates
    (the same type-II update; a converged iterate is replaced by its $f(z)$, as there)."""
    check_solver_call("anderson", f, z0, max_iter, tol, stop_mode)
    stats, record = _stats("anderson", z0, max_iter, tol, stop_mode)
    if isinstance(z0, torch.Tensor) and z0.shape[0] == 0:
        return z0, stats  # an empty batch: nothing to solve
    shape, b = z0.shape, z0.shape[0]
    hist_x: list[torch.Tensor] = []
    hist_f: list[torch.Tensor] = []
    z, done = z0, None
    for k in range(max_iter):
        fz = f(z)
        now = None
        if tol is not None:
            a, r, crit = _residual(fz - z, fz, stop_mode)
            if record:
                stats.abs_residuals.append(a.max())
                stats.rel_residuals.append(r.max())
            now = _now(crit, tol, per_sample, z)
        hist_x.append(z.reshape(b, -1))
        hist_f.append(fz.reshape(b, -1))
        if len(hist_x) > memory:
            hist_x.pop(0)
            hist_f.pop(0)
        new = fz if k == 0 else anderson_step(hist_x, hist_f, lam, mixing).reshape(shape)
        if now is not None:  # converged now: take f(z) and stop there (the eager rule)
            new = torch.where(now, fz, new)
        z = new if done is None else torch.where(done, z, new)
        if now is not None:
            done = now if done is None else done | now
    return z, stats


_MASKED = {"fixed_point": masked_fixed_point, "anderson": masked_anderson,
           "safeguarded": masked_anderson}


def static_solver(name: str, solve: Callable) -> Callable:
    """The solver to run for a solve to a ``tol`` that may not branch on values
    (``torch.compile``, ``torch.export``, ``torch.func.vmap``): the masked variant of a built-in
    solver, ``solve`` itself for a registered one (its own business). Raises a ``ValueError``
    that says why for ``broyden``, which has none."""
    if name in _MASKED:
        return _MASKED[name]
    if name == "broyden":
        raise ValueError(
            f"solver {name!r} cannot solve to a tol under torch.compile, torch.export or "
            f"torch.func.vmap: stopping at a tolerance branches on tensor values, and only "
            f"{sorted(_MASKED)} have a masked variant (every iteration runs, converged iterates "
            f"are frozen). Use one of those, or tol=None for a fixed number of iterations.")
    return solve
