r"""Record the energy during inference, per block, per solver iteration or descent step
(``docs/concepts/dynamics.md#energy-descent-during-inference``).

Three entry points share one record type, :class:`EnergyRecord`:

* :func:`record_descent` — a whole :class:`~hopfield.EnergyGraph` under
  :func:`hopfield.dynamics.descend`;
* :func:`record_block` — a :class:`~hopfield.DerivedBlock` on a batch of visible states;
* :func:`record_model` — every derived block of a model (e.g. a
  :class:`~hopfield.models.HopfieldClassifier`, fresh or from a checkpoint through
  :func:`hopfield.cli.energy.load_model`) on a batch.

**Which energy.** For one group of a block (``docs/concepts/fast_layers.md#fast-layers``) the
recorded energy is the group's energy at the current iterate,

$$E_\text{group} = \sum_{A\in\text{group}} \big(\langle x_A, g_A\rangle - L_A(x_A)\big)
  + \sum_{s\in\text{group}} E_s(g),$$

over the visible layer (with the group's own Lagrangian) and the group's fast layers; clamped
layers and memory copies are constants and left out. Fast layers that the solver eliminates inside
its map (iMixer's $x_3$) sit at their conditional optimum $x_3 = I_3(g_2)$ given the iterate. Then,
for a tied group with convex Lagrangians, each plain fixed-point iteration
$x_2 \leftarrow y + F(x_2)$ is exact block-coordinate minimisation with $x_1$ clamped
(``docs/concepts/fast_layers.md#tied-descent``) and the recorded energy never increases from one
iteration to the next.

**Residual steps.** For a group whose visible layer takes residual steps $x \leftarrow x + \alpha I$
(the Energy Transformer), the energy per descent step leaves out the visible layer's Legendre
term: with the fast layers settled $I = -\partial E_\text{syn}/\partial g$, so
$\mathrm dE_\text{syn}/\mathrm dt = -I^\top (\nabla^2 L)\, I \le 0$ for a convex $L$ — the step
descends $E_\text{syn}(g(x))$ (synapses plus fast layers), not the energy with the visible leak.
Leaky steps $x \leftarrow x + (\alpha/\tau)(I - x)$ descend the full energy, which is recorded.

**Untied or non-convex blocks** (``docs/concepts/untying.md#untying``) have no Lyapunov function:
the record holds the fixed-point residual and the energy of the *tied surrogate* (synapse
``energy()`` with forward weights), and says so in the flags ``tied``, ``convex``, ``lyapunov`` (from
:func:`hopfield.lyapunov_report`) and the ``label`` (:data:`LABEL_LYAPUNOV`, :data:`LABEL_UNTIED`
or "tied but …: no descent guarantee").

**Columns** (one row per block, group, step and sample): ``energy``, ``E_<name>`` per term,
``residual`` (solver iterations: $\lVert x - (y + F(x))\rVert$ of the iterated layers; descent
steps: $\lVert\Delta x\rVert/\alpha$) and ``grad_norm`` ($\lVert\partial E/\partial g\rVert$ of
the recorded energy over the layers the step moves), per sample.

Example:
    >>> import torch, hopfield as hf
    >>> from hopfield.analysis import record_block
    >>> blk = hf.blocks.tied_imixer_block(num_tokens=8, dim=8, max_iter=3)
    >>> rec = record_block(blk, torch.randn(2, 8, 8))
    >>> rec.groups(0)
    ['token mixing (iMLP)', 'channel mixing']
    >>> rec.series(0, 'token mixing (iMLP)')['energy'].shape  # (iterations + 1, batch)
    (4, 2)
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..core.errors import NonFiniteError, WiringError
from ..core.graph import EnergyGraph
from ..derivation import DerivedBlock, lyapunov_report
from ..dynamics.descent import RULES, descend
from ..dynamics.solvers import get_solver

__all__ = ["EnergyRecord", "record_descent", "record_block", "record_model", "record_energy",
           "LABEL_LYAPUNOV", "LABEL_UNTIED", "make_label"]

LABEL_LYAPUNOV = "tied: Lyapunov energy"
LABEL_UNTIED = "untied: residual + surrogate energy, no descent guarantee"
_FIXED = ("source", "block", "block_name", "group", "kind", "repeat", "iteration", "step",
          "sample", "energy", "residual", "grad_norm", "tied", "convex", "lyapunov", "label")


def make_label(tied: bool, convex: bool, lyapunov: bool, why: str = "") -> str:
    """The row label: what the recorded energy is and whether it must descend."""
    if lyapunov:
        return LABEL_LYAPUNOV
    if not tied:
        return LABEL_UNTIED
    why = why or ("non-convex" if not convex else "no guarantee")
    return f"tied but {why}: residual + energy, no descent guarantee"


@dataclass
class Point:
    """One recorded iterate: per-sample arrays (``(batch,)``) and what they belong to."""

    block: int
    block_name: str
    group: str
    kind: str  # "iteration" (fast-group solve) or "step" (visible-layer descent step)
    repeat: int
    iteration: int
    step: int
    energy: np.ndarray
    residual: np.ndarray
    grad_norm: np.ndarray
    terms: dict
    tied: bool
    convex: bool
    lyapunov: bool
    label: str


@dataclass
class EnergyRecord:
    """Energies, residuals and gradient norms recorded during inference (tidy, long format).

    ``points`` hold per-sample arrays; :meth:`to_rows` expands them to one dict per block, group,
    step and sample. ``blocks`` maps a block index to its name and Lyapunov report. ``outputs``
    holds what the run returned (final states or logits; not serialised).
    """

    source: str = ""
    points: list = field(default_factory=list)
    blocks: dict = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    outputs: object = None

    # ------------------------------------------------------------------ queries
    @property
    def batch_size(self) -> int:  # samples per point
        return len(self.points[0].energy) if self.points else 0

    def groups(self, block: int) -> list[str]:
        """Group names of ``block``, in order of first appearance."""
        return list(dict.fromkeys(p.group for p in self.points if p.block == block))

    def series(self, block: int, group: str | None = None) -> dict:
        """Arrays for one block and group: ``step`` ``(S,)``, ``energy``/``residual``/
        ``grad_norm`` ``(S, batch)``, ``terms`` ``{name: (S, batch)}``, and the row flags."""
        if group is None:
            group = self.groups(block)[0]
        pts = [p for p in self.points if p.block == block and p.group == group]
        if not pts:
            raise ValueError(f"no points recorded for block {block}, group {group!r}; recorded "
                             f"groups: {self.groups(block)}.")
        names = list(dict.fromkeys(k for p in pts for k in p.terms))
        nan = np.full_like(pts[0].energy, np.nan)
        return {"step": np.array([p.step for p in pts]),
                "energy": np.stack([p.energy for p in pts]),
                "residual": np.stack([p.residual for p in pts]),
                "grad_norm": np.stack([p.grad_norm for p in pts]),
                "terms": {k: np.stack([p.terms.get(k, nan) for p in pts]) for k in names},
                "kind": pts[0].kind, "label": pts[-1].label, "tied": pts[-1].tied,
                "convex": pts[-1].convex, "lyapunov": pts[-1].lyapunov}

    def max_increase(self, block: int | None = None, group: str | None = None,
                     relative: bool = True) -> float:
        """Largest rise of the energy between consecutive points of any series (any sample),
        relative to the energy's scale when ``relative``; ``<= 0`` means it never increased."""
        worst = -math.inf
        for b in ([block] if block is not None else sorted(self.blocks)):
            for gname in ([group] if group is not None else self.groups(b)):
                e = self.series(b, gname)["energy"]
                rise = np.diff(e, axis=0) / (np.maximum(np.abs(e[:-1]), 1.0) if relative else 1.0)
                worst = max(worst, float(rise.max())) if len(rise) else worst
        return worst

    # ------------------------------------------------------------------ export
    def to_rows(self) -> list[dict]:
        """One dict per (block, group, step, sample): the fixed columns, then ``E_<term>``."""
        rows = []
        per_sample = ("energy", "residual", "grad_norm")
        for p in self.points:
            same = {k: getattr(p, k) for k in _FIXED[1:] if k != "sample" and k not in per_sample}
            for i in range(len(p.energy)):
                row = {"source": self.source, **same, "sample": i}
                row.update({k: float(getattr(p, k)[i]) for k in per_sample})
                row.update({f"E_{k}": float(v[i]) for k, v in p.terms.items()})
                rows.append(row)
        return rows

    def columns(self) -> list[str]:
        terms = dict.fromkeys(f"E_{k}" for p in self.points for k in p.terms)
        return list(_FIXED) + list(terms)

    def to_csv(self, path: str | os.PathLike) -> None:
        """Write the rows as CSV (a term that a group lacks is an empty cell)."""
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.columns(), restval="")
            w.writeheader()
            w.writerows(self.to_rows())

    def to_json(self, path: str | os.PathLike) -> None:
        """Write ``{"format", "source", "blocks", "meta", "columns", "rows"}`` as JSON."""
        doc = {"format": "hopfield.energy/1", "source": self.source,
               "blocks": {str(k): v for k, v in self.blocks.items()}, "meta": self.meta,
               "columns": self.columns(), "rows": self.to_rows()}
        with open(path, "w") as f:
            json.dump(doc, f, allow_nan=True)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> EnergyRecord:
        """Read a record written by :meth:`to_json` (for re-plotting)."""
        with open(path) as f:
            doc = json.load(f)
        rec = cls(source=doc.get("source", ""), meta=doc.get("meta", {}),
                  blocks={int(k): v for k, v in doc.get("blocks", {}).items()})
        groups: dict = {}
        for r in doc["rows"]:
            key = (r["block"], r["group"], r["step"], r["repeat"], r["iteration"])
            groups.setdefault(key, []).append(r)
        for (b, g, s, rep, it), rs in groups.items():
            rs.sort(key=lambda r: r["sample"])
            r0 = rs[0]
            cols = {k: np.array([r[k] for r in rs], dtype=float) for k in r0
                    if k in ("energy", "residual", "grad_norm") or k.startswith("E_")}
            terms = {k[2:]: v for k, v in cols.items() if k.startswith("E_")}
            rec.points.append(Point(b, r0["block_name"], g, r0["kind"], rep, it, s,
                                    cols["energy"], cols["residual"], cols["grad_norm"], terms,
                                    r0["tied"], r0["convex"], r0["lyapunov"], r0["label"]))
        return rec


