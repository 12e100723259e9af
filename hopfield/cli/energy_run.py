"""What ``hopfield energy`` runs: record the energy of every block of a model on one batch
(:mod:`hopfield.analysis.record`), draw it (:mod:`hopfield.analysis.plot`) into a PNG and write
the numbers beside it (``.csv`` and ``.json`` with the PNG's stem).

:func:`energy_report` does it for a model and a batch you already have; :func:`run_energy` is the
command (parsed arguments: the model, the batch and the settings). Theory:
docs/concepts/dynamics.md#energy-descent-during-inference.

Example:
    >>> import torch, hopfield as hf
    >>> from hopfield.cli.energy_run import energy_report
    >>> model = hf.models.create_model("et_tiny", depth=1, dim=16)
    >>> rec = energy_report(model, torch.randn(2, 1, 28, 28), "energy.png")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["energy_report", "run_energy"]


def energy_report(model: nn.Module, images: torch.Tensor, out: str | Path, *,
                  n_iter: int | None = None, solver: str | None = None, tol: float | None = None,
                  source: str | None = None, what: str = "", meta: dict | None = None):
    """Record ``model``'s energy on ``images``, write ``out`` (a PNG; ``.csv`` and ``.json``
    beside it) and return the :class:`~hopfield.analysis.record.EnergyRecord`."""
    from ..analysis.plot import _pyplot, plot_record
    from ..analysis.record import record_model

    rec = record_model(model, images, n_iter=n_iter, solver=solver, tol=tol,
                       source=source or model.config.get("name", "model"))
    rec.meta.update({"data": what, "n_iter": n_iter, "solver": solver, "tol": tol, **(meta or {})})
    out = Path(out)
    if out.suffix.lower() != ".png":
        out = out.with_suffix(".png")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = plot_record(rec, out, title=f"Energy during inference — {rec.source} ({what})")
    _pyplot().close(fig)
    rec.to_csv(out.with_suffix(".csv"))
    rec.to_json(out.with_suffix(".json"))
    return rec


def _dataset(args):
    """The requested split, ``args.batch_size`` seeded images of it; ``None`` for random images."""
    from ..training.data import load_dataset

    if args.dataset == "random":
        return None
    return load_dataset(args.dataset, args.split, args.data_dir).subset(args.batch_size,
                                                                        seed=args.seed)


def _images(args, ds, model, normalize) -> tuple[torch.Tensor, str]:
    """A float batch shaped for ``model``: the dataset normalised per channel, or random."""
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


def run_energy(args) -> int:
    """``hopfield energy``: a fresh registered model (``--model``) or saved weights
    (``--checkpoint``, through :func:`hopfield.cli.commands.load_for_cli`) on one batch."""
    from ..models import create_model
    from .commands import load_for_cli, resolve_model

    if not args.model and not args.checkpoint:
        raise ValueError("give --model NAME or --checkpoint CKPT (see hopfield energy --help).")
    torch.manual_seed(args.seed)
    ds, meta = _dataset(args), {}
    if args.checkpoint:
        model, meta = load_for_cli(args.checkpoint, model=args.model)
    else:
        kw = {}
        if ds is not None:  # fit a fresh model to the data
            c, h, _ = ds.images.shape[1:]
            kw = {"in_chans": int(c), "img_size": int(h), "num_classes": ds.num_classes}
        model = create_model(resolve_model(args.model), **kw)
    if args.float64:
        model = model.double()
    images, what = _images(args, ds, model, meta.get("normalize"))
    images = images.to(next(model.parameters()).dtype)
    out = Path(args.out)
    rec = energy_report(model, images, out, n_iter=args.n_iter, solver=args.solver, tol=args.tol,
                        source=model.config.get("name", args.model), what=what,
                        meta={"checkpoint": args.checkpoint})
    print(f"{rec.source}: {len(rec.blocks)} block(s), batch {rec.batch_size} ({what})")
    for b, info in rec.blocks.items():
        for g in rec.groups(b):
            s = rec.series(b, g)
            e = s["energy"].mean(1)
            print(f"  {info['name']:<10} {g:<22} E {e[0]:>11.4g} -> {e[-1]:<11.4g} residual "
                  f"{s['residual'][-1].mean():.3g}  [{s['label']}]")
    png = out if out.suffix.lower() == ".png" else out.with_suffix(".png")
    print(f"wrote {png}, {png.with_suffix('.csv')}, {png.with_suffix('.json')}")
    return 0
