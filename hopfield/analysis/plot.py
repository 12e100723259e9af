r"""Plots of recorded energy descent (figures only; the ``hopfield energy`` command that writes them
is :mod:`hopfield.cli.energy`).

:func:`plot_record` draws an :class:`~hopfield.analysis.record.EnergyRecord` (see
:mod:`hopfield.analysis.record` for what is recorded and why):

* **energy vs step** per block — the change $E - E_0$ from each series' first point, the batch
  mean with a 10–90 % quantile band, one line per group, the legend stating what the energy is
  ("tied: Lyapunov energy" or "untied: residual + surrogate energy, no descent guarantee");
* **per-term breakdown** — the change of each batch-mean Legendre and synapse term from the
  first iterate, one line per term, with the total change in black. Changes, not levels: the
  levels are large and cancel (terms of ±150 000 around a total of −25 000 in a trained iMixer),
  so stacked levels hide the descent, while the changes are on the scale of the descent, sum to
  the total change of the energy panel and, drawn as separate lines, never hide one another;
* **residual** on a log scale (solid) with the gradient norm $\lVert\partial E/\partial g\rVert$
  (dashed) where it differs from the residual;
* for models with several blocks, a **small-multiples grid**: one energy panel per block with its
  own y-scale (the main series: the solve or descent), the short extra steps (e.g. the channel
  step) in a row of their own below it, then the residuals of all blocks and each block's term
  changes over its main series as grouped bars.

No legend entry is made for a series that cannot be seen (all NaN, or a term that never changes:
those are named in the panel's title) or that coincides with another (the gradient norm when it
equals the residual; the total when one term carries all of the change).

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

__all__ = ["plot_record", "plot_energy", "plot_terms", "plot_residual", "term_changes"]

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
    for g in _groups(rec, block, groups):  # a group keeps its colour when drawn on its own
        i = rec.groups(block).index(g)
        s = rec.series(block, g)
        e = s["energy"] - s["energy"][:1] if relative else s["energy"]
        _band(ax, s["step"], e, colors[i % 10], f"{g} — {_short(s['label'])}", quantiles)
    ax.set_xlabel(_STEP_LABEL)
    ax.set_ylabel("energy change $E - E_0$ [a.u.]" if relative else "energy $E$ [a.u.]")
    if relative:
        ax.axhline(0.0, color="0.4", linewidth=0.8, zorder=0)
    if legend:
        ax.legend(loc="best", frameon=False)


def _same(a, b) -> bool:
    """Whether two curves coincide (NaNs in the same places, values within 1e-6 relative)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    return a.shape == b.shape and bool(np.allclose(a, b, rtol=1e-6, atol=1e-12, equal_nan=True))


def _flat(d, scale) -> bool:
    """A change that cannot be seen: all NaN, or zero to 1e-9 of the panel's scale."""
    d = np.asarray(d, float)
    return not np.isfinite(d).any() or bool(np.nanmax(np.abs(d)) <= 1e-9 * max(scale, 1e-300))


def term_changes(rec: EnergyRecord, block: int, group: str | None = None):
    """``(steps, {term: change of its batch mean from the first iterate}, total change)``."""
    s = rec.series(block, group or _primary(rec, block))
    d = {k: np.nanmean(v, axis=1) - np.nanmean(v[0]) for k, v in s["terms"].items()}
    total = np.nanmean(s["energy"], axis=1)
    return s["step"], d, total - total[0]


def plot_terms(ax, rec: EnergyRecord, block: int, group: str | None = None, *, legend=True):
    """Change of each batch-mean energy term from the first iterate vs step (one line each) and
    the total change (black). Terms that never change are named in the title, not drawn; when
    one term carries all of the change, the total is not drawn twice."""
    group = group or _primary(rec, block)
    x, d, total = term_changes(rec, block, group)
    scale = max([np.nanmax(np.abs(v)) for v in d.values() if np.isfinite(v).any()] + [1e-300])
    colors = _pyplot().get_cmap("tab10").colors
    _integer_steps(ax)
    flat, drawn_total = [], False
    for i, (k, v) in enumerate(d.items()):
        if _flat(v, scale):
            flat.append(k)
            continue
        is_total = not drawn_total and _same(v, total)
        drawn_total |= is_total
        ax.plot(x, v, color="black" if is_total else colors[i % 10], marker="o" if len(x) <= 12
                else None, markersize=3, label=f"{k} (= total)" if is_total else k)
    if not drawn_total:
        ax.plot(x, total, color="black", linewidth=2.2, label="total $E - E_0$")
    ax.axhline(0.0, color="0.4", linewidth=0.8, zorder=0)
    ax.set_xlabel(_STEP_LABEL)
    ax.set_ylabel("term change from first iterate [a.u.]")
    note = f"\n(unchanged, not drawn: {', '.join(flat)})" if flat else ""
    ax.set_title(f"per-term change — {group}{note}")
    if legend:
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)