# ---------------------------------------------------------------------- helpers
def _norm(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).norm(dim=-1)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def _why_not(rep) -> str:
    """The first unproven check of a report, in a few words (for the row label)."""
    status = getattr(rep, "status", {}) or {}
    for name in ("step_size", "bounded_below", "single_energy", "fast_layers", "copies"):
        if status.get(name, "proved") != "proved":
            return {"step_size": "residual or large step", "bounded_below": "not bounded below",
                    "single_energy": "several energies", "fast_layers": "inexact fast layers",
                    "copies": "memory copies"}[name]
    return "no guarantee"


def _check_finite(rec: EnergyRecord) -> None:
    """Refuse a record with NaN/Inf energies (nothing plots NaN): name the first bad point."""
    for p in rec.points:
        if not np.isfinite(p.energy).all():
            bad = np.flatnonzero(~np.isfinite(p.energy)).tolist()
            raise NonFiniteError(
                f"energy record of {p.block_name!r}: the energy is NaN/Inf at group "
                f"{p.group!r}, {p.kind} {p.step} (pass {p.repeat}) for sample(s) {bad[:8]}. Check "
                f"the input and the weights for NaN/Inf (check_finite=False records it anyway).")


def _report_info(obj, step_size=None, rule=None) -> dict:
    rep = (lyapunov_report(obj, step_size=step_size) if rule is None else
           lyapunov_report(obj, step_size=step_size, rule=rule))
    tied = bool(rep.checks.get("tied", True))
    convex = bool(rep.checks.get("convex", True)) and bool(rep.checks.get("exact_activations", True))
    return {"tied": tied, "convex": convex, "lyapunov": bool(rep.holds),
            "iterations_descend": bool(getattr(rep, "iterations_descend", tied and convex)),
            "label": make_label(tied, convex, rep.holds, _why_not(rep) if convex else ""),
            "report": str(rep), "checks": {k: bool(v) for k, v in rep.checks.items()}}


