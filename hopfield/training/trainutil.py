"""Pieces of the training loop that stand alone: device and precision choice, process groups,
weight-decay groups, the weight EMA, evaluation and the learning-curve figure."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

__all__ = ["resolve_device", "amp_dtype", "cpu_has_native_bf16", "distributed_setup", "gather",
           "param_groups", "warmup_cosine", "ModelEma", "evaluate", "write_curves",
           "write_confusion", "lr_per_step"]


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` picks CUDA when present, else the CPU; otherwise any ``torch.device`` string."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name!r} is not a device; use auto, cpu, cuda or "
                         f"cuda:N.") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here; use --device cpu.")
    return device


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype for ``--amp auto|bf16|fp16|off`` (``auto``: bf16 on GPUs that have it)."""
    if amp == "auto":
        cuda_bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return torch.bfloat16 if cuda_bf16 else None
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("--amp fp16 needs a CUDA device; use --amp bf16 or --amp off on "
                         f"{device.type}.")
    return {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 matrices natively (AVX512-BF16 or AMX), where
    ``--amp bf16`` roughly halves the step time of the MLP families (``benchmarks/cpu_amp.py``)."""
    try:
        import torch.cpu as tcpu

        return bool(tcpu._is_avx512_bf16_supported() or tcpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # older torch or a non-x86 build: say nothing
        return False


def distributed_setup(device: torch.device) -> tuple[int, int, torch.device]:
    """Use the caller's process group, or join the one that ``torchrun`` describes in the
    environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``): NCCL for
    CUDA, Gloo otherwise.

    Returns:
        ``(rank, world_size, device)``; a CUDA device becomes ``cuda:LOCAL_RANK``.
    """
    initialised = dist.is_available() and dist.is_initialized()
    if not initialised and int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, 1, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not initialised:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), device


def gather(obj, world_size: int) -> list:
    """Every rank's ``obj`` (picklable), in rank order."""
    if world_size == 1:
        return [obj]
    out = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: decay on weight matrices, none on biases, norm gains and embeddings."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        skip = p.ndim <= 1 or name.endswith((".bias", "cls_token", "pos_embed"))
        (no_decay if skip else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(optimizer: torch.optim.Optimizer, *, warmup_steps: int, total_steps: int,
                  floor: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    r"""Per-step schedule: linear warm-up to the base rate over ``warmup_steps``, then cosine
    decay to ``floor`` × base at ``total_steps``:
    $\eta_t = \eta\,[f + (1-f)\tfrac12(1+\cos\pi p)]$, $p = (t-w)/(T-w)$."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min((step - warmup_steps) / max(total_steps - warmup_steps, 1), 1.0)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


class ModelEma:
    r"""Exponential moving average of the weights, $\bar\theta \leftarrow d\,\bar\theta +
    (1-d)\,\theta$ after each step; buffers (e.g. power-iteration vectors) are copied.

    Args:
        model: the model being trained.
        build: a factory returning a fresh model of the same architecture (parametrised
            modules cannot always be deep-copied).
        decay: $d$, e.g. 0.999.
    """

    def __init__(self, model: nn.Module, build, decay: float):
        self.decay = decay
        device = next(model.parameters()).device
        self.module = build().to(device).eval().requires_grad_(False)
        self.module.load_state_dict(model.state_dict())

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_p = [p for _, p in self.module.named_parameters()]
        new_p = [p.detach() for _, p in model.named_parameters()]
        torch._foreach_lerp_(ema_p, new_p, 1.0 - self.decay)
        for e, b in zip(self.module.buffers(), model.buffers(), strict=True):
            e.copy_(b)


@torch.no_grad()
def evaluate(model: nn.Module, loader, *, amp: torch.dtype | None = None,
             world_size: int = 1, num_classes: int | None = None) -> dict:
    """Mean cross-entropy and accuracy of ``model`` over ``loader`` (summed over all ranks).

    With ``num_classes``, also the confusion matrix (``confusion[i][j]``: images of class ``i``
    predicted as ``j``) and the accuracy of every class (``per_class_acc``, ``None`` for a class
    with no images)."""
    was_training = model.training
    model.eval()
    loader.set_epoch(0)
    device = loader.device
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss sum, correct, count
    confusion = (torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)
                 if num_classes else None)
    for x, y in loader:
        with torch.autocast(device.type, dtype=amp or torch.float32, enabled=amp is not None):
            logits = model(x)
        pred = logits.argmax(1)
        sums[:2] += torch.stack([F.cross_entropy(logits.float(), y, reduction="sum").double(),
                                 (pred == y).sum().double()])
        sums[2] += len(y)
        if confusion is not None:
            confusion += torch.bincount(y * num_classes + pred, minlength=num_classes ** 2)
    if world_size > 1:
        dist.all_reduce(sums)
        if confusion is not None:
            dist.all_reduce(confusion)
    model.train(was_training)
    loss_sum, correct, n = sums.tolist()
    out = {"loss": loss_sum / n, "acc": correct / n}
    if confusion is not None:
        matrix = confusion.view(num_classes, num_classes).tolist()
        out["per_class_acc"] = [row[i] / sum(row) if sum(row) else None
                                for i, row in enumerate(matrix)]
        out["confusion"] = matrix
    return out


def _save_png(fig, path: str | os.PathLike) -> None:
    """Render a matplotlib ``Figure`` and write it atomically (no torn PNG if killed)."""
    from .checkpoint import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    atomic_write_bytes(Path(path), buf.getvalue())


def lr_per_step(history: list[dict], schedule) -> tuple[list[float], list[float]] | None:
    """The learning rate of every optimiser step up to the last row of ``history``, as
    ``(epoch position, lr)`` lists, recomputed with :func:`warmup_cosine` from ``schedule`` (a
    ``TrainConfig`` or a dict with ``lr``, ``min_lr``, ``warmup_epochs``, ``epochs``) and the
    steps per epoch in ``history`` (its ``step`` and ``epoch`` columns); ``None`` if either is
    missing."""
    get = schedule.get if isinstance(schedule, dict) else lambda k: getattr(schedule, k, None)
    lr, min_lr, warmup, epochs = (get(k) for k in ("lr", "min_lr", "warmup_epochs", "epochs"))
    rows = [r for r in history if r.get("step") and r.get("epoch")]
    if None in (lr, min_lr, warmup, epochs) or not rows:
        return None
    spe = max(round(rows[0]["step"] / rows[0]["epoch"]), 1)
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    sched = warmup_cosine(opt, warmup_steps=round(warmup * spe), total_steps=epochs * spe,
                          floor=min_lr / lr)
    xs, lrs = [], []
    for t in range(int(rows[-1]["step"])):
        xs.append(t / spe)  # step t runs during epoch t // spe, at position t / spe
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return xs, lrs


def write_curves(history: list[dict], path: str | os.PathLike, title: str = "", *,
                 schedule=None):
    """Loss, accuracy and learning rate per epoch as a PNG (Agg canvas; pyplot untouched).

    Whole-epoch ticks on every panel. The learning rate is drawn per optimiser step when
    ``schedule`` (the run's ``TrainConfig``, see :func:`lr_per_step`) is given, so warm-up and
    cosine decay show; otherwise only the recorded end-of-epoch values are drawn, as markers
    without a connecting line (a line between them would invent the schedule between epochs).
    Returns the matplotlib ``Figure``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(12, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax_loss, ax_acc, ax_lr = fig.subplots(1, 3)
    for key, label in (("train", "train"), ("test", "test"), ("ema_test", "test (EMA)")):
        if f"{key}_loss" in history[0]:
            ax_loss.plot(epochs, [r[f"{key}_loss"] for r in history], "o-", ms=3, label=label)
            ax_acc.plot(epochs, [r[f"{key}_acc"] for r in history], "o-", ms=3, label=label)
    steps = lr_per_step(history, schedule) if schedule is not None else None
    if steps is not None:
        ax_lr.plot(*steps, color="gray", lw=1.4, label="per step")
        lr_name = "learning rate (per step)"
    else:
        lr_name = "learning rate (end of epoch)"
    ax_lr.plot(epochs, [r["lr"] for r in history], "o", ms=4, color="black",
               label="end of epoch (recorded)")
    for ax, name in ((ax_loss, "cross-entropy"), (ax_acc, "accuracy"), (ax_lr, lr_name)):
        ax.set_xlabel("epoch")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlim(0 if ax is ax_lr and steps is not None else min(epochs) - 0.5,
                    max(epochs) + 0.5)
    for ax in (ax_loss, ax_acc) + ((ax_lr,) if steps is not None else ()):
        if ax.get_legend_handles_labels()[1]:
            ax.legend()
    if title:
        fig.suptitle(title)
    _save_png(fig, path)
    return fig


def write_confusion(confusion: list[list[int]], classes: list[str], path: str | os.PathLike,
                    title: str = "") -> None:
    """The confusion matrix as a PNG: each row (true class) normalised to fractions, counts
    written in the cells, the class accuracy beside each row label."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    counts = np.asarray(confusion, dtype=np.int64)
    k = len(classes)
    if counts.shape != (k, k):
        raise ValueError(f"confusion matrix is {counts.shape[0]}x{counts.shape[1]} but "
                         f"{k} class names were given.")
    totals = counts.sum(1, keepdims=True)
    frac = counts / np.maximum(totals, 1)
    size = max(4.5, 0.55 * k + 2)
    fig = Figure(figsize=(size + 1.5, size), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        for i in range(k):
            for j in range(k):
                if counts[i, j]:
                    ax.text(j, i, str(counts[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if frac[i, j] > 0.5 else "black")
    rows = [f"{c} ({frac[i, i]:.1%})" if totals[i, 0] else c for i, c in enumerate(classes)]
    ax.set_xticks(range(k), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), rows, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (accuracy)")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    if title:
        ax.set_title(title)
    _save_png(fig, path)