def plot_residual(ax, rec: EnergyRecord, block: int, *, quantiles=(0.1, 0.9), legend=True,
                  groups=None):
    """Residual (solid, with band) and gradient norm (dashed, only where it differs from the
    residual) of every group, log scale."""
    colors = _pyplot().get_cmap("tab10").colors
    for g in _groups(rec, block, groups):
        s = rec.series(block, g)
        c = colors[rec.groups(block).index(g) % 10]
        what = "fixed-point residual" if s["kind"] == "iteration" else "step residual ‖Δx‖/α"
        grad = np.nanmean(s["grad_norm"], axis=1)
        same = _same(grad, np.nanmean(s["residual"], axis=1))
        if same:
            what += " = ‖∂E/∂g‖"
        _band(ax, s["step"], np.maximum(s["residual"], 1e-300), c, f"{g}: {what}", quantiles)
        if not same and np.isfinite(grad).any():
            ax.plot(s["step"], grad, "--", color=c, linewidth=1.1, label=f"{g}: ‖∂E/∂g‖")
    ax.set_yscale("log")
    ax.set_xlabel(_STEP_LABEL)
    ax.set_ylabel("residual, ‖∂E/∂g‖ [a.u., log]")
    ax.set_title("residual (log scale)")
    if legend:
        ax.legend(loc="best", frameon=False)


def _headline(rec: EnergyRecord, groups=None) -> str:
    labels = list(dict.fromkeys(p.label for p in rec.points if groups is None or p.group in groups))
    return " | ".join(labels)


def _band_title(quantiles) -> str:
    return f"mean, {int(100 * quantiles[0])}–{int(100 * quantiles[1])}% band"


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
            fig = _plot_single(plt, rec, blocks[0], relative, quantiles, groups)
        else:
            fig = _plot_grid(plt, rec, blocks, relative, quantiles)
        fig.suptitle(f"{title}\n{_headline(rec, groups if len(blocks) == 1 else None)}",
                     fontsize=12)
        if path is not None:
            fig.savefig(path)
    return fig


def _plot_single(plt, rec, b, relative, quantiles, groups):
    main = _primary(rec, b) if groups is None else groups[0]
    shown = _groups(rec, b, groups)
    rest = [g for g in shown if g != main]
    fig = plt.figure(figsize=(16, 4.6 if not rest else 6.0), layout="constrained")
    gs = fig.add_gridspec(2 if rest else 1, 3, width_ratios=[1.15, 1.0, 1.0],
                          height_ratios=[2.2, 1.0] if rest else None)
    ax_e = fig.add_subplot(gs[0, 0])
    plot_energy(ax_e, rec, b, relative=relative, quantiles=quantiles, groups=[main])
    ax_e.set_title(f"{rec.blocks.get(b, {}).get('name', b)}: energy vs step "
                   f"({_band_title(quantiles)})")
    if rest:  # short extra steps on their own scale, so they do not flatten the main curve
        ax_o = fig.add_subplot(gs[1, 0])
        plot_energy(ax_o, rec, b, relative=relative, quantiles=quantiles, groups=rest)
        ax_o.set_title("other steps of the block (own scale)")
    plot_terms(fig.add_subplot(gs[:, 1]), rec, b, main)
    plot_residual(fig.add_subplot(gs[:, 2]), rec, b, quantiles=quantiles, groups=shown)
    return fig


def _legend_from(axes):
    seen = {}
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            seen.setdefault(lab, h)
    return list(seen.values()), list(seen)


