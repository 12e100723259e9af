r"""Plots of recorded energy descent, and the ``python -m hopfield energy`` command.

:func:`plot_record` draws an :class:`~hopfield.energy.EnergyRecord` (see :mod:`hopfield.energy`
for what is recorded and why):

* **energy vs step** per block — the change $E - E_0$ from each series' first point, the batch
  mean with a 10–90 % quantile band, one line per group, the legend stating what the energy is
  ("tied: Lyapunov energy" or "untied: residual + surrogate energy, no descent guarantee");
* **per-term breakdown** — batch-mean Legendre and synapse terms stacked (positive parts up,
  negative parts down) with the total on top;
* **residual** on a log scale (solid) with the gradient norm $\lVert\partial E/\partial g\rVert$
  (dashed);
* for models with several blocks, a **small-multiples grid** (one energy panel per block) above
  the residuals of all blocks and the per-term breakdown at the last point of each block.

:func:`cli_main` runs a model (registered name or checkpoint) on a batch and writes the PNG, plus
the numbers beside it (``.csv`` and ``.json`` with the PNG's stem).

Example:
    >>> import torch, hopfield as hf
    >>> from hopfield.energy import record_block
    >>> from hopfield.energy_plot import plot_record
    >>> rec = record_block(hf.blocks.tied_imixer_block(8, 8, max_iter=4), torch.randn(4, 8, 8))
    >>> fig = plot_record(rec)  # or plot_record(rec, "energy.png")
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings
from pathlib import Path

import numpy as np

from .energy import EnergyRecord

__all__ = ["plot_record", "plot_energy", "plot_terms", "plot_residual", "load_model", "cli_main",
           "build_parser"]

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


# ---------------------------------------------------------------------- checkpoints
def _model_config(state) -> dict | None:
    for key in ("model_config", "config"):
        cfg = state.get(key)
        if isinstance(cfg, dict) and "name" in cfg:
            return dict(cfg)
    return None


def load_model(path: str | os.PathLike, name: str | None = None, **overrides):
    """Rebuild a model from a checkpoint and load its weights (``weights_only=True``).

    Accepts a training checkpoint (``{"model": state_dict, "model_config" or "config": the
    model's ``config`` dict, ...}``), a ``.safetensors`` export with the configuration in its
    header, or a plain state dict together with ``name`` (a registered model). Returns
    ``(model, info)``; ``info`` holds ``normalize`` (per-channel mean/std) when the checkpoint
    has it. ``overrides`` go to :func:`~hopfield.models.create_model`.
    """
    import torch

    from .models import create_model, restore_config

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint {path!r} does not exist.")
    info: dict = {}
    if path.endswith(".safetensors"):
        from .checkpoint import load_safetensors

        state, meta = load_safetensors(path)
        cfg = dict(meta.get("model_config") or {}) or None
        if meta.get("mean") is not None:
            info["normalize"] = {"mean": meta["mean"], "std": meta["std"]}
    else:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
            state, cfg = obj["model"], _model_config(obj)
            if isinstance(obj.get("normalize"), dict):
                info["normalize"] = dict(obj["normalize"])
        elif isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
            state, cfg = obj, None
        else:
            raise ValueError(f"{path}: expected a checkpoint dict with a 'model' state dict, or a "
                             f"plain state dict; got {type(obj).__name__}.")
    if cfg is None:
        if name is None:
            raise ValueError(f"{path} holds weights without a model configuration; name the "
                             f"model too (--model NAME).")
        cfg = {"name": name}
    else:  # settings the config does not record (an older checkpoint): their defaults of then
        cfg = restore_config(cfg)
    cfg.pop("family", None)
    model_name = cfg.pop("name", None) or name  # the checkpoint's own configuration wins
    cfg.update(overrides)
    model = create_model(model_name, **cfg)
    model.load_state_dict(state)
    info["config"] = model.config
    return model, info


# ---------------------------------------------------------------------- command line
def _positive_int(s):
    v = int(s)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {s!r}")
    return v


def _nonneg_int(s):
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {s!r}")
    return v


def _positive_float(s):
    v = float(s)
    if not (v > 0 and math.isfinite(v)):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {s!r}")
    return v


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # short usage error, no traceback
        self.print_usage(sys.stderr)
        raise _UsageError(message)


class _UsageError(Exception):
    pass


def build_parser() -> argparse.ArgumentParser:
    from .dynamics.solvers import solver_names

    p = _Parser(prog="python -m hopfield energy",
                description="Record the energy of every block during inference on one batch and "
                            "plot it (PNG), with the numbers beside it (CSV + JSON).")
    p.add_argument("--model", help="registered model name (fresh weights unless --checkpoint; "
                                    "with a plain state dict, names its model)")
    p.add_argument("--checkpoint", help="training checkpoint (.pt), .safetensors export, or plain "
                                        "state dict (then also --model)")
    p.add_argument("--dataset", default="bundled",
                   help="dataset name for hopfield.data (default: bundled), or 'random'")
    p.add_argument("--data-dir", help="dataset folder (for datasets that need one)")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--n-iter", type=_nonneg_int,
                   help="iterations of implicit solves (iMixer k); descent steps of ET blocks")
    p.add_argument("--solver", choices=solver_names(), help="fixed-point solver for implicit groups")
    p.add_argument("--tol", type=_positive_float, help="solver tolerance (default: fixed count)")
    p.add_argument("--out", default="energy.png", help="PNG path; .csv/.json go beside it")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--float64", action="store_true", help="run in float64")
    return p


def _load_dataset(args):
    """The requested split through ``hopfield.data.load_dataset`` (imported lazily), or ``None``
    for random images (``--dataset random``, or a clear warning when the loader is missing)."""
    if args.dataset == "random":
        return None
    try:
        from . import data as hdata
    except ImportError:
        hdata = None
    load = getattr(hdata, "load_dataset", None)
    if load is None:
        print(f"warning: hopfield.data.load_dataset is unavailable; using RANDOM images instead "
              f"of {args.dataset!r}", file=sys.stderr)
        return None
    return load(args.dataset, args.split, args.data_dir).subset(args.batch_size, seed=args.seed)


def _images(args, ds, model, normalize):
    """A float batch shaped for ``model``: the dataset normalised per channel, or random."""
    import torch

    shape = (model.stem.in_chans, model.stem.img_size, model.stem.img_size)
    if ds is None:
        gen = torch.Generator().manual_seed(args.seed)
        return torch.randn((args.batch_size, *shape), generator=gen), "random images"
    if tuple(ds.images.shape[1:]) != shape:
        raise ValueError(f"dataset {args.dataset!r} has images {tuple(ds.images.shape[1:])}, the "
                         f"model expects {shape}; pick a matching model or dataset.")
    mean, std = (normalize["mean"], normalize["std"]) if normalize else ds.channel_stats()
    x = ds.images.float() / 255.0
    x = (x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)
    return x, f"{args.dataset}/{args.split}, {len(ds)} images"


def _run(args) -> int:
    import torch

    from .energy import record_model
    from .models import create_model

    torch.manual_seed(args.seed)
    info: dict = {}
    ds = _load_dataset(args)
    if args.checkpoint:
        model, info = load_model(args.checkpoint, name=args.model)
    else:
        kw = {}
        if ds is not None:  # fit a fresh model to the data
            c, h, _ = ds.images.shape[1:]
            kw = {"in_chans": int(c), "img_size": int(h), "num_classes": ds.num_classes}
        model = create_model(args.model, **kw)
    if args.float64:
        model = model.double()
    images, what = _images(args, ds, model, info.get("normalize"))
    images = images.to(next(model.parameters()).dtype)
    rec = record_model(model, images, n_iter=args.n_iter, solver=args.solver, tol=args.tol,
                       source=model.config.get("name", args.model))
    rec.meta.update({"data": what, "checkpoint": args.checkpoint, "n_iter": args.n_iter,
                     "solver": args.solver, "tol": args.tol})
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        out = out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = plot_record(rec, out, title=f"Energy during inference — {rec.source} ({what})")
    _pyplot().close(fig)
    rec.to_csv(out.with_suffix(".csv"))
    rec.to_json(out.with_suffix(".json"))
    print(f"{rec.source}: {len(rec.blocks)} block(s), batch {rec.batch_size} ({what})")
    for b, meta in rec.blocks.items():
        for g in rec.groups(b):
            s = rec.series(b, g)
            e = s["energy"].mean(1)
            print(f"  {meta['name']:<10} {g:<22} E {e[0]:>11.4g} -> {e[-1]:<11.4g} residual "
                  f"{s['residual'][-1].mean():.3g}  [{s['label']}]")
    print(f"wrote {out}, {out.with_suffix('.csv')}, {out.with_suffix('.json')}")
    return 0


def cli_main(argv: list[str]) -> int:
    """``python -m hopfield energy ...``: returns the exit status (0 ok, 2 usage or input error)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv))
    except _UsageError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    except SystemExit as err:  # --help
        return int(err.code or 0)
    if not args.model and not args.checkpoint:
        parser.print_usage(sys.stderr)
        print(f"{parser.prog}: error: give --model NAME or --checkpoint CKPT", file=sys.stderr)
        return 2
    try:
        return _run(args)
    except (ValueError, TypeError, FileNotFoundError, OSError, KeyError, RuntimeError) as err:
        if os.environ.get("HOPFIELD_DEBUG"):
            raise
        msg = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"{parser.prog}: error: {msg}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # python -m hopfield.energy_plot ...
    sys.exit(cli_main(sys.argv[1:]))