def _lagrangians(block: DerivedBlock, plan) -> dict:
    """``{layer: Lagrangian}`` for the layers of one group (the visible layer and its memory
    copies through the group's own Lagrangian)."""
    graph, vis = block.graph, block.visible
    lag = plan.lagrangian or graph.lagrangian_of(vis)
    layers = dict.fromkeys(n for s in plan.synapses for n in graph.edges[s])
    return {n: lag if n == vis or graph.neurons[n].copy_of == vis else graph.lagrangian_of(n)
            for n in layers}


def _group_energy(block: DerivedBlock, plan, xs: dict, *, include_visible: bool, grad_layers):
    r"""Terms ``{name: (batch,)}``, total and $\lVert\partial E/\partial g\rVert$ of one group's
    energy at the states ``xs`` (activations are independent leaves: $\partial/\partial g_A$ of a
    Legendre term is $x_A$, of a synapse energy $-I_A$ of the tied surrogate)."""
    graph, vis = block.graph, block.visible
    lags = _lagrangians(block, plan)
    with torch.enable_grad():
        gs = {n: lag.activation(xs[n].detach()).detach().requires_grad_(True)
              for n, lag in lags.items()}
        shown = [n for n in lags if graph.neurons[n].is_fast or (n == vis and include_visible)]
        terms = {n: graph.neurons[n].energy(xs[n].detach(), gs[n], lags[n]) for n in shown}
        for s in plan.synapses:
            terms[s] = graph.synapses[s].energy(*(gs[m] for m in graph.edges[s]))
        total = sum(terms.values())
        wrt = [n for n in grad_layers if n in gs]
        grads = torch.autograd.grad(total.sum(), [gs[n] for n in wrt], allow_unused=True)
    sq = sum((_norm(gr) ** 2 for gr in grads if gr is not None), torch.zeros_like(total))
    return {k: v.detach() for k, v in terms.items()}, total.detach(), sq.sqrt().detach()


