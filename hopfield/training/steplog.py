"""Per-step logs of a training run: ``steps.jsonl`` and, optionally, TensorBoard scalars.

``steps.jsonl`` holds one JSON object every ``log_every`` optimiser steps,
``{"step": n, "epoch": e, "loss": ..., "lr": ...}``: the loss of that step's batch (rank 0's
under DDP, before Mixup/CutMix labels are hardened) and the learning rate it used. It sits beside
``metrics.jsonl`` (one object per epoch), whose readers it leaves alone. Lines are appended as
the run goes; a resumed run first drops the lines past its checkpoint's step, so every step is
logged once, as in an uninterrupted run.

With ``tensorboard=True`` the same scalars (``train/loss``, ``train/lr``) and the per-epoch
metrics (``epoch/<name>``, at the step that ends the epoch) go to ``<out>/tensorboard/``
through :class:`torch.utils.tensorboard.SummaryWriter`; a resumed run purges the events past
its checkpoint there too.

Example:
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp())
    >>> log = StepLog(out, every=2, start_step=0)
    >>> for step in (1, 2, 3, 4):
    ...     log.step(step, epoch=1, loss=0.5, lr=1e-3)
    >>> log.close()
    >>> [r["step"] for r in read_steps(out)]
    [2, 4]
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

from . import checkpoint as ckpt

__all__ = ["StepLog", "read_steps", "require_tensorboard", "STEPS_FILE", "TENSORBOARD_DIR"]

STEPS_FILE = "steps.jsonl"
TENSORBOARD_DIR = "tensorboard"


def require_tensorboard() -> None:
    """Raises:
        ImportError: the ``tensorboard`` package is missing (with the install command)."""
    if importlib.util.find_spec("tensorboard") is None:
        raise ImportError("--tensorboard needs the tensorboard package: "
                          "pip install hopfield[tensorboard]")


def read_steps(out: str | Path) -> list[dict]:
    """The per-step records of a run folder's ``steps.jsonl`` (empty if it has none)."""
    path = Path(out) / STEPS_FILE
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class StepLog:
    """Writes ``steps.jsonl`` (and TensorBoard scalars) of the run in ``out``, which is at
    ``start_step`` (0 for a new run, the checkpoint's step for a resumed one)."""

    def __init__(self, out: str | Path, *, every: int, start_step: int,
                 tensorboard: bool = False):
        self.path, self.every = Path(out) / STEPS_FILE, every
        kept = [r for r in read_steps(out) if r.get("step", 0) <= start_step]
        if kept or self.path.exists():  # drop what a killed run logged past its checkpoint
            ckpt.atomic_write_bytes(self.path, "".join(json.dumps(r) + "\n"
                                                       for r in kept).encode())
        self.writer = None
        if tensorboard:
            require_tensorboard()
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(out) / TENSORBOARD_DIR),
                                        purge_step=start_step + 1)

    def step(self, step: int, *, epoch: int, loss: torch.Tensor | float, lr: float) -> None:
        """Log optimiser step ``step`` (1-based) if it is due (every ``every`` steps)."""
        if step % self.every:
            return
        loss = float(loss)
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, "epoch": epoch, "loss": loss, "lr": lr}) + "\n")
        if self.writer is not None:
            self.writer.add_scalar("train/loss", loss, step)
            self.writer.add_scalar("train/lr", lr, step)

    def epoch(self, row: dict) -> None:
        """The numbers of a ``metrics.jsonl`` row, to TensorBoard at the row's step."""
        if self.writer is None:
            return
        for key, value in row.items():
            if key not in ("epoch", "step") and isinstance(value, (int, float)):
                self.writer.add_scalar(f"epoch/{key}", value, row["step"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
