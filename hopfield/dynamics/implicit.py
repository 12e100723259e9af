r"""Gradients through equilibria: unrolled, implicit (IFT) and phantom (one-step).

Given the fixed point $z^\star = f(z^\star, \theta)$ of a solve,

* ``"unrolled"`` backpropagates through every solver iteration (what the iMixer paper trains with;
  memory grows with the iteration count);
* ``"implicit"`` applies the implicit function theorem: the incoming gradient $v$ is replaced by
  $u$ solving $u = v + J_f(z^\star)^\top u$ (by the same solver), then flows through one
  application of $f$ to $\theta$ and the inputs. Memory is independent of the iteration count;
* ``"phantom"`` backpropagates through ``phantom_steps`` applications of $f$ started at the
  detached solution (the cheap one-step gradient of Fung et al. 2022 / Geng et al. 2021).

Every setting is checked before anything is solved (``max_iter``, ``tol``, ``backward_max_iter``,
``backward_tol``, ``phantom_steps``, and ``solver_options`` against the solver's signature). A
diverging forward or backward solve raises :class:`~hopfield.dynamics.DivergenceError` (see
``docs/concepts/fast_layers.md#convergence-and-divergence``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..core.autodiff import transform_active
from ..core.validate import check_int
from .guards import check_iteration_settings, check_solver_options, is_tracing
from .masked import static_solver
from .solvers import DivergenceError, SolverStats, get_solver

__all__ = ["GRAD_MODES", "solve_fixed_point"]

GRAD_MODES = ("unrolled", "implicit", "phantom")


def solve_fixed_point(f: Callable[[torch.Tensor], torch.Tensor], z0: torch.Tensor, *,
                      solver: str = "fixed_point", grad: str = "unrolled", max_iter: int = 4,
                      tol: float | None = None, backward_max_iter: int | None = None,
                      backward_tol: float | None = 1e-8, phantom_steps: int = 1,
                      solver_options: dict | None = None) -> tuple[torch.Tensor, SolverStats]:
    """Solve $z = f(z)$ from ``z0`` and attach the chosen gradient. Returns ``(z, stats)``.

    ``backward_max_iter`` (an int >= 1, default ``max(4 * max_iter, 50)``) and ``backward_tol``
    (a finite number > 0 or ``None``) drive the implicit backward solve; ``phantom_steps`` (an int
    >= 1) the phantom gradient. An empty batch returns ``z0`` unsolved (see the solvers' docs).
    """
    who = "solve_fixed_point"
    if grad not in GRAD_MODES:
        raise ValueError(f"Unknown gradient mode {grad!r}; valid: {', '.join(GRAD_MODES)}.")
    solve = get_solver(solver)
    check_iteration_settings(who, max_iter, tol)
    check_iteration_settings(who, backward_max_iter, backward_tol, max_name="backward_max_iter",
                             tol_name="backward_tol", min_iter=1, max_none_ok=True)
    check_int(who, "phantom_steps", phantom_steps, minimum=1)
    opts = check_solver_options(solver, solve, solver_options, who=who)
    empty = isinstance(z0, torch.Tensor) and z0.dim() > 0 and z0.shape[0] == 0
    if grad == "implicit" and torch.is_grad_enabled() and not empty and transform_active():
        raise ValueError(f"{who}: grad='implicit' attaches its gradient with an autograd hook on "
                         f"the solution, which torch.func transforms (vmap, jacrev, jacfwd, grad) "
                         f"cannot run; use grad='unrolled' or grad='phantom' under a transform "
                         f"(or torch.no_grad() for values only).")
    # compile/export/vmap cannot stop on a value: masked iterations (hopfield.dynamics.masked)
    forward = static_solver(solver, solve) if tol is not None and is_tracing(z0) else solve
    if grad == "unrolled" or not torch.is_grad_enabled() or empty:
        return forward(f, z0, max_iter=max_iter, tol=tol, **opts)
    with torch.no_grad():
        z_star, stats = forward(f, z0, max_iter=max_iter, tol=tol, **opts)
    z_star = z_star.detach()
    if grad == "phantom":
        z = z_star
        for _ in range(phantom_steps):
            z = f(z)
        return z, stats
    z_in = z_star.requires_grad_(True)
    z_out = f(z_in)
    bwd_iter = backward_max_iter if backward_max_iter is not None else max(4 * max_iter, 50)

    solving = [False]  # the hook also fires inside its own vector-Jacobian products below

    def hook(v):
        if solving[0] or v is None:
            # the inner VJPs of the backward solve pass through this hook too: leave them
            # unchanged (and an undefined incoming gradient stays undefined)
            return None

        def g(u):
            (jtu,) = torch.autograd.grad(z_out, z_in, u, retain_graph=True)
            return jtu + v

        solving[0] = True
        try:
            u, bstats = solve(g, v, max_iter=bwd_iter, tol=backward_tol, **opts)
        except DivergenceError as err:
            raise DivergenceError(f"{who}: the implicit backward solve u = v + J^T u diverged "
                                  f"(J is the feedback map's Jacobian at the solution): {err}",
                                  err.stats) from err
        finally:
            solving[0] = False
        stats.backward = bstats
        return u

    if z_out.requires_grad:
        z_out.register_hook(hook)
    return z_out, stats