def _dyn_currents(block, plan, xs, targets):
    """The currents the block's dynamics use (half energies when untied), given states ``xs``."""
    gs = {n: lag.activation(xs[n]) for n, lag in _lagrangians(block, plan).items()}
    return block.graph.currents(gs=gs, targets=targets, synapses=plan.synapses,
                                method=block.currents_method)


def _run_settings(block: DerivedBlock, n_iter=None, solver=None, tol=None) -> dict:
    """Keyword overrides for :meth:`DerivedBlock.run`: the solve budget of implicit groups, or
    the step count of a repeated block (the plans themselves are never edited)."""
    if any(c.implicit for p in block.plans for c in p.components):
        out = {"max_iter": None if n_iter is None else int(n_iter), "solver": solver,
               "tol": None if tol is None else float(tol)}
        return {k: v for k, v in out.items() if v is not None}
    if n_iter is not None and block.repeats > 1:
        return {"repeats": max(int(n_iter), 1)}
    return {}


def _check_settings(n_iter, solver, tol):
    if n_iter is not None and not (isinstance(n_iter, int) and n_iter >= 0):
        raise ValueError(f"n_iter must be an int >= 0, got {n_iter!r}.")
    if solver is not None:
        get_solver(solver)
    if tol is not None and not (isinstance(tol, (int, float)) and tol > 0):
        raise ValueError(f"tol must be a positive number, got {tol!r}.")


# ---------------------------------------------------------------------- blocks
def _solve_flags(info, plan):
    """A plain (undamped) fixed-point iteration of a tied, convex group is exact block-coordinate
    minimisation (``docs/concepts/fast_layers.md#tied-descent``); accelerated solvers promise no
    monotone energy."""
    plain = plan.solver == "fixed_point" and plan.solver_options.get("damping", 1.0) == 1.0
    lyap = info["iterations_descend"] and plain
    why = "non-convex" if not info["convex"] else f"solver {plan.solver!r}"
    return info["tied"], info["convex"], lyap, make_label(info["tied"], info["convex"], lyap, why)


def _solve_points(block, plan, comp, iterates, xs):
    """``(terms, total, residual, grad_norm)`` at each iterate of one implicit solve, then at the
    solution; eliminated layers at their conditional optimum given the iterate."""
    for states in [*iterates, {n: xs[n] for n in comp.state}]:
        xs_it = {**xs, **states}
        for n in comp.eliminated:
            xs_it[n] = torch.zeros_like(xs[n])  # placeholder: the current does not read it
            xs_it[n] = _dyn_currents(block, plan, xs_it, [n])[n]
        cur = _dyn_currents(block, plan, xs_it, comp.state)
        resid = sum(_norm(xs_it[n] - cur[n]) ** 2 for n in comp.state).sqrt()
        terms, total, gnorm = _group_energy(block, plan, xs_it, include_visible=True,
                                            grad_layers=comp.layers)
        yield terms, total, resid, gnorm


