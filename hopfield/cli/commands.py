"""What the ``hopfield`` subcommands do, given their parsed arguments (:mod:`hopfield.cli` parses).

Every command that reads saved weights (``eval``, ``energy``, ``export``) goes through
:func:`load_for_cli`; every ``--model`` goes through :func:`resolve_model`, so a registered name
and a block-factory spec (``package.module:factory``, ``path/to/file.py:factory``) work alike.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

__all__ = ["resolve_model", "load_for_cli", "cmd_train", "cmd_eval", "cmd_models", "cmd_describe",
           "cmd_export", "cmd_recall"]

MODEL_OVERRIDES = ("depth", "dim", "n_iter", "solver", "tol", "grad")


def resolve_model(value: str | None) -> str | None:
    """A registered name as given; a spec ``module:factory`` / ``file.py:factory`` is imported,
    registered (:func:`hopfield.models.load_factory`) and its registered name returned."""
    from ..models import list_models, load_factory

    if value is None or ":" not in value or value in list_models():
        return value
    return load_factory(value)


def _model_kwargs(args) -> dict:
    kw = {k: getattr(args, k) for k in MODEL_OVERRIDES if getattr(args, k, None) is not None}
    return {**kw, **dict(getattr(args, "model_arg", []))}


def load_for_cli(path: str | os.PathLike, *, model: str | None = None, ema: bool = False,
                 **overrides) -> tuple[nn.Module, dict]:
    """The one model loader of the command line, :func:`hopfield.weights.load_model`:
    ``(model, meta)`` from a run folder, a ``.safetensors`` export, a training checkpoint, a
    timm / official iMixer file or a plain state dict (then ``model`` names it; a block-factory
    spec is registered first). ``overrides`` change the recorded settings (e.g. sizes a plain
    state dict does not record). ``meta`` holds ``path``, ``model_config`` and, when the file
    records them, ``dataset``, ``classes`` and ``normalize`` (mean/std)."""
    from ..weights import load_model, read_weights, resolve_path

    if not Path(path).exists():
        raise FileNotFoundError(f"{path} does not exist.")
    name = resolve_model(model)
    path = resolve_path(path, ema=ema)
    _, recorded = read_weights(path, ema=ema)  # what the file records beside the weights
    try:
        net = load_model(path, ema=ema, name=name, **overrides)
    except ValueError as err:
        if recorded.get("model_config") or name is not None:
            raise
        raise ValueError(f"{err} On the command line: name the model too (--model NAME).") from None
    meta = {"path": path, "model_config": getattr(net, "config", {}),
            "dataset": recorded.get("dataset"), "classes": recorded.get("classes"),
            "normalize": ({"mean": recorded["mean"], "std": recorded["std"]}
                          if recorded.get("mean") is not None else None)}
    return net, meta


# ---------------------------------------------------------------------------- commands
def _with_config_file(args, config: dict, model_kwargs: dict) -> tuple[dict, dict]:
    """``config`` and ``model_kwargs`` with the settings of ``args.config`` (a TOML file) for
    every flag not given on the command line; the merged settings are checked here, so an
    invalid value names the file."""
    from ..training.config import TrainConfig
    from ..training.config_file import load_config_file

    given = getattr(args, "given_flags", set())
    from_file = load_config_file(args.config)
    file_kwargs = from_file.pop("model_kwargs", {})
    config = {**config, **{k: v for k, v in from_file.items() if k not in given}}
    model_kwargs = {**file_kwargs, **model_kwargs}
    try:
        TrainConfig(**{**config, "model_kwargs": model_kwargs})
    except (TypeError, ValueError) as err:
        raise ValueError(f"{args.config} (with the command line): {err}") from None
    return config, model_kwargs


def cmd_train(args) -> int:
    from ..training.trainer import train

    skip = {"command", "handler", *MODEL_OVERRIDES, "model_arg", "config", "given_flags"}
    config = {k: v for k, v in vars(args).items() if k not in skip}
    config["clip_grad"] = config["clip_grad"] or None
    model_kwargs = _model_kwargs(args)
    if args.config is not None:  # the file's settings, except those given as flags
        config, model_kwargs = _with_config_file(args, config, model_kwargs)
    config["model"] = resolve_model(config["model"])
    result = train(config, model_kwargs=model_kwargs)
    if result.weights is not None and not args.quiet:
        f = result.final
        print(f"done: test acc {f.get('test_acc', float('nan')):.4f} | weights {result.weights} "
              f"| metrics {result.out_dir / 'metrics.jsonl'} | curves "
              f"{result.out_dir / 'learning_curves.png'}")
    return 0


def cmd_eval(args) -> int:
    from ..training.data import load_dataset
    from ..training.loader import BatchLoader, Transform
    from ..training.trainutil import amp_dtype, evaluate, resolve_device, write_confusion

    model, meta = load_for_cli(args.path, model=args.model, ema=args.ema)
    path, device = meta["path"], resolve_device(args.device)
    dataset = args.dataset or meta.get("dataset")
    norm = meta.get("normalize")
    if dataset is None or norm is None:
        raise ValueError(f"{path} records no dataset or normalisation; evaluate a run folder, "
                         f"its last.pt or model.safetensors (or pass --dataset).")
    data = load_dataset(dataset, args.split, args.data_dir).subset(args.max_eval_samples)
    if model.num_classes != len(data.classes):
        raise ValueError(f"{path} has {model.num_classes} output classes but {dataset} has "
                         f"{len(data.classes)}; pass the dataset it was trained on (--dataset).")
    loader = BatchLoader(data.to(device), args.batch_size,
                         transform=Transform(norm["mean"], norm["std"]))
    classes = list(data.classes)
    net = torch.compile(model.to(device)) if args.compile else model.to(device)
    metrics = evaluate(net, loader, amp=amp_dtype(args.amp, device),
                       num_classes=len(classes) if args.per_class or args.confusion else None)
    per_class, confusion = metrics.pop("per_class_acc", None), metrics.pop("confusion", None)
    if args.confusion:
        write_confusion(confusion, classes, args.confusion,
                        title=f"{meta['model_config']['name']} on {dataset} {args.split} "
                              f"(acc {metrics['acc']:.2%})")
        metrics["confusion_png"] = args.confusion
    if args.per_class:
        metrics.update(per_class_acc=dict(zip(classes, per_class, strict=True)),
                       confusion=confusion, classes=classes)
    print(json.dumps({"weights": str(path), "dataset": dataset, "split": args.split,
                      "images": len(data), **metrics}))
    return 0


def cmd_models(args) -> int:
    from ..models import list_models, model_config

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; try `hopfield models`.")
    print(f"{'name':20s} {'family':7s} {'img':>4s} {'patch':>5s} {'dim':>5s} {'depth':>5s}")
    for n in names:
        c = model_config(n)
        print(f"{n:20s} {c['family']:7s} {c['img_size']:4d} {c['patch_size']:5d} {c['dim']:5d} "
              f"{c['depth']:5d}")
    return 0


def cmd_describe(args) -> int:
    from ..models import create_model

    name = resolve_model(args.model)
    model = create_model(name, img_size=args.img_size, in_chans=args.in_chans,
                         **_model_kwargs(args))
    if not 0 <= args.block < len(model.blocks):
        raise ValueError(f"--block {args.block}: {name} has blocks 0..{len(model.blocks) - 1}.")
    print(model.blocks[args.block].describe())
    return 0


def cmd_export(args) -> int:
    from .export import export_model

    model, meta = load_for_cli(args.path, model=args.model, ema=args.ema)
    suffix = {"pt2": ".pt2", "onnx": ".onnx", "safetensors": ".safetensors"}[args.format]
    out = Path(args.out) if args.out else meta["path"].with_name(
        f"{meta['path'].stem}-export{suffix}")
    header = {k: meta[k] for k in ("dataset", "classes") if meta.get(k) is not None}
    if meta.get("normalize"):
        header.update(meta["normalize"])
    report = export_model(model, out, args.format, metadata=header)
    print(report)
    return 0


def cmd_recall(args) -> int:
    from ..memory.cli import run_recall

    return run_recall(args)
