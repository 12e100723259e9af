r"""A solver that never loses to plain iteration by much: start plain, switch to Anderson when
the residual stalls (docs/concepts/fast_layers.md#convergence-and-divergence).

Plain iteration converges at the rate of the map's contraction factor $\rho$: a handful of
evaluations on trained, well-contracting weights, where Anderson's mixing only adds overhead;
hundreds near criticality ($\rho \to 1$), where Anderson pays off. ``safeguarded`` measures
$\rho$ from the residual trace: while each plain iteration shrinks the residual by at least the
factor ``switch_ratio`` it keeps iterating plainly; at the first iteration that shrinks it by
less, it hands the current iterate to :func:`~hopfield.dynamics.anderson` for the rest of the
budget. On fast-converging maps it therefore costs exactly what plain iteration costs; on slow
ones at most ``min_plain`` plain evaluations more than Anderson alone.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..core.validate import is_real
from .solvers import SolverStats, _finish, anderson, fixed_point

__all__ = ["safeguarded"]


def safeguarded(f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, *,
                max_iter: int = 50, tol: float | None = 1e-5, stop_mode: str = "rel",
                switch_ratio: float = 0.5, min_plain: int = 2, memory: int = 5,
                lam: float = 1e-4, divergence_factor: float = 1e4, warn: bool = True,
                record: bool = True):
    r"""Plain iteration, switching to Anderson (``memory``, ``lam``) once a plain step reduces
    the residual by less than ``switch_ratio`` (after at least ``min_plain`` plain steps).

    With ``tol=None`` there is no residual to watch: it is plain iteration, ``max_iter`` times.
    The stats record ``switched_at`` (the plain evaluations before the switch; ``None`` if it
    never switched) and the whole residual trace.
    """
    if not (is_real(switch_ratio) and 0 < switch_ratio < 1):
        raise ValueError(f"safeguarded: switch_ratio must be in (0, 1), got {switch_ratio!r}; "
                         f"0.5 switches when a plain step halves the residual no more.")
    if not (isinstance(min_plain, int) and not isinstance(min_plain, bool) and min_plain >= 1):
        raise ValueError(f"safeguarded: min_plain must be an int >= 1, got {min_plain!r}.")
    if tol is None:
        z, stats = fixed_point(f, z0, max_iter=max_iter, tol=None, stop_mode=stop_mode,
                               divergence_factor=divergence_factor, warn=warn)
        stats.solver, stats.switched_at = "safeguarded", None
        return z, stats
    stats = SolverStats("safeguarded", tol=tol, stop_mode=stop_mode)
    stats.switched_at = None
    z, plain_budget = z0, max_iter

    def step(z):  # one plain evaluation, with the common residual bookkeeping
        return fixed_point(f, z, max_iter=1, tol=tol, stop_mode=stop_mode,
                           divergence_factor=divergence_factor, warn=False)

    for _ in range(plain_budget):
        z, one = step(z)
        stats.nfev += one.nfev
        stats.iterations += one.iterations
        stats.abs_residuals += one.abs_residuals
        stats.rel_residuals += one.rel_residuals
        if one.converged:
            stats.converged = True
            return z, stats
        trace = stats.residuals
        if len(trace) > min_plain and trace[-1] > switch_ratio * trace[-2]:
            stats.switched_at = stats.nfev
            break
    left = max_iter - stats.iterations
    if stats.switched_at is None or left <= 0:  # the budget ran out on plain steps
        return z, _finish(stats, warn, z, z0)
    z, rest = anderson(f, z, max_iter=left, tol=tol, stop_mode=stop_mode, memory=memory, lam=lam,
                       divergence_factor=divergence_factor, warn=warn, record=record)
    stats.nfev += rest.nfev
    stats.iterations += rest.iterations
    stats.abs_residuals += rest.abs_residuals
    stats.rel_residuals += rest.rel_residuals
    stats.converged, stats.diverged = rest.converged, rest.diverged
    return z, stats