def _record_block_into(rec: EnergyRecord, block: DerivedBlock, x: torch.Tensor, clamped: dict,
                       index: int, name: str, settings: dict) -> torch.Tensor:
    info = _report_info(block)
    rec.blocks[index] = {"name": name, **info}
    step_flags = (info["tied"], info["convex"], info["lyapunov"], info["label"])
    counters: dict = {}

    def add(plan, kind, repeat, it, terms, total, resid, gnorm, flags):
        k = counters[plan.name] = counters.get(plan.name, -1) + 1
        rec.points.append(Point(index, name, plan.name, kind, repeat, it, k, _np(total),
                                _np(resid), _np(gnorm), {n: _np(v) for n, v in terms.items()},
                                *flags))

    def add_step(plan, repeat, x_in, xs, cur):
        leaky = plan.step == "leaky"  # residual steps descend E_syn: no visible Legendre term
        fast = [n for c in plan.components for n in c.layers]
        terms, total, gnorm = _group_energy(block, plan, xs, include_visible=leaky,
                                            grad_layers=[block.visible, *fast])
        resid = _norm(cur - x_in) if leaky else _norm(cur)  # ||Δx|| / α
        add(plan, "step", repeat, 0, terms, total, resid, gnorm, step_flags)

    training = block.training
    block.eval()
    try:
        with torch.no_grad():
            out, trace = block.run(x, clamped, trace=True, **settings)
            last = {}
            for st in trace.steps:
                plan, r = st.plan, st.repeat
                vis = block.visible
                for solve in st.solves:
                    for it, (terms, total, resid, gnorm) in enumerate(
                            _solve_points(block, plan, solve.component, solve.iterates, st.xs)):
                        add(plan, "iteration", r, it, terms, total, resid, gnorm,
                            _solve_flags(info, plan))
                if not st.solves:
                    add_step(plan, r, st.before[vis], st.xs, st.currents[vis])
                    last[plan.name] = (plan, r, st.after[vis])
            for plan, r, new in last.values():  # the energy after each group's last step
                if r == trace.steps[-1].repeat:
                    with parametrize.cached():
                        _, xs2, _, cur2 = block.group_step(plan, new, clamped,
                                                           return_states=True)
                    add_step(plan, r + 1, new, xs2, cur2)
    finally:
        block.train(training)
    return out


def record_block(block: DerivedBlock, x: torch.Tensor, clamped: Mapping | None = None, *,
                 n_iter: int | None = None, solver: str | None = None, tol: float | None = None,
                 name: str = "block", check_finite: bool = True) -> EnergyRecord:
    """Run ``block`` on the visible states ``x`` ``(batch, *shape)`` and record every solver
    iteration of its implicit groups and every descent step of its other groups.

    ``n_iter``/``solver``/``tol`` override the implicit solves (iMixer's $k$); for a block that
    repeats one group (the Energy Transformer) ``n_iter`` sets the number of descent steps.
    The block runs in eval mode; its settings are restored afterwards. ``outputs`` holds the
    block's output.
    """
    if not isinstance(block, DerivedBlock):
        raise TypeError(f"record_block: expected a DerivedBlock, got {type(block).__name__}.")
    shape = block.graph.neurons[block.visible].shape
    if x.dim() != len(shape) + 1 or tuple(x.shape[1:]) != shape:
        raise WiringError(f"record_block: visible layer {block.visible!r} expects input (batch, "
                          f"{', '.join(map(str, shape))}), got {tuple(x.shape)}.")
    _check_settings(n_iter, solver, tol)
    rec = EnergyRecord(source=name)
    rec.outputs = _record_block_into(rec, block, x, dict(clamped or {}), 0, name,
                                     _run_settings(block, n_iter, solver, tol))
    if check_finite:
        _check_finite(rec)
    return rec


