"""Dynamics: energy descent, fixed-point solvers, gradients through equilibria, spectral norm."""

from .compiled import CompileFallbackWarning, descend_compiled
from .descent import RULES, DescentStats, descend
from .implicit import GRAD_MODES, solve_fixed_point
from .safeguarded import safeguarded
from .solvers import (
    ConvergenceWarning,
    DivergenceError,
    SolverStats,
    anderson,
    broyden,
    fixed_point,
    get_solver,
    register_solver,
    solver_names,
)
from .spectral import SoftSpectralNorm, operator_norm, spectral_norm, spectral_norm_of

__all__ = [
    "RULES", "DescentStats", "descend", "GRAD_MODES", "solve_fixed_point", "ConvergenceWarning",
    "DivergenceError", "SolverStats", "anderson", "broyden", "fixed_point", "get_solver",
    "register_solver", "solver_names", "SoftSpectralNorm", "operator_norm", "spectral_norm",
    "spectral_norm_of", "descend_compiled", "CompileFallbackWarning", "safeguarded",
]

# plain iteration that switches to Anderson when the residual stalls (it builds on solvers.py,
# so it is registered here rather than there)
register_solver("safeguarded", safeguarded)
