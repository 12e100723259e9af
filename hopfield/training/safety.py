"""Guards of a training run that cost nothing while all is well.

* :func:`protect_run_folder`: a new run never writes over the files of an earlier one; with
  ``overwrite`` they are moved into ``<out>/backup-<timestamp>/`` first.
* :func:`check_splits`: the test split has the training split's classes and every label of
  both fits them, checked before the first step.
* :func:`diagnose_nonfinite`: after a non-finite loss, find what went wrong first (the input
  batch, the weights, or the first block whose output is not finite, found with forward hooks
  registered only for this one diagnostic pass).
* :class:`FiniteGuard`: the trainer's checks of its loss and weights, which stop a run with
  :class:`NonFiniteLossError` (re-exported by :mod:`hopfield.training.trainer`).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["RunExistsError", "RUN_FILES", "protect_run_folder", "check_splits",
           "diagnose_nonfinite", "NonFiniteLossError", "FiniteGuard"]

#: The files a run writes into its folder; any one of them marks the folder as holding a run.
RUN_FILES = ("last.pt", "model.safetensors", "model_ema.safetensors", "metrics.jsonl",
             "learning_curves.png")
#: Logs a run may also hold (``steps.jsonl``, ``tensorboard/``): kept with its files in the backup,
#: but not by themselves a run (a run killed before its first checkpoint leaves only these).
RUN_LOGS = ("steps.jsonl", "tensorboard")


class RunExistsError(ValueError):
    """``--out`` holds an earlier run and neither ``--resume`` nor ``--overwrite`` was given."""


def protect_run_folder(out: Path, *, overwrite: bool) -> Path | None:
    """Refuse to train into ``out`` if it holds a run, or (``overwrite``) move that run's files
    into a fresh ``out/backup-<timestamp>/``; returns the backup folder (``None``: nothing there).

    Raises:
        RunExistsError: ``out`` holds run files and ``overwrite`` is false; names the ways out.
    """
    found = [name for name in RUN_FILES if (out / name).exists()]
    if not found:
        return None
    if not overwrite:
        raise RunExistsError(
            f"{out} already holds a run ({', '.join(found)}); training again would overwrite "
            f"it. Continue it with --resume, choose another --out, or pass --overwrite (the old "
            f"files are kept in {out}/backup-<timestamp>/).")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup, n = out / f"backup-{stamp}", 1
    while backup.exists():
        n += 1
        backup = out / f"backup-{stamp}-{n}"
    backup.mkdir()
    for name in [*found, *(n for n in RUN_LOGS if (out / n).exists())]:
        (out / name).replace(backup / name)
    return backup


def check_splits(train_set, test_set, *, dataset: str) -> None:
    """The class names and labels of both splits agree with the training split's class count.

    Raises:
        ValueError: naming the split and the labels or classes that do not fit.
    """
    classes = list(train_set.classes)
    if list(test_set.classes) != classes:
        raise ValueError(f"{dataset}: the test split has {len(test_set.classes)} classes "
                         f"{list(test_set.classes)[:12]} but the training split has "
                         f"{len(classes)} {classes[:12]}; the two splits must share one class "
                         f"list.")
    for split, ds in (("train", train_set), ("test", test_set)):
        if len(ds) and (int(ds.labels.min()) < 0 or int(ds.labels.max()) >= len(classes)):
            raise ValueError(f"{dataset}/{split}: labels span {int(ds.labels.min())}.."
                             f"{int(ds.labels.max())} but there are {len(classes)} classes "
                             f"(labels 0..{len(classes) - 1}).")


@torch.no_grad()
def diagnose_nonfinite(model: nn.Module, x: torch.Tensor, *, autocast: dict) -> str:
    """What first went non-finite when ``model(x)`` gave a non-finite loss, in words."""
    if x.is_floating_point() and not torch.isfinite(x).all():
        bad = int((~torch.isfinite(x)).sum())
        return f"the input batch holds {bad} NaN/Inf value(s) of {x.numel()}"
    params = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if params:
        return (f"the weights hold NaN/Inf ({', '.join(params[:4])}"
                f"{' ...' if len(params) > 4 else ''}), from an earlier unchecked step")
    first: list[str] = []
    active: list[str] = []  # the hooked modules running now, outermost first

    def enter(name):
        def record(_module, _inputs):
            active.append(name)
        return record

    def leave(name):
        def record(_module, _inputs, output):
            active.pop()
            out = output[0] if isinstance(output, (tuple, list)) else output
            if not first and isinstance(out, torch.Tensor) and out.is_floating_point() \
                    and not torch.isfinite(out).all():
                first.append(name)
        return record

    modules = [(n, m) for n, m in model.named_modules() if n and n.count(".") <= 1]
    handles = [h for n, m in modules for h in (m.register_forward_pre_hook(enter(n)),
                                                m.register_forward_hook(leave(n)))]
    try:
        with torch.autocast(**autocast):
            model(x)
    except Exception as err:  # noqa: BLE001 - a diagnostic must not hide the real error
        if first:
            return f"the first module whose output went non-finite is {first[0]!r}"
        where = f" in module {active[-1]!r}" if active else ""
        return f"the forward pass raised {type(err).__name__}{where}"
    finally:
        for h in handles:
            h.remove()
    if first:
        return f"the first module whose output went non-finite is {first[0]!r}"
    return "inputs, weights and every block's output were finite: the loss itself overflowed"


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite (or the weights did, at export); the last checkpoint on
    disk is the last good state."""


class FiniteGuard:
    """The loss and weight checks of a :class:`~hopfield.training.trainer.Trainer` (a mixin: it
    has no state of its own)."""

    def _check_finite(self, loss: torch.Tensor, x: torch.Tensor | None = None) -> None:
        """Stop at a non-finite loss (before the optimiser step it would poison), naming the
        step and, from one diagnostic pass with forward hooks, what went non-finite first."""
        ok = torch.isfinite(loss).to(torch.int32)
        if self.world_size > 1:  # every rank must stop together, or the others hang in a collective
            dist.all_reduce(ok, op=dist.ReduceOp.MIN)
        if not ok.item():
            self._stop(f"loss became {loss.item()}", x)

    def _stop(self, what: str, x: torch.Tensor | None, cause: Exception | None = None) -> None:
        last = (f"the last good checkpoint {self.checkpoint_path} (epoch "
                f"{len(self.history)}) is intact" if self.checkpoint_path.exists()
                else "no checkpoint was written yet")
        found = "" if x is None else "; " + diagnose_nonfinite(self.model, x, autocast=dict(
            device_type=self.device.type, dtype=self.amp_dtype or torch.float32,
            enabled=self.amp_dtype is not None))
        raise NonFiniteLossError(
            f"{what} at epoch {self.train_loader.epoch + 1}, step {self.global_step + 1}{found}; "
            f"stopping. {last}. Lower --lr, keep --clip-grad on or use --amp bf16 instead of "
            f"fp16, then continue with --resume.") from cause

    def _check_weights(self) -> None:
        """Refuse to checkpoint or export NaN/Inf weights (over the last good ones)."""
        if bad := [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]:
            raise NonFiniteLossError(
                f"the weights became NaN/Inf by step {self.global_step} ({', '.join(bad[:4])}); "
                f"not saving them over {self.checkpoint_path}. Lower --lr and continue with "
                f"--resume.")
