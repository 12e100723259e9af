"""The files of a training run: checkpoints, resumption, metrics and the exported weights.

Every epoch writes, into ``out``: ``metrics.jsonl`` (one JSON object per epoch),
``learning_curves.png`` and ``last.pt`` (an atomic checkpoint holding everything needed to
continue the run *exactly*: model, optimizer, schedule, grad scaler, EMA, the RNG states of
every process and the data iterator's position). The run ends with ``model.safetensors``
(and ``model_ema.safetensors``) whose header carries the model configuration.

:class:`TrainResult` names them at the end of a run. :class:`RunFiles` holds the methods of
:class:`~hopfield.training.trainer.Trainer` that read and write them; the trainer inherits them,
and they use its model, optimiser, schedule, loaders and settings (see
``docs/reliability.md#bitwise-resume``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

import torch
from torch import nn

from ..integrity import json_safe
from . import checkpoint as ckpt
from .config import RESUMABLE_CHANGES as _RESUMABLE_CHANGES
from .config import TrainConfig
from .trainutil import gather, write_curves

__all__ = ["RunFiles", "TrainResult"]


@dataclass
class TrainResult:
    """``history``: one dict per epoch (as in ``metrics.jsonl``); ``final``: the last one."""

    history: list[dict]
    out_dir: Path
    checkpoint: Path
    weights: Path | None
    model: nn.Module
    curves: Path | None = None  # learning_curves.png, None under plot=False
    backup: Path | None = None  # where an earlier run's files went (overwrite=True)

    @property
    def final(self) -> dict:
        return self.history[-1] if self.history else {}


class RunFiles:
    """Checkpoints, resumption, metrics and export of a :class:`~hopfield.training.trainer.Trainer`
    (a mixin: it has no state of its own)."""

    @property
    def checkpoint_path(self) -> Path:
        return self.out / "last.pt"

    def _read_resume(self) -> tuple[dict | None, Path | None]:
        """The checkpoint to resume from and its path, or ``(None, None)``."""
        cfg = self.cfg
        if cfg.resume is None:
            return None, None
        path = self.checkpoint_path if cfg.resume == "auto" else ckpt.resolve_checkpoint(cfg.resume)
        if cfg.resume == "auto" and not path.exists():
            self._log(f"--resume: no checkpoint at {path} yet; starting from scratch")
            return None, None
        return ckpt.load_checkpoint(path, map_location="cpu"), path

    def _maybe_resume(self) -> bool:
        cfg, state, path = self.cfg, self._resume_state, self._resume_path
        self._resume_state = None  # read once (in __init__); not kept for the whole run
        if state is None:
            return False
        saved = state["config"]
        # a setting added after the checkpoint was written counts as its default
        defaults = {f.name: f.default_factory() if f.default is MISSING else f.default
                    for f in fields(TrainConfig)}
        diff = {k: (saved.get(k, defaults[k]), v) for k, v in asdict(cfg).items()
                if k not in _RESUMABLE_CHANGES and saved.get(k, defaults[k]) != v}
        if diff:
            detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diff.items())
            raise ValueError(f"cannot resume {path} with different settings ({detail}); use the "
                             f"original flags or a new --out.")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.module.load_state_dict(state["ema"])
        self.train_loader.load_state_dict(state["loader"])
        self.global_step, self.history = state["global_step"], list(state["history"])
        threads = state.get("num_threads")
        if threads is not None and threads != torch.get_num_threads():
            msg = (f"{path} was written with {threads} CPU threads, this process uses "
                   f"{torch.get_num_threads()}: the resumed run is correct but may differ from an "
                   f"uninterrupted one in the last bits (set OMP_NUM_THREADS={threads} or "
                   f"torch.set_num_threads({threads}) for a bitwise match; "
                   f"docs/reliability.md#bitwise-resume)")
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            self._log(f"warning: {msg}")
        ranks = state["ranks"]
        mine = ranks[self.rank] if len(ranks) == self.world_size else None
        if mine is None:
            self._log(f"checkpoint saved by {len(ranks)} processes, resuming with "
                      f"{self.world_size}: random streams restart, the run is not bit-identical")
        else:
            self.epoch_stats.copy_(mine["epoch_stats"])
            ckpt.set_rng_state(mine["rng"])
        return True

    def save(self) -> None:
        """Write ``last.pt`` (all ranks take part: each contributes its RNG state)."""
        ranks = gather({"rng": ckpt.rng_state(), "epoch_stats": self.epoch_stats.cpu()},
                       self.world_size)
        self._check_weights()
        if not self.is_main:
            return
        ckpt.save_checkpoint(self.checkpoint_path, {
            "config": asdict(self.cfg), "model_config": self.model_config,
            "classes": self.classes, "normalize": {"mean": self.mean, "std": self.std},
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
            "ema": self.ema.module.state_dict() if self.ema else None,
            "loader": self.train_loader.state_dict(), "global_step": self.global_step,
            "history": self.history, "ranks": ranks, "num_threads": torch.get_num_threads()})

    def _write_logs(self) -> None:
        if not self.is_main:
            return
        lines = "".join(json.dumps(json_safe(r)[0]) + "\n" for r in self.history).encode()
        ckpt.atomic_write_bytes(self.out / "metrics.jsonl", lines)
        if self.cfg.plot:
            write_curves(self.history, self.out / "learning_curves.png",
                         title=f"{self.cfg.model} on {self.cfg.dataset}", schedule=self.cfg)

    def export(self) -> Path:
        """Write ``model.safetensors`` (and ``model_ema.safetensors``) with a JSON header."""
        self._check_weights()
        meta = {"model_config": self.model_config, "dataset": self.cfg.dataset,
                "classes": self.classes, "mean": self.mean, "std": self.std,
                "metrics": json_safe(self.history[-1] if self.history else {})[0],
                "num_threads": torch.get_num_threads()}
        path = self.out / "model.safetensors"
        ckpt.export_safetensors(self.model, path, meta)
        if self.ema is not None:
            ckpt.export_safetensors(self.ema.module, self.out / "model_ema.safetensors", meta)
        return path
