"""The settings of a training run: :class:`TrainConfig`, checked when it is made.

Example:
    >>> from hopfield.training import TrainConfig
    >>> TrainConfig(model="mixer_tiny", epochs=1).out_dir.name
    'mixer_tiny-bundled'
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["TrainConfig"]

# settings that may differ between a run and its resumption
RESUMABLE_CHANGES = {"out", "resume", "quiet", "data_dir", "device", "num_workers", "log_every",
                     "plot", "save_every", "deterministic", "overwrite", "compile",
                     "tensorboard"}
# float settings: every one must be a finite number (inf and NaN pass comparisons like `> 0`)
FLOAT_SETTINGS = ("lr", "min_lr", "weight_decay", "warmup_epochs", "label_smoothing", "drop_path",
                  "clip_grad", "mixup", "cutmix", "ema", "random_erasing")
INT_SETTINGS = ("epochs", "batch_size", "seed", "save_every", "log_every", "num_workers",
                "crop_padding", "max_train_samples", "max_eval_samples")


@dataclass
class TrainConfig:
    """Everything that defines a training run. ``model_kwargs`` go to ``create_model``
    (e.g. ``{"n_iter": 2, "solver": "anderson", "depth": 2}``); ``resume`` is ``"auto"``
    (``<out>/last.pt`` if present), a checkpoint path or a run folder. ``overwrite`` lets a new
    run start in an ``out`` that holds an earlier one, whose files are first moved into
    ``out/backup-<timestamp>/``; without it such a run is refused."""

    model: str = "imixer_tiny"
    dataset: str = "bundled"
    data_dir: str | None = None
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    drop_path: float = 0.0
    clip_grad: float | None = 1.0
    mixup: float = 0.0
    cutmix: float = 0.0
    ema: float = 0.0
    amp: str = "auto"
    crop_padding: int | None = None
    hflip: bool | None = None
    random_erasing: float = 0.0
    out: str | None = None
    resume: str | None = None
    seed: int = 0
    device: str = "auto"
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    save_every: int = 0
    log_every: int = 20
    deterministic: bool = False
    num_workers: int = 0
    plot: bool = True
    quiet: bool = False
    compile: bool = False  # torch.compile the training forward
    overwrite: bool = False
    tensorboard: bool = False  # also log scalars to <out>/tensorboard/
    model_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in FLOAT_SETTINGS:
            value = getattr(self, name)
            if value is None and name == "clip_grad":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}.")
        for name in INT_SETTINGS:
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"{name} must be an integer, got {value!r}.")
        checks = [(name, value, value > 0, "> 0") for name, value in (
            ("epochs", self.epochs), ("batch_size", self.batch_size), ("lr", self.lr),
            ("log_every", self.log_every))]
        checks += [(name, value, value >= 0, "≥ 0") for name, value in (
            ("weight_decay", self.weight_decay), ("warmup_epochs", self.warmup_epochs),
            ("mixup", self.mixup), ("cutmix", self.cutmix), ("save_every", self.save_every),
            ("min_lr", self.min_lr), ("num_workers", self.num_workers))]
        checks += [(name, value, 0 <= value < 1, "in [0, 1)") for name, value in (
            ("label_smoothing", self.label_smoothing), ("drop_path", self.drop_path),
            ("ema", self.ema))]
        checks.append(("random_erasing", self.random_erasing, 0 <= self.random_erasing <= 1,
                       "a probability in [0, 1]"))
        checks.append(("clip_grad", self.clip_grad, self.clip_grad is None or self.clip_grad > 0,
                       "> 0 or None (no clipping)"))
        for name, value, ok, expected in checks:
            if not ok:
                raise ValueError(f"{name} must be {expected}, got {value!r}.")
        for name in ("max_train_samples", "max_eval_samples", "crop_padding"):
            value = getattr(self, name)
            low = 0 if name == "crop_padding" else 1
            if value is not None and value < low:
                raise ValueError(f"{name} must be ≥ {low} or None, got {value!r}.")
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) must not exceed lr ({self.lr}): it is the "
                             f"floor of the cosine schedule.")
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise ValueError(f"amp must be one of auto, bf16, fp16, off; got {self.amp!r}.")

    @property
    def out_dir(self) -> Path:
        return Path(self.out or Path("runs") / f"{self.model}-{self.dataset}")