def record_model(model: nn.Module, inputs: torch.Tensor, *, n_iter: int | None = None,
                 solver: str | None = None, tol: float | None = None,
                 source: str | None = None, check_finite: bool = True) -> EnergyRecord:
    """Run ``model`` on ``inputs`` and record every :class:`~hopfield.DerivedBlock` inside it
    (in forward order), each from the input it receives. ``outputs`` holds the model's output.
    """
    blocks = [(n, m) for n, m in model.named_modules() if isinstance(m, DerivedBlock)]
    if not blocks:
        raise TypeError(f"record_model: {type(model).__name__} contains no DerivedBlock; use "
                        f"record_block or record_descent.")
    _check_settings(n_iter, solver, tol)
    src = source or (getattr(model, "config", {}) or {}).get("name") or type(model).__name__
    rec = EnergyRecord(source=src)
    rec.meta["model_config"] = {k: v for k, v in (getattr(model, "config", {}) or {}).items()
                                if isinstance(v, (str, int, float, bool, type(None)))}
    order: list = []
    outputs: dict = {}

    def pre_hook(name):
        def hook(module, args, kwargs):
            x = args[0] if args else kwargs["x"]
            clamped = {k: v for k, v in kwargs.items() if k != "x"}
            order.append(name)
            settings = _run_settings(module, n_iter, solver, tol)
            outputs[name] = _record_block_into(rec, module, x, clamped, len(order) - 1, name,
                                               settings)
        return hook

    def post_hook(name):
        def hook(module, args, kwargs, output):
            return outputs.pop(name)  # the recorded run (with the overrides) is the output
        return hook

    with contextlib.ExitStack() as stack, torch.no_grad():
        for n, m in blocks:
            stack.callback(m.register_forward_pre_hook(pre_hook(n), with_kwargs=True).remove)
            stack.callback(m.register_forward_hook(post_hook(n), with_kwargs=True).remove)
        stack.callback(model.train, model.training)
        model.eval()
        rec.outputs = model(inputs)
    if check_finite:
        _check_finite(rec)
    return rec


# ---------------------------------------------------------------------- graphs
def record_descent(graph: EnergyGraph, xs: Mapping[str, torch.Tensor], *, steps: int = 100,
                   step_size: float = 0.1, rule: str = "leaky", tol: float | None = None,
                   method: str = "auto", source: str = "graph",
                   check_finite: bool = True) -> EnergyRecord:
    """Run :func:`hopfield.dynamics.descend` step by step from ``xs`` and record each state.

    The energy is the graph's total energy for ``rule="leaky"``; for ``rule="residual"`` the
    moving layers' Legendre terms are left out (see the module notes). Fast layers are set to
    their currents by each step, as in ``descend``. ``outputs`` holds the final states.
    """
    if rule not in RULES or not (isinstance(steps, int) and steps >= 0):
        raise ValueError(f"record_descent: expected rule in {RULES} and an int steps >= 0, got "
                         f"rule={rule!r}, steps={steps!r}.")
    graph.check_states(xs)
    xs = graph.fill_copies(dict(xs))
    info = _report_info(graph, step_size, rule)
    rec = EnergyRecord(source=source, blocks={0: {"name": source, **info}},
                       meta={"rule": rule, "step_size": step_size, "steps": steps})
    movable = [n for n, l in graph.neurons.items() if not l.clamped and not l.is_fast]
    fast = [n for n, l in graph.neurons.items() if l.is_fast]
    flags = (info["tied"], info["convex"], info["lyapunov"], info["label"])
    with torch.no_grad():
        for k in range(steps + 1):
            terms = graph.energy_terms(xs)
            if rule == "residual":
                terms = {n: v for n, v in terms.items() if n not in movable}
            total = sum(terms.values())
            cur = graph.currents(xs, method=method)
            gap = {n: (-cur[n] if rule == "residual" else xs[n] - cur[n]) for n in movable}
            resid = sum((_norm(g) ** 2 for g in gap.values()), torch.zeros_like(total)).sqrt()
            gsq = sum((_norm(xs[n] - cur[n]) ** 2 for n in fast), resid ** 2)
            rec.points.append(Point(0, source, "descent", "step", 0, k, k, _np(total),
                                    _np(resid), _np(gsq.sqrt()),
                                    {n: _np(v) for n, v in terms.items()}, *flags))
            if k == steps or (tol is not None and float(gsq.sqrt().max()) < tol):
                break
            xs, _ = descend(graph, xs, steps=1, step_size=step_size, rule=rule, record=False,
                            method=method)
    rec.outputs = xs
    if check_finite:
        _check_finite(rec)
    return rec


def record_energy(obj, inputs, **kwargs) -> EnergyRecord:
    """:func:`record_descent`, :func:`record_block` or :func:`record_model`, by type of ``obj``."""
    if isinstance(obj, EnergyGraph):
        return record_descent(obj, inputs, **kwargs)
    if isinstance(obj, DerivedBlock):
        return record_block(obj, inputs, **kwargs)
    if isinstance(obj, nn.Module):
        return record_model(obj, inputs, **kwargs)
    raise TypeError(f"record_energy: expected an EnergyGraph, a DerivedBlock or a model, got "
                    f"{type(obj).__name__}.")