def _plot_grid(plt, rec, blocks, relative, quantiles):
    n = len(blocks)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    mains = {b: _primary(rec, b) for b in blocks}
    rests = {b: [g for g in rec.groups(b) if g != mains[b]] for b in blocks}
    two = any(rests.values())
    per_row = [2.4, 1.3] if two else [2.6]
    fig = plt.figure(figsize=(4.2 * ncols + 1.5, sum(per_row) * nrows + 4.6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[sum(per_row) * nrows, 4.0])
    gs = top.add_gridspec(len(per_row) * nrows, ncols, height_ratios=per_row * nrows)
    used = []
    for j, b in enumerate(blocks):
        r, c = divmod(j, ncols)
        rows_of = [[mains[b]], rests[b]][:len(per_row)]  # main series; the short extra steps
        for k, gs_ in enumerate(rows_of):
            ax = top.add_subplot(gs[len(per_row) * r + k, c])
            if not gs_:
                ax.set_visible(False)
                continue
            plot_energy(ax, rec, b, relative=relative, quantiles=quantiles, legend=False,
                        groups=gs_)
            ax.set_title(f"{rec.blocks.get(b, {}).get('name', b)}: {', '.join(gs_)}", fontsize=9.5)
            ax.set_ylabel("" if c else ax.get_ylabel() if k == 0 else "$E - E_0$")
            ax.set_xlabel(ax.get_xlabel() if k == len(rows_of) - 1 else "")
            used.append(ax)
    handles, labels = _legend_from(used)
    top.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 3),
               frameon=False)
    top.suptitle(f"energy change per block, each on its own scale ({_band_title(quantiles)} "
                 "over the batch)", fontsize=10.5)
    ax_r, ax_t = bottom.subplots(1, 2, width_ratios=[1.0, 1.2])
    cmap = plt.get_cmap("viridis")
    for i, b in enumerate(blocks):
        s = rec.series(b, mains[b])
        ax_r.plot(s["step"], np.nanmean(np.maximum(s["residual"], 1e-300), axis=1),
                  color=cmap(i / max(n - 1, 1)), marker="o", markersize=3,
                  label=f"{rec.blocks.get(b, {}).get('name', b)}: {mains[b]}")
    ax_r.set_yscale("log")
    _integer_steps(ax_r)
    ax_r.set_xlabel(_STEP_LABEL)
    ax_r.set_ylabel("residual (batch mean) [a.u., log]")
    ax_r.set_title("residual of each block's main series")
    ax_r.legend(frameon=False, ncols=2 if n > 6 else 1, fontsize=7)
    _term_bars(plt, ax_t, rec, blocks, mains)
    return fig


def _term_bars(plt, ax, rec, blocks, mains):
    """Grouped (not stacked) bars: each term's change over the block's main series, and the
    total change in black; a symlog scale when the blocks' changes span over two decades."""
    ch = {b: term_changes(rec, b, mains[b]) for b in blocks}
    names = list(dict.fromkeys(k for b in blocks for k in ch[b][1]))
    vals = np.array([[ch[b][1][k][-1] if k in ch[b][1] else np.nan for b in blocks]
                     for k in names])
    totals = np.array([ch[b][2][-1] for b in blocks])
    scale = float(np.nanmax(np.abs(np.append(vals, totals))) or 1.0)
    flat = [k for k, v in zip(names, vals, strict=True) if _flat(v, scale)]
    keep = [i for i, k in enumerate(names) if k not in flat]
    colors = plt.get_cmap("tab10").colors
    xs = np.arange(len(blocks))
    width = 0.8 / (len(keep) + 1)
    for j, i in enumerate(keep):
        ax.bar(xs + (j - len(keep) / 2) * width, np.nan_to_num(vals[i]), width,
               color=colors[i % 10], label=names[i])
    ax.bar(xs + len(keep) / 2 * width, totals, width, color="black", label="total $E - E_0$")
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.margins(y=0.08)
    nz = np.abs(np.append(vals[keep].ravel(), totals))
    nz = nz[np.isfinite(nz) & (nz > 0)]
    if nz.size and nz.max() / nz.min() > 100:
        ax.set_yscale("symlog", linthresh=10 ** math.floor(math.log10(max(nz.min(),
                                                                          nz.max() * 1e-4))))
    ax.set_xticks(xs, [str(rec.blocks.get(b, {}).get("name", b)) for b in blocks],
                  rotation=30 if len(blocks) > 6 else 0)
    ax.set_ylabel("change over the series [a.u.]" + (", symlog" if ax.get_yscale() == "symlog"
                                                     else ""))
    note = f"; unchanged, not drawn: {', '.join(flat)}" if flat else ""
    ax.set_title(f"per-term change over each block's main series (batch mean{note})")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
