"""Command line: ``hopfield {train,eval,models,describe,energy,recall} ...`` (also ``python -m hopfield``).

Errors in the user's input (a bad flag, a missing file, an impossible setting) end with a one-line
``error: ...`` on stderr and exit status 2, never a traceback; set ``HOPFIELD_DEBUG=1`` to see
the traceback anyway. A run that diverges or cannot write its files exits with status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["main", "build_parser"]

_EPILOG = """examples:
  hopfield train --model imixer_tiny --epochs 5
  hopfield eval runs/imixer_tiny-bundled
  torchrun --nproc_per_node 2 -m hopfield train --model mixer_tiny"""


def _key_value(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(raw)
    except json.JSONDecodeError:
        return key.replace("-", "_"), raw


def _add_model_overrides(p: argparse.ArgumentParser) -> None:
    from .dynamics import GRAD_MODES, solver_names

    g = p.add_argument_group("model overrides (passed to create_model)")
    g.add_argument("--depth", type=int, help="number of blocks")
    g.add_argument("--dim", type=int, help="token width")
    g.add_argument("--n-iter", type=int, help="iMixer: fixed-point iterations k")
    g.add_argument("--solver", choices=solver_names(), help="fixed-point solver")
    g.add_argument("--tol", type=float, help="solver tolerance (default: exactly k iterations)")
    g.add_argument("--grad", choices=GRAD_MODES, help="gradient through the fixed point")
    g.add_argument("--model-arg", type=_key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="any other create_model keyword (JSON value)")


def _model_kwargs(args) -> dict:
    kw = {k: getattr(args, k) for k in ("depth", "dim", "n_iter", "solver", "tol", "grad")
          if getattr(args, k) is not None}
    return {**kw, **dict(args.model_arg)}


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .training.data import DATA_DIR_ENV, list_datasets

    ap = argparse.ArgumentParser(prog="hopfield", description="Hierarchical Hopfield energies: "
                                 "train, evaluate and inspect the derived models.",
                                 epilog=_EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="version", version=f"hopfield {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")

    t = sub.add_parser("train", help="train a registered model on an image dataset",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    t.add_argument("--model", default="imixer_tiny", help="a name from `hopfield models`")
    t.add_argument("--dataset", default="bundled",
                   help=f"one of {', '.join(list_datasets())} (or fashion_mnist_subset)")
    t.add_argument("--data-dir", help=f"dataset folder (default: ${DATA_DIR_ENV}, then the "
                                      f"dataset's standard location)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=128, help="per process")
    t.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    t.add_argument("--min-lr", type=float, default=1e-5, help="cosine schedule floor")
    t.add_argument("--weight-decay", type=float, default=0.05)
    t.add_argument("--warmup-epochs", type=float, default=1.0)
    t.add_argument("--label-smoothing", type=float, default=0.1)
    t.add_argument("--drop-path", type=float, default=0.0, help="stochastic depth rate")
    t.add_argument("--clip-grad", type=float, default=1.0, help="max grad norm (0: off)")
    t.add_argument("--mixup", type=float, default=0.0, help="Mixup Beta(a, a) parameter (0: off)")
    t.add_argument("--cutmix", type=float, default=0.0, help="CutMix Beta(a, a) parameter (0: off)")
    t.add_argument("--ema", type=float, default=0.0, help="weight-EMA decay, e.g. 0.999 (0: off)")
    t.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto",
                   help="autocast dtype (auto: bf16 on CUDA, off on CPU)")
    t.add_argument("--crop-padding", type=int, help="random-crop padding in pixels "
                                                    "(default: image size / 8; 0 disables)")
    t.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None,
                   help="random horizontal flips (default: on unless the dataset is digits)")
    t.add_argument("--random-erasing", type=float, default=0.0, metavar="P",
                   help="random-erasing probability per image (Zhong et al. 2020; 0: off)")
    t.add_argument("--out", help="output folder (default: runs/<model>-<dataset>)")
    t.add_argument("--resume", nargs="?", const="auto", metavar="CHECKPOINT",
                   help="continue from CHECKPOINT, or from <out>/last.pt when none is given")
    t.add_argument("--save-every", type=int, default=0,
                   help="also checkpoint every N steps inside an epoch (0: end of epoch only)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    t.add_argument("--deterministic", action="store_true", help="deterministic kernels on GPU")
    t.add_argument("--max-train-samples", type=int, help="train on a seeded random subset")
    t.add_argument("--max-eval-samples", type=int, help="evaluate on a seeded random subset")
    t.add_argument("--log-every", type=int, default=20, help="progress-bar refresh, in steps")
    t.add_argument("--num-workers", type=int, default=0,
                   help="accepted for compatibility; data stays in (device) memory, no workers")
    t.add_argument("--no-plot", dest="plot", action="store_false",
                   help="skip learning_curves.png (saves ~1 s per epoch on small runs)")
    t.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    _add_model_overrides(t)

    e = sub.add_parser("eval", help="evaluate saved weights on a dataset's test split")
    e.add_argument("path", help="a run folder, a .safetensors file or a .pt checkpoint")
    e.add_argument("--ema", action="store_true", help="use model_ema.safetensors of a run folder")
    e.add_argument("--dataset", help="default: the dataset the model was trained on")
    e.add_argument("--data-dir")
    e.add_argument("--split", choices=["train", "test"], default="test")
    e.add_argument("--batch-size", type=int, default=256)
    e.add_argument("--device", default="auto")
    e.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto")
    e.add_argument("--per-class", action="store_true",
                   help="add per-class accuracy and the confusion matrix to the JSON")
    e.add_argument("--confusion", metavar="PNG",
                   help="also draw the confusion matrix (rows: true class) into this file")
    e.add_argument("--max-eval-samples", type=int)

    m = sub.add_parser("models", help="list registered models")
    m.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'imixer*'")

    d = sub.add_parser("describe", help="print the derived update rules of a model's block")
    d.add_argument("model")
    d.add_argument("--block", type=int, default=0, help="block index")
    d.add_argument("--img-size", type=int)
    d.add_argument("--in-chans", type=int)
    _add_model_overrides(d)

    sub.add_parser("energy", help="energy plots (see `hopfield energy --help`)", add_help=False)
    from .memory.cli import add_recall_parser

    add_recall_parser(sub)
    return ap


# ---------------------------------------------------------------------------- commands
def _cmd_train(args) -> int:
    from .training.trainer import train

    skip = {"command", "depth", "dim", "n_iter", "solver", "tol", "grad", "model_arg"}
    config = {k: v for k, v in vars(args).items() if k not in skip}
    config["clip_grad"] = config["clip_grad"] or None
    result = train(config, model_kwargs=_model_kwargs(args))
    if result.weights is not None and not args.quiet:
        f = result.final
        print(f"done: test acc {f.get('test_acc', float('nan')):.4f} | weights {result.weights} "
              f"| metrics {result.out_dir / 'metrics.jsonl'} | curves "
              f"{result.out_dir / 'learning_curves.png'}")
    return 0


def _load_weights(path: Path, ema: bool):
    from .training.checkpoint import load_checkpoint, load_safetensors

    if path.is_dir():
        name = "model_ema.safetensors" if ema else "model.safetensors"
        if ema and not (path / name).exists():
            raise FileNotFoundError(f"{path / name} does not exist: was the run trained with "
                                    f"--ema? (or it has not finished; try {path / 'last.pt'})")
        path = path / name if (path / name).exists() else path / "last.pt"
    if path.suffix == ".pt":
        state = load_checkpoint(path)
        meta = {"model_config": state["model_config"], "dataset": state["config"]["dataset"],
                "classes": state["classes"], **state["normalize"]}
        if ema and state.get("ema") is None:
            raise ValueError(f"{path} holds no EMA weights: the run was trained without --ema.")
        return (state["ema"] if ema else state["model"]), meta, path
    tensors, meta = load_safetensors(path)
    if "model_config" not in meta:
        raise ValueError(f"{path} has no hopfield metadata (model_config); was it written by "
                         f"`hopfield train`?")
    return tensors, meta, path


def _cmd_eval(args) -> int:
    from .models import model_from_config
    from .training.data import load_dataset
    from .training.loader import BatchLoader, Transform
    from .training.trainutil import amp_dtype, evaluate, resolve_device, write_confusion

    state, meta, path = _load_weights(Path(args.path), args.ema)
    # settings the config does not record (an older checkpoint) take their defaults of then
    model = model_from_config(meta["model_config"])
    model.load_state_dict(state)
    device = resolve_device(args.device)
    dataset = args.dataset or meta["dataset"]
    data = load_dataset(dataset, args.split, args.data_dir).subset(args.max_eval_samples)
    if model.num_classes != len(data.classes):
        raise ValueError(f"{path} has {model.num_classes} output classes but {dataset} has "
                         f"{len(data.classes)}; pass the dataset it was trained on (--dataset).")
    loader = BatchLoader(data.to(device), args.batch_size,
                         transform=Transform(meta["mean"], meta["std"]))
    classes = list(data.classes)
    metrics = evaluate(model.to(device), loader, amp=amp_dtype(args.amp, device),
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


def _cmd_models(args) -> int:
    from .models import list_models, model_config

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}; try `hopfield models`.")
    print(f"{'name':20s} {'family':7s} {'img':>4s} {'patch':>5s} {'dim':>5s} {'depth':>5s}")
    for n in names:
        c = model_config(n)
        print(f"{n:20s} {c['family']:7s} {c['img_size']:4d} {c['patch_size']:5d} {c['dim']:5d} "
              f"{c['depth']:5d}")
    return 0


def _cmd_describe(args) -> int:
    from .models import create_model

    model = create_model(args.model, img_size=args.img_size, in_chans=args.in_chans,
                         **_model_kwargs(args))
    if not 0 <= args.block < len(model.blocks):
        raise ValueError(f"--block {args.block}: {args.model} has blocks "
                         f"0..{len(model.blocks) - 1}.")
    print(model.blocks[args.block].describe())
    return 0


def _cmd_recall(args) -> int:
    from .memory.cli import run_recall

    return run_recall(args)


def _cmd_energy(argv: list[str]) -> int:
    try:
        from .cli_energy import cli_main
    except ImportError as err:
        print(f"error: `hopfield energy` needs the module hopfield.cli_energy, which cannot be "
              f"imported in this installation ({err}).", file=sys.stderr)
        return 2
    return int(cli_main(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hopfield`` and ``python -m hopfield``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "energy":
        return _cmd_energy(argv[1:])
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse printed usage (status 2) or help (status 0)
        return int(exit_.code or 0)
    handler = {"train": _cmd_train, "eval": _cmd_eval, "models": _cmd_models,
               "describe": _cmd_describe, "recall": _cmd_recall}[args.command]
    from .training.trainer import NonFiniteLossError

    try:
        return handler(args)
    except (ValueError, TypeError, FileNotFoundError) as err:
        if os.environ.get("HOPFIELD_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `hopfield describe ... | head`
        sys.stdout = open(os.devnull, "w")
        return 0
    except (NonFiniteLossError, OSError) as err:
        if os.environ.get("HOPFIELD_DEBUG"):
            raise
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; continue the run with the same command plus --resume",
              file=sys.stderr)
        return 130
