r"""Plots of recorded energy descent (figures only; the ``hopfield energy`` command that writes them
is :mod:`hopfield.cli_energy`).

:func:`plot_record` draws an :class:`~hopfield.analysis.record.EnergyRecord` (see
:mod:`hopfield.analysis.record` for what is recorded and why):

* **energy vs step** per block — the change $E - E_0$ from each series' first point, the batch
  mean with a 10–90 % quantile band, one line per group, the legend stating what the energy is
  ("tied: Lyapunov energy" or "untied: residual + surrogate energy, no descent guarantee");
* **per-term breakdown** — batch-mean Legendre and synapse terms stacked (positive parts up,
  negative parts down) with the total on top;
* **residual** on a log scale (solid) with the gradient norm $\lVert\partial E/\partial g\rVert$
  (dashed);
* for models with several blocks, a **small-multiples grid** (one energy panel per block) above
  the residuals of all blocks and the per-term breakdown at the last point of each block.

Example:
    >>> import torch, hopfield as hf
    >>> from hopfield.analysis import plot_record, record_block
    >>> rec = record_block(hf.blocks.tied_imixer_block(8, 8, max_iter=4), torch.randn(4, 8, 8))
    >>> fig = plot_record(rec)  # or plot_record(rec, "energy.png")
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np

from .record import EnergyRecord

__all__ = ["plot_record", "plot_energy", "plot_terms", "plot_residual"]

_STYLE = {"font.size": 9.5, "axes.titlesize": 10.5, "axes.labelsize": 9.5, "legend.fontsize": 8,
          "xtick.labelsize": 8.5, "ytick.labelsize": 8.5, "axes.spines.top": False,
          "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.25,
          "grid.linewidth": 0.6, "lines.linewidth": 1.8, "figure.dpi": 110, "savefig.dpi": 150}
_STEP_LABEL = "solver iteration / descent step"


def _pyplot():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _primary(rec: EnergyRecord, block: int) -> str:
    """The group with the longest series (the solve or the descent worth a breakdown)."""
    groups = rec.groups(block)
    return max(groups, key=lambda g: (len(rec.series(block, g)["step"]), -groups.index(g)))


def _integer_steps(ax):
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _band(ax, x, values, color, label, quantiles, *, style="-"):
    _integer_steps(ax)
    mean = np.nanmean(values, axis=1)
    ax.plot(x, mean, style, color=color, label=label, marker="o" if len(x) <= 12 else None,
            markersize=3.5)
    if values.shape[1] > 1:
        lo, hi = np.nanquantile(values, quantiles, axis=1)
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, linewidth=0)


def _short(label: str) -> str:
    return label.replace(", no descent guarantee", "\n(no descent guarantee)")


def _groups(rec, block, groups):
    return [g for g in rec.groups(block) if groups is None or g in groups]


def plot_energy(ax, rec: EnergyRecord, block: int, *, relative: bool = True,
                quantiles=(0.1, 0.9), legend: bool = True, groups=None):
    """Energy (change) vs step of every group of ``block``, mean and quantile band."""
    colors = _pyplot().get_cmap("tab10").colors
    for i, g in enumerate(_groups(rec, block, groups)):
        s = rec.series(block, g)
        e = s["energy"] - s["energy"][:1] if relative else s["energy"]
        _band(ax, s["step"], e, colors[i % 10], f"{g} — {_short(s['label'])}", quantiles)
    ax.set_xlabel(_STEP_LABEL)
    ax.set_ylabel("energy change $E - E_0$ [a.u.]" if relative else "energy $E$ [a.u.]")
    if relative:
        ax.axhline(0.0, color="0.4", linewidth=0.8, zorder=0)
    if legend:
        ax.legend(loc="best", frameon=False)


def plot_terms(ax, rec: EnergyRecord, block: int, group: str | None = None, *, legend=True):
    """Stacked batch-mean energy terms of one group vs step (positive up, negative down)."""
    group = group or _primary(rec, block)
    s = rec.series(block, group)
    x = s["step"]
    names = list(s["terms"])
    means = np.array([np.nanmean(s["terms"][k], axis=1) for k in names])  # (terms, steps)
    colors = _pyplot().get_cmap("tab20").colors
    cols = [colors[i % 20] for i in range(len(names))]
    _integer_steps(ax)
    ax.stackplot(x, np.clip(means, 0, None), colors=cols, labels=names, alpha=0.85)
    ax.stackplot(x, np.clip(means, None, 0), colors=cols, alpha=0.85)
    ax.plot(x, means.sum(0), color="black", linewidth=1.6, label="total $E$")
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set_xlabel(_STEP_LABEL)
    ax.set_ylabel("energy term (batch mean) [a.u.]")
    ax.set_title(f"per-term breakdown — {group}")
    if legend:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)


def plot_residual(ax, rec: EnergyRecord, block: int, *, quantiles=(0.1, 0.9), legend=True,
                  groups=None):
    """Residual (solid, with band) and gradient norm (dashed) of every group, log scale."""
    colors = _pyplot().get_cmap("tab10").colors
    for i, g in enumerate(_groups(rec, block, groups)):
        s = rec.series(block, g)
        c = colors[i % 10]
        what = "fixed-point residual" if s["kind"] == "iteration" else "step residual ‖Δx‖/α"
        _band(ax, s["step"], np.maximum(s["residual"], 1e-300), c, f"{g}: {what}", quantiles)
        ax.plot(s["step"], np.nanmean(s["grad_norm"], axis=1), "--", color=c, linewidth=1.1,
                label=f"{g}: ‖∂E/∂g‖")
    ax.set_yscale("log")
    ax.set_xlabel(_STEP_LABEL)
    ax.set_ylabel("residual, ‖∂E/∂g‖ [a.u., log]")
    ax.set_title("residual (log scale)")
    if legend:
        ax.legend(loc="best", frameon=False)


def _headline(rec: EnergyRecord, groups=None) -> str:
    labels = list(dict.fromkeys(p.label for p in rec.points if groups is None or p.group in groups))
    return " | ".join(labels)


def plot_record(rec: EnergyRecord, path: str | os.PathLike | None = None, *,
                title: str | None = None, relative: bool = True, quantiles=(0.1, 0.9),
                groups: list[str] | None = None):
    """Draw ``rec`` (one block: three panels; several: a small-multiples grid) and save it to
    ``path`` (PNG) if given; ``groups`` restricts a one-block plot to some groups. Returns the
    matplotlib figure."""
    if not rec.points:
        raise ValueError("plot_record: the record is empty (nothing was recorded).")
    plt = _pyplot()
    blocks = sorted(rec.blocks) or sorted({p.block for p in rec.points})
    title = title or f"Energy during inference — {rec.source}"
    with plt.rc_context(_STYLE):
        if len(blocks) == 1:
            b = blocks[0]
            fig, axes = plt.subplots(1, 3, figsize=(16, 4.6), layout="constrained",
                                     gridspec_kw={"width_ratios": [1.15, 1.0, 1.0]})
            plot_energy(axes[0], rec, b, relative=relative, quantiles=quantiles, groups=groups)
            axes[0].set_title(f"{rec.blocks.get(b, {}).get('name', b)}: energy vs step "
                              f"(mean, {int(100 * quantiles[0])}–{int(100 * quantiles[1])}% band)")
            main = _primary(rec, b) if groups is None else groups[0]
            plot_terms(axes[1], rec, b, main)
            plot_residual(axes[2], rec, b, quantiles=quantiles, groups=groups)
        else:
            fig = _plot_grid(plt, rec, blocks, relative, quantiles)
        fig.suptitle(f"{title}\n{_headline(rec, groups if len(blocks) == 1 else None)}",
                     fontsize=12)
        if path is not None:
            fig.savefig(path)
    return fig


def _plot_grid(plt, rec, blocks, relative, quantiles):
    n = len(blocks)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig = plt.figure(figsize=(4.2 * ncols + 1.5, 2.9 * nrows + 4.2), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[2.9 * nrows, 4.0])
    axes = np.atleast_1d(top.subplots(nrows, ncols, sharex=True, squeeze=False)).ravel()
    for ax, b in zip(axes, blocks, strict=False):
        plot_energy(ax, rec, b, relative=relative, quantiles=quantiles, legend=False)
        ax.set_title(f"{rec.blocks.get(b, {}).get('name', b)}")
        ax.label_outer()
    for ax in axes[n:]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    top.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3),
               frameon=False)
    top.suptitle(f"energy change per block (mean, {int(100 * quantiles[0])}–"
                 f"{int(100 * quantiles[1])}% band over the batch)", fontsize=10.5)
    ax_r, ax_t = bottom.subplots(1, 2, width_ratios=[1.0, 1.2])
    cmap = plt.get_cmap("viridis")
    for i, b in enumerate(blocks):
        g = _primary(rec, b)
        s = rec.series(b, g)
        ax_r.plot(s["step"], np.nanmean(np.maximum(s["residual"], 1e-300), axis=1),
                  color=cmap(i / max(n - 1, 1)), marker="o", markersize=3,
                  label=f"{rec.blocks.get(b, {}).get('name', b)}: {g}")
    ax_r.set_yscale("log")
    _integer_steps(ax_r)
    ax_r.set_xlabel(_STEP_LABEL)
    ax_r.set_ylabel("residual (batch mean) [a.u., log]")
    ax_r.set_title("residual of each block's main series")
    ax_r.legend(frameon=False, ncols=2 if n > 6 else 1, fontsize=7)
    names = list(dict.fromkeys(k for b in blocks for k in rec.series(b, _primary(rec, b))["terms"]))
    vals = np.array([[np.nanmean(rec.series(b, _primary(rec, b))["terms"].get(
        k, np.full((1, 1), np.nan))[-1]) for b in blocks] for k in names])
    vals = np.nan_to_num(vals)
    colors = plt.get_cmap("tab20").colors
    pos = np.zeros(n)
    neg = np.zeros(n)
    xs = np.arange(n)
    for i, k in enumerate(names):
        v = vals[i]
        ax_t.bar(xs, np.clip(v, 0, None), bottom=pos, color=colors[i % 20], label=k)
        ax_t.bar(xs, np.clip(v, None, 0), bottom=neg, color=colors[i % 20])
        pos += np.clip(v, 0, None)
        neg += np.clip(v, None, 0)
    ax_t.plot(xs, vals.sum(0), "k_", markersize=18, markeredgewidth=2.2, label="total $E$")
    ax_t.axhline(0.0, color="0.3", linewidth=0.8)
    ax_t.set_xticks(xs, [str(rec.blocks.get(b, {}).get("name", b)) for b in blocks],
                    rotation=30 if n > 6 else 0)
    ax_t.set_ylabel("energy term at the last point [a.u.]")
    ax_t.set_title("per-term breakdown (batch mean, last iterate of the main series)")
    ax_t.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    return fig
