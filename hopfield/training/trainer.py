"""Train an image classifier from the model registry: ``train(TrainConfig(...)) -> TrainResult``.

The recipe is the usual one for small vision models: AdamW (no weight decay on biases, norms
and embeddings), linear warm-up then cosine decay per step, label smoothing, stochastic depth,
gradient clipping, optional Mixup/CutMix and an EMA of the weights, mixed precision on GPU.

Every epoch writes ``metrics.jsonl``, ``learning_curves.png`` and an atomic ``last.pt`` into
``out``, from which the run continues *exactly*; it ends with ``model.safetensors``
(:mod:`hopfield.training.resume`). Non-finite losses stop it (:mod:`hopfield.training.safety`).

Launched by ``torchrun``, training runs as DistributedDataParallel (NCCL on GPU, Gloo on CPU);
``batch_size`` is per process and rank 0 alone writes files.

Example:
    >>> from hopfield.training import TrainConfig, train
    >>> result = train(TrainConfig(model="mixer_tiny", epochs=1, out="runs/demo",  # doctest: +SKIP
    ...                            max_train_samples=256, model_kwargs={"depth": 1}))
    >>> result.final["test_acc"]  # doctest: +SKIP
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict, fields

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..models import create_model, restore_config
from . import checkpoint as ckpt
from .config import TrainConfig
from .data import load_dataset
from .loader import BatchLoader, Transform, counter_seed, mix_batch
from .precision import warn_emulated_bf16
from .resume import RunFiles, TrainResult
from .safety import FiniteGuard, NonFiniteLossError, check_splits, protect_run_folder
from .steplog import StepLog, require_tensorboard
from .trainutil import (
    ModelEma,
    amp_dtype,
    cpu_has_native_bf16,
    distributed_setup,
    evaluate,
    param_groups,
    resolve_device,
    warmup_cosine,
)

__all__ = ["TrainConfig", "TrainResult", "Trainer", "train", "NonFiniteLossError"]


class Trainer(RunFiles, FiniteGuard):
    """Builds data, model and optimiser from a :class:`TrainConfig`; :meth:`fit` runs it.
    Checkpoints, resumption and export come from :class:`~hopfield.training.resume.RunFiles`,
    the non-finite checks from :class:`~hopfield.training.safety.FiniteGuard`."""

    def __init__(self, config: TrainConfig):
        self.cfg = cfg = config
        if cfg.tensorboard:  # before any work: a missing package is named at once
            require_tensorboard()
        self.steplog: StepLog | None = None  # steps.jsonl (and TensorBoard), open during fit
        self.device = resolve_device(cfg.device)
        self.rank, self.world_size, self.device = distributed_setup(self.device)
        self.is_main = self.rank == 0
        self.out = cfg.out_dir
        if self.is_main:
            ckpt.ensure_writable(self.out)
            ckpt.clean_stale_temps(self.out)  # torn writes of killed runs
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        self.amp_dtype = amp_dtype(cfg.amp, self.device)

        train_set = load_dataset(cfg.dataset, "train", cfg.data_dir)
        test_set = load_dataset(cfg.dataset, "test", cfg.data_dir)
        train_set = train_set.subset(cfg.max_train_samples, cfg.seed)
        test_set = test_set.subset(cfg.max_eval_samples, cfg.seed)
        check_splits(train_set, test_set, dataset=cfg.dataset)  # before any step, not after one
        self.classes = train_set.classes
        C, H, W = train_set.image_shape
        if H != W:
            raise ValueError(f"{cfg.dataset}: images are {H}x{W}; the models need square images.")
        self.mean, self.std = train_set.channel_stats()
        pad = cfg.crop_padding if cfg.crop_padding is not None else max(1, H // 8)
        hflip = train_set.hflip if cfg.hflip is None else cfg.hflip
        shard = dict(seed=cfg.seed, rank=self.rank, world_size=self.world_size)
        self.train_loader = BatchLoader(train_set.to(self.device), cfg.batch_size, shuffle=True,
                                        transform=Transform(self.mean, self.std, crop_padding=pad,
                                                            hflip=hflip,
                                                            erase_prob=cfg.random_erasing),
                                        **shard)
        self.test_loader = BatchLoader(test_set.to(self.device), cfg.batch_size,
                                       transform=Transform(self.mean, self.std), **shard)

        self._resume_state, self._resume_path = self._read_resume()  # before the model is built
        self.backup = None
        if self._resume_state is None and self.is_main:  # a new run keeps any earlier one
            self.backup = protect_run_folder(self.out, overwrite=cfg.overwrite)
        saved_model = (self._resume_state or {}).get("model_config") or {}
        if saved_model.get("name") != cfg.model:  # a mismatch is reported by _maybe_resume
            saved_model = {}
        # model settings an older checkpoint does not record keep their values of then
        self._legacy_model_kwargs = {k: v for k, v in restore_config(saved_model).items()
                                     if k not in saved_model}
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.model = self.build_model().to(self.device)
        self.model_config = dict(self.model.config)
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg.weight_decay), lr=cfg.lr)
        spe = len(self.train_loader)
        self.scheduler = warmup_cosine(self.optimizer, warmup_steps=round(cfg.warmup_epochs * spe),
                                       total_steps=cfg.epochs * spe, floor=cfg.min_lr / cfg.lr)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16)
        self.ema = ModelEma(self.model, self.build_model, cfg.ema) if cfg.ema > 0 else None
        self.global_step, self.history = 0, []
        self.epoch_stats = torch.zeros(3, dtype=torch.float64, device=self.device)  # loss, ok, n
        torch.manual_seed(counter_seed(cfg.seed, self.rank))  # per-rank stochastic depth
        resumed = self._maybe_resume()
        if self.world_size > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        else:
            self.ddp = self.model
        if cfg.compile:  # the training forward only: state dicts stay those of self.model
            self.ddp = torch.compile(self.ddp)
        self._log(f"{'resumed' if resumed else 'training'} {cfg.model} on {cfg.dataset} "
                  f"({len(train_set)} train / {len(test_set)} test images, device {self.device}, "
                  f"amp {self.amp_dtype}, world size {self.world_size}) -> {self.out}")
        if self.device.type == "cpu" and cfg.amp == "auto" and cpu_has_native_bf16():
            self._log("hint: this CPU has native bf16 matrix units; --amp bf16 trains the MLP "
                      "families about twice as fast (float32 is kept unless you ask)")
        elif self.device.type == "cpu" and cfg.amp == "bf16" and self.is_main \
                and not cpu_has_native_bf16():  # emulated bf16: ~13x slower steps
            warn_emulated_bf16()

    def build_model(self) -> nn.Module:
        C, H, _ = self.train_loader.dataset.image_shape
        return create_model(self.cfg.model, num_classes=len(self.classes), img_size=H, in_chans=C,
                            drop_path_rate=self.cfg.drop_path,
                            **{**self._legacy_model_kwargs, **self.cfg.model_kwargs})

    # ------------------------------------------------------------------ training
    def _log(self, msg: str) -> None:
        if self.is_main and not self.cfg.quiet:
            from tqdm import tqdm

            tqdm.write(msg, file=sys.stdout)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A ``uint8`` batch (raw pixels) becomes floats in [0, 1], then normalised with the
        dataset's statistics; float batches pass unchanged."""
        if x.dtype == torch.uint8:
            return Transform(self.mean, self.std)(x.to(self.device))
        if not x.is_floating_point():
            raise TypeError(f"images must be uint8 pixels or floats, got {x.dtype}.")
        return x

    def _due_check(self) -> bool:
        """Whether this step checks its loss: every step on the CPU (free), every
        ``log_every`` steps on a GPU (a host sync), and before every checkpoint."""
        cfg, pos = self.cfg, self.train_loader.position
        return (self.device.type == "cpu" or pos % cfg.log_every == 0
                or pos == len(self.train_loader)
                or bool(cfg.save_every and (self.global_step + 1) % cfg.save_every == 0))

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimiser step on a batch; returns the (detached) mean loss.

        Raises:
            NonFiniteLossError: the loss is NaN/Inf (checked before the weights change).
        """
        cfg, b = self.cfg, self.train_loader.position - 1
        x = self.prepare(x)
        target = y
        if cfg.mixup > 0 or cfg.cutmix > 0:  # its own counter-based stream, like augmentation
            rng = np.random.default_rng(counter_seed(cfg.seed, self.train_loader.epoch, b,
                                                     self.rank, 2))
            x, target = mix_batch(x, y, len(self.classes), mixup=cfg.mixup, cutmix=cfg.cutmix,
                                  label_smoothing=cfg.label_smoothing, rng=rng)
        try:
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                logits = self.ddp(x)
        except FloatingPointError as err:  # a solver inside a block diverged (DivergenceError)
            self._stop(f"the forward pass failed ({type(err).__name__})", x, err)
        smoothing = cfg.label_smoothing if target is y else 0.0
        loss = F.cross_entropy(logits.float(), target, label_smoothing=smoothing)
        if ckpt.fault("loss", self.global_step + 1) == "nan":
            loss = loss * float("nan")
        if self._due_check():
            self._check_finite(loss, x)
        self.scaler.scale(loss).backward()
        if cfg.clip_grad is not None:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), cfg.clip_grad)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.model)
        self.global_step += 1
        hard = y if target is y else target.argmax(1)
        loss = loss.detach()
        # accumulate on the device: no host synchronisation inside the loop
        self.epoch_stats[:2] += torch.stack([loss.double() * len(y),
                                             (logits.argmax(1) == hard).sum().double()])
        self.epoch_stats[2] += len(y)
        return loss

    def train_epoch(self) -> dict:
        """Run the rest of the current epoch; returns train loss, accuracy and images/s."""
        from tqdm import tqdm

        cfg, loader = self.cfg, self.train_loader
        self.ddp.train()
        show = self.is_main and not cfg.quiet and sys.stderr.isatty()
        bar = tqdm(total=len(loader), initial=loader.position, disable=not show, leave=False,
                   desc=f"epoch {loader.epoch + 1}/{cfg.epochs}", dynamic_ncols=True)
        t0, seen = time.perf_counter(), 0
        for x, y in loader:
            lr = self.optimizer.param_groups[0]["lr"]  # the rate this step uses
            loss = self.train_step(x, y)
            if self.steplog is not None:
                self.steplog.step(self.global_step, epoch=loader.epoch + 1, loss=loss, lr=lr)
            seen += len(y)
            ckpt.fault("step", self.global_step)
            last_batch = loader.position == len(loader)
            if show and (loader.position % cfg.log_every == 0 or last_batch):
                s = self.epoch_stats.tolist()
                bar.set_postfix(loss=f"{s[0] / s[2]:.4f}", acc=f"{s[1] / s[2]:.3f}",
                                img_s=f"{seen * self.world_size / (time.perf_counter() - t0):.0f}")
            bar.update()
            if cfg.save_every and self.global_step % cfg.save_every == 0 and not last_batch:
                self.save()
        bar.close()
        stats = self.epoch_stats.clone()
        if self.world_size > 1:
            dist.all_reduce(stats)
        elapsed = time.perf_counter() - t0
        loss_sum, correct, n = stats.tolist()
        return {"train_loss": loss_sum / n, "train_acc": correct / n,
                "images_per_s": seen * self.world_size / elapsed, "epoch_time_s": elapsed}

    def fit(self) -> TrainResult:
        """Train the remaining epochs, evaluating and checkpointing after each."""
        cfg = self.cfg
        evaluate_kw = dict(amp=self.amp_dtype, world_size=self.world_size)
        if self.history:  # resumed: metrics.jsonl may lag the checkpoint by one epoch
            self._write_logs()
        if self.is_main:
            self.steplog = StepLog(self.out, every=cfg.log_every, start_step=self.global_step,
                                   tensorboard=cfg.tensorboard)
        try:
            self._fit_epochs(evaluate_kw)
        finally:
            if self.steplog is not None:
                self.steplog.close()
                self.steplog = None
        weights = self.export() if self.is_main else None
        curves = self.out / "learning_curves.png" if cfg.plot and self.is_main else None
        return TrainResult(self.history, self.out, self.checkpoint_path, weights, self.model,
                           curves, self.backup)

    def _fit_epochs(self, evaluate_kw: dict) -> None:
        cfg, loader = self.cfg, self.train_loader
        for epoch in range(loader.epoch, cfg.epochs):
            if loader.epoch != epoch:
                loader.set_epoch(epoch)
            row = {"epoch": epoch + 1, **self.train_epoch(), "step": self.global_step,
                   "lr": self.optimizer.param_groups[0]["lr"]}  # lr reached at the epoch's end
            for k, v in evaluate(self.model, self.test_loader, **evaluate_kw).items():
                row[f"test_{k}"] = v
            if self.ema is not None:
                for k, v in evaluate(self.ema.module, self.test_loader, **evaluate_kw).items():
                    row[f"ema_test_{k}"] = v
            self.history.append(row)
            loader.set_epoch(epoch + 1)
            self.epoch_stats.zero_()
            self.save()
            self._write_logs()
            if self.steplog is not None:
                self.steplog.epoch(row)
            self._log(f"epoch {epoch + 1}/{cfg.epochs}  train loss {row['train_loss']:.4f} "
                      f"acc {row['train_acc']:.4f} | test loss {row['test_loss']:.4f} "
                      f"acc {row['test_acc']:.4f} | {row['images_per_s']:.0f} img/s")


def train(config: TrainConfig | dict | None = None, **overrides) -> TrainResult:
    """Run one training job. ``config`` is a :class:`TrainConfig` or a dict of its fields;
    keyword arguments override fields.

    Raises:
        ValueError / TypeError: invalid settings (named). FileNotFoundError: missing data or
        checkpoint. OSError: unwritable output folder. NonFiniteLossError: divergence.
    """
    if isinstance(config, TrainConfig):
        config = asdict(config)
    config = {**(config or {}), **overrides}
    if unknown := sorted(set(config) - {f.name for f in fields(TrainConfig)}):
        raise TypeError(f"unknown training settings {unknown}; valid: "
                        f"{', '.join(f.name for f in fields(TrainConfig))}.")
    owns_group = not (dist.is_available() and dist.is_initialized())
    trainer = Trainer(TrainConfig(**config))
    try:
        result = trainer.fit()
        if trainer.world_size > 1:
            dist.barrier()  # let rank 0 finish its files before the group goes away
        return result
    finally:
        if owns_group and trainer.world_size > 1 and dist.is_initialized():
            dist.destroy_process_group()
