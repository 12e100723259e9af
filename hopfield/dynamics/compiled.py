r"""Compiled energy descent: one ``torch.compile``\ d graph per descent step.

:func:`descend_compiled` runs exactly the dynamics of :func:`hopfield.dynamics.descend`
(docs/concepts/dynamics.md#discrete-steps; same rules, same order of updates, same stats record) but
hands the whole step to ``torch.compile(fullgraph=True)``:

1. activations $g_A = \nabla L_A(x_A)$ and currents $I_A$ of every non-clamped layer (closed forms
   where the synapses have them, so the step has no data-dependent Python branches);
2. ``leaky``: $x_A \leftarrow x_A + (\alpha/\tau_A)(I_A - x_A)$, or ``residual``:
   $x_A \leftarrow x_A + \alpha I_A$, for every slow, unclamped layer; copies refreshed;
3. fast layers set to their currents, one after another.

Inductor fuses the elementwise work around the matrix products and removes the per-step Python
overhead of the eager loop (currents without a closed form are compiled too: under
``torch.compile`` the graph takes them with ``torch.func.grad``,
docs/concepts/synapses.md#currents-under-torch-func). If the step cannot be captured as one
graph (e.g. a synapse energy that branches on a value) or compilation fails (no C compiler, an
unsupported backend), the function warns with :class:`CompileFallbackWarning` and runs the eager step instead;
the results are the same either way, only the speed differs.

Example:
    >>> import hopfield as hf, torch
    >>> g = hf.EnergyGraph({"v": hf.NeuronLayer(4, hf.lagrangians.Identity()),
    ...                     "h": hf.NeuronLayer(3, hf.lagrangians.ReLU())},
    ...                    {"W": hf.synapses.Dense(4, 3)}, {"W": ("v", "h")})
    >>> xs, st = hf.dynamics.descend_compiled(g, g.init_states(2, std=1.0), steps=5,
    ...                                       compile=False)
    >>> len(st.energy)
    6
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable

import torch

from ..core.graph import EnergyGraph
from .descent import DescentStats, _grad_norm, check_descent_args, descent_layers
from .steps import step

__all__ = ["descend_compiled", "make_descent_step", "CompileFallbackWarning"]


class CompileFallbackWarning(UserWarning):
    """``torch.compile`` could not compile the descent step; the eager step runs instead."""


# graph -> {(rule, step_size, method, mode): compiled step or None (= compilation failed)}
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def make_descent_step(graph: EnergyGraph, *, step_size: float = 0.1, rule: str = "leaky",
                      method: str = "auto") -> Callable[[dict], dict]:
    r"""The eager descent step ``xs -> xs'`` of :func:`~hopfield.dynamics.descend`, as a function.

    It skips the state checks (done once by the caller), so it is free of data-dependent
    branches and can be traced by ``torch.compile``.
    """
    movable, fast = descent_layers(graph)
    taus = {n: graph.neurons[n].tau for n in movable}

    def descent_step(xs: dict) -> dict:
        cur = graph.currents(gs=graph.activations(xs), method=method)
        new = dict(xs)
        for n in movable:
            new[n] = step(xs[n], cur[n], rule=rule, step_size=step_size, tau=taus[n])
        new = graph.fill_copies(new)
        for n in fast:
            new[n] = graph.currents(gs=graph.activations(new), targets=[n], method=method)[n]
        return new

    return descent_step


def _key(rule, step_size, method, mode, options):
    return (rule, float(step_size), method, mode, tuple(sorted((options or {}).items())))


def _compiled_step(graph, step_size, rule, method, mode, options=None):
    per_graph = _CACHE.setdefault(graph, {})
    key = _key(rule, step_size, method, mode, options)
    if key not in per_graph:
        eager = make_descent_step(graph, step_size=step_size, rule=rule, method=method)
        kw = {"options": dict(options)} if options else {"mode": mode}
        try:
            per_graph[key] = torch.compile(eager, fullgraph=True, **kw)
        except RuntimeError as err:  # unknown mode or option: say which, not all valid ones
            raise ValueError(f"descend_compiled: {str(err).split(', known options')[0]} "
                             f"(see torch._inductor.list_options()).") from None
    return per_graph[key]


def _fallback(graph, key, err):
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    warnings.warn(f"descend_compiled: torch.compile could not compile the descent step "
                  f"({type(err).__name__}: {first[:200]}); falling back to the eager step "
                  f"(same results, eager speed).", CompileFallbackWarning, stacklevel=3)
    _CACHE.setdefault(graph, {})[key] = None


def descend_compiled(graph: EnergyGraph, xs: dict[str, torch.Tensor], *, steps: int = 100,
                     step_size: float = 0.1, rule: str = "leaky", tol: float | None = None,
                     record: bool = True, method: str = "auto", compile: bool = True,
                     mode: str | None = None,
                     options: dict | None = None) -> tuple[dict, DescentStats]:
    r""":func:`~hopfield.dynamics.descend` with the whole step compiled by ``torch.compile``.

    Same arguments, returns and stats as :func:`~hopfield.dynamics.descend`, plus:

    Args:
        compile: ``False`` runs the eager step (a reference for tests and benchmarks).
        mode: passed to ``torch.compile`` (e.g. ``"reduce-overhead"`` for CUDA graphs on a GPU).
        options: inductor options for ``torch.compile`` instead of ``mode`` (e.g.
            ``{"cpp.threads": 1}``: single-threaded elementwise kernels on a CPU, leaving the
            threads to the matrix products).

    The first call for a given graph, rule, step size and state shape compiles (seconds); later
    calls reuse the compiled step. Recording (``record=True``) or a ``tol`` evaluates energies
    outside the compiled step; pass ``record=False`` for the fastest descent.
    """
    xs, movable, fast = check_descent_args("descend_compiled", graph, xs, steps, step_size,
                                           rule)
    if mode is not None and options:
        raise ValueError("descend_compiled: pass either mode or options, not both.")
    key = _key(rule, step_size, method, mode, options)
    step = None
    if compile:
        cached = _CACHE.get(graph, {})
        step = cached[key] if key in cached else _compiled_step(graph, step_size, rule, method,
                                                                mode, options)
    eager = make_descent_step(graph, step_size=step_size, rule=rule, method=method)
    stats = DescentStats()

    def log():
        terms = {k: v.detach() for k, v in graph.energy_terms(xs, check=False).items()}
        cur = graph.currents(gs=graph.activations(xs), method=method)
        stats.energy_terms.append(terms)
        stats.energy.append(sum(terms.values()))
        stats.grad_norm.append(_grad_norm(xs, cur, movable + fast).detach())

    if record or tol is not None:
        log()
    # CUDA graphs (these modes, on a GPU) reuse their output buffers on the next replay
    graphs = mode in ("reduce-overhead", "max-autotune") and any(v.is_cuda for v in xs.values())
    for _ in range(steps):
        if step is not None:
            try:
                if graphs:  # the next replay reuses the output buffers: copy them out first
                    torch.compiler.cudagraph_mark_step_begin()
                    xs = {n: v.clone() for n, v in step(xs).items()}
                else:
                    xs = step(xs)
            except Exception as err:  # noqa: BLE001 - any compile failure falls back to eager
                _fallback(graph, key, err)
                step = None
        if step is None:
            xs = eager(xs)
        stats.steps += 1
        if record or tol is not None:
            log()
            if tol is not None and float(stats.grad_norm[-1].max()) < tol:
                stats.converged = True
                break
    if not record:
        stats.energy, stats.energy_terms, stats.grad_norm = [], [], []
    return xs, stats
