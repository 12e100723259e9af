"""The ``hopfield energy`` command (also ``python -m hopfield energy``).

:func:`cli_main` runs a model (registered name or checkpoint) on a batch, records the energy of
every block (:mod:`hopfield.analysis.record`), draws it (:mod:`hopfield.analysis.plot`) into a
PNG and writes the numbers beside it (``.csv`` and ``.json`` with the PNG's stem).
:func:`load_model` rebuilds a model from a checkpoint or ``.safetensors`` export.

This module was ``hopfield.energy_plot`` together with the figures; that path still imports and
gives this module, whose plotting names (``plot_record``, ...) come from
:mod:`hopfield.analysis.plot`.

Example:
    >>> from hopfield.cli_energy import cli_main
    >>> cli_main(["--model", "imixer_tiny", "--dataset", "random", "--batch-size", "4",
    ...           "--out", "energy.png"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

# the plotting names are re-exported: ``hopfield.energy_plot`` (the old path) gives this module
from .analysis.plot import _pyplot, plot_energy, plot_record, plot_residual, plot_terms

__all__ = ["load_model", "cli_main", "build_parser", "plot_record", "plot_energy", "plot_terms",
           "plot_residual"]


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
        from .training.checkpoint import load_safetensors

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
                   help="dataset name for hopfield.training.data (default: bundled), or "
                        "'random'")
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
    """The requested split through ``hopfield.training.data.load_dataset`` (imported lazily), or
    ``None`` for random images (``--dataset random``, or a clear warning when the loader is
    missing)."""
    if args.dataset == "random":
        return None
    try:
        from .training import data as hdata
    except ImportError:
        hdata = None
    load = getattr(hdata, "load_dataset", None)
    if load is None:
        print(f"warning: hopfield.training.data.load_dataset is unavailable; using RANDOM images instead "
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

    from .analysis.record import record_model
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


if __name__ == "__main__":  # python -m hopfield.cli_energy ...
    sys.exit(cli_main(sys.argv[1:]))
