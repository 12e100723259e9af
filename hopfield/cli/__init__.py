"""Command line: ``hopfield {train,eval,models,describe,energy,recall,export} ...`` (also
``python -m hopfield``): one parser, one error boundary.

Errors end with a one-line ``error: ...`` on stderr, never a traceback (``HOPFIELD_DEBUG=1``
shows it): exit status 2 for what the user asked (a bad flag, a missing file, an unknown model,
an impossible setting), 1 for what failed at run time (a diverging run, an unwritable folder, an
export that differs from the eager model, a missing optional dependency). What each command does
is in :mod:`hopfield.cli.commands` and :mod:`hopfield.cli.energy_run`; ``docs/api/cli.md`` is
generated from this parser (``python scripts/gen_cli_docs.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["main", "build_parser"]

_EPILOG = """examples:
  hopfield train --model imixer_tiny --epochs 5
  hopfield train --model my_blocks.py:block --epochs 1
  hopfield eval runs/imixer_tiny-bundled
  hopfield energy --checkpoint runs/imixer_tiny-bundled/last.pt --out energy.png
  hopfield export runs/imixer_tiny-bundled --format onnx
  torchrun --nproc_per_node 2 -m hopfield train --model mixer_tiny"""
_MODEL_HELP = ("a name from `hopfield models`, or a block factory `package.module:function` / "
               "`path/to/file.py:function` (imported and registered: only name code you trust)")
_AMP = ["auto", "bf16", "fp16", "off"]


class _HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` once, to options whose default is a value (not None, not a
    switch) and whose help does not already say it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or action.default in (None, [], argparse.SUPPRESS)
                or isinstance(action.default, bool) or "default" in text):
            return text
        return f"{text} (default: %(default)s)" if text else "default: %(default)s"


class _TopFormatter(argparse.RawDescriptionHelpFormatter, _HelpFormatter):
    """Keeps the examples of the top-level epilog as written."""


def _key_value(text: str) -> tuple[str, object]:
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(raw)
    except json.JSONDecodeError:
        return key.replace("-", "_"), raw


def _add_model_overrides(p: argparse.ArgumentParser) -> None:
    from ..dynamics import GRAD_MODES, solver_names
    from ..training.validate import finite_positive_float, nonnegative_int, positive_int

    g = p.add_argument_group("model overrides (passed to create_model)")
    g.add_argument("--depth", type=positive_int, help="number of blocks")
    g.add_argument("--dim", type=positive_int, help="token width")
    g.add_argument("--n-iter", type=nonnegative_int, help="iMixer: fixed-point iterations k")
    g.add_argument("--solver", choices=solver_names(), help="fixed-point solver")
    g.add_argument("--tol", type=finite_positive_float,
                   help="solver tolerance (default: exactly k iterations)")
    g.add_argument("--grad", choices=GRAD_MODES, help="gradient through the fixed point")
    g.add_argument("--model-arg", type=_key_value, action="append", default=[],
                   metavar="KEY=VALUE", help="any other create_model keyword (JSON value)")


def _add_train(sub) -> None:
    from ..training.config import TrainConfig
    from ..training.data import DATA_DIR_ENV, list_datasets
    from ..training.validate import (
        finite_nonnegative_float,
        finite_positive_float,
        fraction_below_one,
        nonnegative_int,
        positive_int,
        probability,
    )

    d = TrainConfig()  # the defaults, read once: the help shows what a run uses
    t = sub.add_parser("train", help="train a model on an image dataset",
                       formatter_class=_HelpFormatter)
    t.add_argument("--model", default=d.model, help=_MODEL_HELP)
    t.add_argument("--dataset", default=d.dataset,
                   help=f"one of {', '.join(list_datasets())} (or fashion_mnist_subset)")
    t.add_argument("--data-dir", help=f"dataset folder (default: ${DATA_DIR_ENV}, then the "
                                      f"dataset's standard location)")
    t.add_argument("--epochs", type=positive_int, default=d.epochs,
                   help="passes over the training set")
    t.add_argument("--batch-size", type=positive_int, default=d.batch_size, help="per process")
    t.add_argument("--lr", type=finite_positive_float, default=d.lr, help="peak learning rate")
    t.add_argument("--min-lr", type=finite_nonnegative_float, default=d.min_lr,
                   help="cosine schedule floor")
    t.add_argument("--weight-decay", type=finite_nonnegative_float, default=d.weight_decay,
                   help="AdamW weight decay (not on norms, biases, embeddings)")
    t.add_argument("--warmup-epochs", type=finite_nonnegative_float, default=d.warmup_epochs,
                   help="linear learning-rate warm-up, in epochs")
    t.add_argument("--label-smoothing", type=fraction_below_one, default=d.label_smoothing,
                   help="cross-entropy label smoothing")
    t.add_argument("--drop-path", type=fraction_below_one, default=d.drop_path,
                   help="stochastic depth rate")
    t.add_argument("--clip-grad", type=finite_nonnegative_float, default=d.clip_grad or 0.0,
                   help="max grad norm (0: off)")
    t.add_argument("--mixup", type=finite_nonnegative_float, default=d.mixup,
                   help="Mixup Beta(a, a) parameter (0: off)")
    t.add_argument("--cutmix", type=finite_nonnegative_float, default=d.cutmix,
                   help="CutMix Beta(a, a) parameter (0: off)")
    t.add_argument("--ema", type=fraction_below_one, default=d.ema,
                   help="weight-EMA decay, e.g. 0.999 (0: off)")
    t.add_argument("--amp", choices=_AMP, default=d.amp,
                   help="autocast dtype (auto: bf16 on CUDA, off on CPU)")
    t.add_argument("--crop-padding", type=nonnegative_int,
                   help="random-crop padding in pixels (default: image size / 8; 0 disables)")
    t.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=d.hflip,
                   help="random horizontal flips (default: on unless the dataset is digits)")
    t.add_argument("--random-erasing", type=probability, default=d.random_erasing, metavar="P",
                   help="random-erasing probability per image (Zhong et al. 2020; 0: off)")
    t.add_argument("--out", help="output folder (default: runs/<model>-<dataset>)")
    t.add_argument("--resume", nargs="?", const="auto", metavar="CHECKPOINT",
                   help="continue from CHECKPOINT, or from <out>/last.pt when none is given")
    t.add_argument("--overwrite", action="store_true", help="start over in an --out that holds a "
                   "run; its files are kept in <out>/backup-<timestamp>/")
    t.add_argument("--save-every", type=nonnegative_int, default=d.save_every,
                   help="also checkpoint every N steps inside an epoch (0: end of epoch only)")
    t.add_argument("--seed", type=int, default=d.seed, help="seed of the model, data order and "
                   "augmentations")
    t.add_argument("--device", default=d.device, help="auto, cpu, cuda or cuda:N")
    t.add_argument("--deterministic", action="store_true", help="deterministic kernels on GPU")
    t.add_argument("--compile", action="store_true",
                   help="run the training forward through torch.compile")
    t.add_argument("--max-train-samples", type=positive_int,
                   help="train on a seeded random subset (default: all)")
    t.add_argument("--max-eval-samples", type=positive_int,
                   help="evaluate on a seeded random subset (default: all)")
    t.add_argument("--log-every", type=positive_int, default=d.log_every,
                   help="progress-bar refresh and steps.jsonl records, in steps")
    t.add_argument("--no-plot", dest="plot", action="store_false",
                   help="skip learning_curves.png (saves ~1 s per epoch on small runs)")
    t.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    t.add_argument("--tensorboard", action="store_true", help="also log loss, learning rate and "
                   "accuracy to <out>/tensorboard/ (pip install hopfield[tensorboard])")
    t.add_argument("--config", metavar="FILE.toml", help="read settings from a TOML file whose "
                   "keys are TrainConfig fields; flags given here win over the file")
    _add_model_overrides(t)


def _add_weights_source(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="a run folder, a .safetensors file or a .pt checkpoint")
    p.add_argument("--model", help="the model a plain state dict holds, or the block factory "
                                   "that built the weights (`module:function`, `file.py:function`)")
    p.add_argument("--ema", action="store_true", help="use the EMA weights of a run")


def _add_eval(sub) -> None:
    from ..training.validate import positive_int

    e = sub.add_parser("eval", help="evaluate saved weights on a dataset's test split",
                       formatter_class=_HelpFormatter)
    _add_weights_source(e)
    e.add_argument("--dataset", help="default: the dataset the model was trained on")
    e.add_argument("--data-dir", help="dataset folder (for datasets that need one)")
    e.add_argument("--split", choices=["train", "test"], default="test", help="dataset split")
    e.add_argument("--batch-size", type=positive_int, default=256, help="images per batch")
    e.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    e.add_argument("--amp", choices=_AMP, default="auto", help="autocast dtype")
    e.add_argument("--compile", action="store_true", help="run the model through torch.compile")
    e.add_argument("--per-class", action="store_true",
                   help="add per-class accuracy and the confusion matrix to the JSON")
    e.add_argument("--confusion", metavar="PNG",
                   help="also draw the confusion matrix (rows: true class) into this file")
    e.add_argument("--max-eval-samples", type=positive_int,
                   help="evaluate on a seeded random subset (default: all)")


def _add_describe(sub) -> None:
    from ..training.validate import nonnegative_int, positive_int

    m = sub.add_parser("models", help="list registered models", formatter_class=_HelpFormatter)
    m.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'imixer*'")
    d = sub.add_parser("describe", help="print the derived update rules of a model's block",
                       formatter_class=_HelpFormatter)
    d.add_argument("model", help=_MODEL_HELP)
    d.add_argument("--block", type=nonnegative_int, default=0, help="block index")
    d.add_argument("--img-size", type=positive_int, help="default: the preset's")
    d.add_argument("--in-chans", type=positive_int, help="default: the preset's")
    _add_model_overrides(d)


def _add_energy(sub) -> None:
    from ..dynamics.solvers import solver_names
    from ..training.validate import finite_positive_float, nonnegative_int, positive_int

    p = sub.add_parser("energy", help="plot the energy of every block during inference",
                       formatter_class=_HelpFormatter,
                       description="Record the energy of every block during inference on one "
                                   "batch and plot it (PNG), with the numbers beside it (CSV + "
                                   "JSON). Needs --model, --checkpoint or both.")
    p.add_argument("--model", help=_MODEL_HELP + "; fresh weights unless --checkpoint, and with "
                                                 "a plain state dict it names the model")
    p.add_argument("--checkpoint", help="a run folder, training checkpoint (.pt), .safetensors "
                                        "export, or plain state dict (then also --model)")
    p.add_argument("--dataset", default="bundled",
                   help="a dataset of hopfield.training.data, or 'random'")
    p.add_argument("--data-dir", help="dataset folder (for datasets that need one)")
    p.add_argument("--split", default="test", choices=("train", "test"), help="dataset split")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images in the batch")
    p.add_argument("--n-iter", type=nonnegative_int,
                   help="iterations of implicit solves (iMixer k); descent steps of ET blocks")
    p.add_argument("--solver", choices=solver_names(), help="fixed-point solver for implicit groups")
    p.add_argument("--tol", type=finite_positive_float,
                   help="solver tolerance (default: a fixed number of iterations)")
    p.add_argument("--out", default="energy.png", help="PNG path; .csv/.json go beside it")
    p.add_argument("--seed", type=int, default=0, help="seed of the images and fresh weights")
    p.add_argument("--float64", action="store_true", help="run in float64")


def _add_export(sub) -> None:
    from .export import FORMATS

    x = sub.add_parser("export", help="export saved weights and check the file against eager",
                       formatter_class=_HelpFormatter,
                       description="Write a model as pt2 (torch.export), onnx (torch.onnx, "
                                   "dynamo) or safetensors, load the file back and print its "
                                   "largest difference from the eager model (at most 1e-5, or "
                                   "the command fails).")
    _add_weights_source(x)
    x.add_argument("--format", choices=FORMATS, required=True, help="the file's format")
    x.add_argument("--out", help="the file to write (default: <weights>-export.<format> beside "
                                 "the weights)")


def build_parser(prog: str = "hopfield") -> argparse.ArgumentParser:
    """The parser of every subcommand (``docs/api/cli.md`` shows each one's ``--help``)."""
    from .. import __version__
    from ..memory.cli import add_recall_parser

    ap = argparse.ArgumentParser(prog=prog, description="Hierarchical Hopfield energies: "
                                 "train, evaluate, inspect and export the derived models.",
                                 epilog=_EPILOG, formatter_class=_TopFormatter)
    ap.add_argument("--version", action="version", version=f"hopfield {__version__}")
    sub = ap.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_train(sub)
    _add_eval(sub)
    _add_describe(sub)
    _add_energy(sub)
    add_recall_parser(sub).formatter_class = _HelpFormatter
    _add_export(sub)
    return ap


def _subparser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[command]


def _given_train_flags(parser: argparse.ArgumentParser, argv: list[str]) -> set[str]:
    """The destinations of the ``train`` options set on the command line (not by a default):
    ``argv`` is parsed again with every default suppressed. Changes ``parser``'s defaults."""
    for action in _subparser(parser, "train")._actions:
        action.default = argparse.SUPPRESS
    given, _ = parser.parse_known_args(argv)
    return set(vars(given)) - {"command"}


def _handlers() -> dict:
    from . import commands as c
    from .energy_run import run_energy

    return {"train": c.cmd_train, "eval": c.cmd_eval, "models": c.cmd_models,
            "describe": c.cmd_describe, "energy": run_energy, "recall": c.cmd_recall,
            "export": c.cmd_export}


def _fail(err: BaseException, status: int) -> int:
    if os.environ.get("HOPFIELD_DEBUG", "") not in ("", "0"):
        raise err
    lines = [line for line in str(err).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(err).__name__
    more = " (HOPFIELD_DEBUG=1 shows the rest)" if len(lines) > 1 else ""
    print(f"error: {text}{more}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None, *, prog: str = "hopfield") -> int:
    """Entry point of ``hopfield`` and ``python -m hopfield``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    try:
        args, extra = parser.parse_known_args(argv)
        if extra:  # named by the subcommand's parser, whose usage lists its flags
            _subparser(parser, args.command).error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "train" and args.config is not None:
            args.given_flags = _given_train_flags(parser, argv)
    except SystemExit as exit_:  # argparse printed usage (status 2) or help (status 0)
        return int(exit_.code or 0)
    try:
        return int(_handlers()[args.command](args) or 0)
    except BrokenPipeError:  # e.g. `hopfield describe ... | head`
        sys.stdout = open(os.devnull, "w")
        return 0
    except (ValueError, TypeError, KeyError, FileNotFoundError) as err:  # the user's input
        return _fail(err, 2)
    except (ArithmeticError, OSError, RuntimeError, ImportError) as err:  # failed at run time
        return _fail(err, 1)
    except KeyboardInterrupt:
        print("interrupted; continue a training run with the same command plus --resume",
              file=sys.stderr)
        return 130
