r"""Compiled energy descent: ``torch.compile``\ d chunks of descent steps.

:func:`descend_compiled` runs exactly the dynamics of :func:`hopfield.dynamics.descend`
(docs/concepts/dynamics.md#discrete-steps; same rules, same order of updates, same stats record)
as a loop over one compiled graph of ``chunk`` steps (:mod:`hopfield.dynamics.chunk`,
docs/concepts/dynamics.md#compiled-descent): per step, activations and currents of every
non-clamped layer, the step rule on the slow layers, the fast layers set to their currents; the
stats and the tolerance check are computed inside the graph from the same currents. Inductor fuses
the elementwise work around the matrix products, and a chunk pays Python and guard overhead once
for ``chunk`` steps; on a GPU the default mode replays the chunk as a CUDA graph. Currents without
a closed form are compiled too (under ``torch.compile`` the graph takes them with
``torch.func.grad``, docs/concepts/synapses.md#currents-under-torch-func). If a chunk cannot be
captured as one graph (e.g. a synapse energy that branches on a value) or compilation fails (no
C compiler, an unsupported backend), the function warns with :class:`CompileFallbackWarning` and
runs the same chunk eagerly; the results are the same either way, only the speed differs.

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
from ..core.validate import is_int
from .chunk import currents_and_terms, make_descent_chunk
from .descent import DescentStats, _grad_norm, check_descent_args

__all__ = ["descend_compiled", "make_descent_step", "CompileFallbackWarning"]


class CompileFallbackWarning(UserWarning):
    """``torch.compile`` could not compile the descent step; the eager step runs instead."""


# graph -> {key: compiled chunk, or None (= compilation failed: run it eagerly)}
_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def make_descent_step(graph: EnergyGraph, *, step_size: float = 0.1, rule: str = "leaky",
                      method: str = "auto") -> Callable[[dict], dict]:
    r"""One eager descent step ``xs -> xs'`` of :func:`~hopfield.dynamics.descend`, as a function
    (a one-step :func:`~hopfield.dynamics.chunk.make_descent_chunk` without stats).

    It skips the state checks (done once by the caller), so it is free of data-dependent
    branches and can be traced by ``torch.compile``.
    """
    one = make_descent_chunk(graph, length=1, step_size=step_size, rule=rule, method=method,
                             record=False)

    def descent_step(xs: dict) -> dict:
        return one(xs, graph.currents(gs=graph.activations(xs), method=method))[0]

    return descent_step


def _key(rule, step_size, method, mode, options, *extra):
    return (rule, float(step_size), method, mode, tuple(sorted((options or {}).items())), *extra)


def _compile(fn, mode, options):
    kw = {"options": dict(options)} if options else {"mode": mode}
    try:
        return torch.compile(fn, fullgraph=True, **kw)
    except RuntimeError as err:  # unknown mode or option: say which, not all valid ones
        raise ValueError(f"descend_compiled: {str(err).split(', known options')[0]} "
                         f"(see torch._inductor.list_options()).") from None


def _fallback(graph, key, err):
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    warnings.warn(f"descend_compiled: torch.compile could not compile the descent step "
                  f"({type(err).__name__}: {first[:200]}); falling back to the eager step "
                  f"(same results, eager speed).", CompileFallbackWarning, stacklevel=3)
    _CACHE.setdefault(graph, {})[key] = None


def _clone(tree):
    return torch.utils._pytree.tree_map(
        lambda t: t.clone() if isinstance(t, torch.Tensor) else t, tree)


def descend_compiled(graph: EnergyGraph, xs: dict[str, torch.Tensor], *, steps: int = 100,
                     step_size: float = 0.1, rule: str = "leaky", tol: float | None = None,
                     record: bool = True, method: str = "auto", compile: bool = True,
                     mode: str | None = None, options: dict | None = None,
                     chunk: int = 2) -> tuple[dict, DescentStats]:
    r""":func:`~hopfield.dynamics.descend`, compiled in chunks of ``chunk`` steps.

    Same arguments, returns and stats as :func:`~hopfield.dynamics.descend` (same states, same
    ``stats.steps``/``converged``, energies and gradient norms equal to round-off), plus:

    Args:
        chunk: steps per compiled graph. The descent runs ``steps // chunk`` calls of one graph
            and, when ``chunk`` does not divide ``steps``, one call of a graph of the remainder
            (compiled once per length, then reused). Larger chunks cost less per step and more
            compile time (Inductor unrolls the steps: about 1.5 s per step on a 2-core CPU).
        compile: ``False`` runs the same chunk function eagerly (a reference for tests).
        mode: passed to ``torch.compile``. ``None`` picks ``"reduce-overhead"`` (CUDA graphs)
            when the states are on a GPU and the default mode otherwise.
        options: inductor options for ``torch.compile`` instead of ``mode`` (e.g.
            ``{"cpp.threads": 1}``: single-threaded elementwise kernels on a CPU, leaving the
            threads to the matrix products).

    Stats (``record=True``) are computed inside the compiled graph from the currents each step
    needs anyway (docs/concepts/dynamics.md#compiled-descent); ``record=False`` skips them. A
    ``tol`` is checked inside the graph too: the steps after convergence within a chunk leave the
    states unchanged, and the host reads the flag once per chunk.
    """
    xs, movable, fast = check_descent_args("descend_compiled", graph, xs, steps, step_size,
                                           rule, tol)
    if not (is_int(chunk) and chunk >= 1):
        raise ValueError(f"descend_compiled: chunk must be an int >= 1, got {chunk!r}.")
    if mode is not None and options:
        raise ValueError("descend_compiled: pass either mode or options, not both.")
    on_gpu = any(v.is_cuda for v in xs.values())
    if mode is None and not options and on_gpu:
        mode = "reduce-overhead"
    graphs = mode in ("reduce-overhead", "max-autotune") and on_gpu  # CUDA graphs replay
    with_tol = tol is not None
    if compile and torch.is_grad_enabled() and any(p.requires_grad for p in graph.parameters()):
        # states after the first chunk depend on the weights and require grad: give the first
        # chunk states that do too, so one compiled graph serves every chunk (no recompile);
        # a state that did not require grad receives no gradient either way
        xs = {n: v if v.requires_grad else v.detach().requires_grad_() for n, v in xs.items()}
    stats = DescentStats()
    if record:
        cur, terms = currents_and_terms(graph, xs, method=method)
        terms = {k: v.detach() for k, v in terms.items()}
        stats.energy_terms.append(terms)
        stats.energy.append(sum(terms.values()))
        stats.grad_norm.append(_grad_norm(xs, cur, movable + fast).detach())
    else:
        cur = graph.currents(gs=graph.activations(xs), method=method)
    ref = next(iter(xs.values()))
    done = torch.zeros((), dtype=torch.bool, device=ref.device) if with_tol else None
    tol_t = torch.tensor(float(tol), dtype=ref.dtype, device=ref.device) if with_tol else None
    left, recorded, eager = steps, [], {}
    while left > 0:
        length = min(chunk, left)
        key = _key(rule, step_size, method, mode, options, length, record, with_tol)
        fn = _chunk_fn(graph, key, compile, length, step_size, rule, method, record, with_tol,
                       mode, options)
        args = (xs, cur, done, tol_t)
        result = None
        if fn is not None:
            try:
                if graphs:  # the next replay reuses the output buffers: copy them out first
                    torch.compiler.cudagraph_mark_step_begin()
                    result = _clone(fn(*args))
                else:
                    result = fn(*args)
            except Exception as err:  # noqa: BLE001 - any compile failure falls back to eager
                _fallback(graph, key, err)
        if result is None:  # not compiled, or compilation failed: the same chunk, eagerly
            if length not in eager:
                eager[length] = make_descent_chunk(graph, length=length, step_size=step_size,
                                                   rule=rule, method=method, record=record,
                                                   with_tol=with_tol)
            result = eager[length](*args)
        xs, cur, done, out = result
        taken = length if not with_tol else int(out["active"].sum())
        if record:  # kept per chunk; split into per-step entries once, at the end
            recorded.append((taken, out))
        stats.steps += taken
        left -= length
        if with_tol and bool(done):
            stats.converged = True
            break
    if recorded:
        _unpack_record(stats, recorded)
    return xs, stats


def _unpack_record(stats: DescentStats, recorded: list) -> None:
    """Append the chunks' stacked records to ``stats`` as one entry per step."""
    def steps(key):
        return torch.cat([out[key][:taken] for taken, out in recorded]).unbind(0)

    stats.energy.extend(steps("energy"))
    stats.grad_norm.extend(steps("grad_norm"))
    terms = {k: torch.cat([out["energy_terms"][k][:taken] for taken, out in recorded]).unbind(0)
             for k in recorded[0][1]["energy_terms"]}
    stats.energy_terms.extend({k: v[t] for k, v in terms.items()}
                              for t in range(len(stats.energy) - len(stats.energy_terms)))


def _chunk_fn(graph, key, compile, length, step_size, rule, method, record, with_tol, mode,
              options):
    """The compiled chunk for ``key`` (compiled on first use), or ``None`` to run eagerly."""
    if not compile:
        return None
    per_graph = _CACHE.setdefault(graph, {})
    if key not in per_graph:
        per_graph[key] = _compile(make_descent_chunk(
            graph, length=length, step_size=step_size, rule=rule, method=method, record=record,
            with_tol=with_tol), mode, options)
    return per_graph[key]
