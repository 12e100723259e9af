"""Mini-batches of an in-memory :class:`~hopfield.training.data.ImageDataset`, augmented with torch ops.

The dataset stays a ``uint8`` tensor on the training device; every batch is gathered by index,
augmented (random crop with zero padding, horizontal flip, random erasing) and normalised
there, so a GPU is never starved by a CPU data pipeline.

Randomness is *counter-based*: the shuffle of epoch ``e`` and the augmentation of batch ``b``
come from generators seeded by ``(seed, e)`` and ``(seed, e, b, rank)``. The iterator's whole
state is therefore two integers (``epoch``, ``position``), and a run resumed mid-epoch sees
exactly the batches an uninterrupted run would have seen.

Example:
    >>> from hopfield.training.data import load_dataset
    >>> from hopfield.training.loader import BatchLoader, Transform
    >>> ds = load_dataset("bundled", "test")
    >>> tf = Transform(*ds.channel_stats(), crop_padding=2, hflip=True)
    >>> loader = BatchLoader(ds, 64, transform=tf, shuffle=True, seed=0)
    >>> x, y = next(iter(loader))
    >>> x.shape, x.dtype, y.shape
    (torch.Size([64, 1, 28, 28]), torch.float32, torch.Size([64]))
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data import ImageDataset

__all__ = ["Transform", "BatchLoader", "mix_batch", "counter_seed"]


def counter_seed(*counters: int) -> int:
    """A 64-bit seed from integer counters (``numpy.random.SeedSequence``: well mixed, stable)."""
    return int(np.random.SeedSequence([int(c) for c in counters]).generate_state(1, np.uint64)[0])


class Transform:
    r"""``uint8`` batch -> normalised ``float32`` batch, with optional training augmentation.

    Augmentation (only when a generator is passed): random crop of the image zero-padded by
    ``crop_padding`` pixels on each side (a random translation by up to ``crop_padding``
    pixels), then a horizontal flip with probability ½ if ``hflip``. Normalisation:
    $(x/255 - \mu_c)/\sigma_c$ per channel. Last, *random erasing* (Zhong et al., AAAI 2020)
    with probability ``erase_prob`` per image: a rectangle of area $s\,HW$,
    $s \sim U[0.02, 1/3]$, and aspect ratio $r$, $\log r \sim U[\log 0.3, \log(1/0.3)]$, is
    filled with $\mathcal N(0, 1)$ noise in normalised units (the paper's random values; timm's
    "pixel" mode). Sides are clipped to the image, so the largest boxes are a little smaller
    than the paper's rejection sampling would draw.

    Args:
        mean, std: per-channel statistics in ``[0, 1]`` units.
        crop_padding: translation range in pixels (0 disables the crop).
        hflip: flip horizontally; leave off where a flip changes the class (digits).
        erase_prob: probability of random erasing per image (0 disables it).

    The random draws happen in a fixed order (crop, flip, erasing) and only for the enabled
    steps, so turning erasing on leaves the crops and flips of a seed unchanged.
    """

    ERASE_AREA = (0.02, 1 / 3)
    ERASE_RATIO = (0.3, 1 / 0.3)

    def __init__(self, mean: Sequence[float], std: Sequence[float], *, crop_padding: int = 0,
                 hflip: bool = False, erase_prob: float = 0.0):
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(f"mean and std need one entry per channel and std > 0, got "
                             f"mean={list(mean)}, std={list(std)}.")
        if crop_padding < 0:
            raise ValueError(f"crop_padding must be ≥ 0, got {crop_padding}.")
        if not 0 <= erase_prob <= 1:
            raise ValueError(f"erase_prob is a probability in [0, 1], got {erase_prob}.")
        self.mean, self.std = list(mean), list(std)
        self.crop_padding, self.hflip = int(crop_padding), bool(hflip)
        self.erase_prob = float(erase_prob)
        self._constants: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if generator is not None:
            x = self._augment(x, generator)
        if x.device not in self._constants:  # made once per device: no copy per batch
            mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1) * 255
            scale = 1.0 / (torch.tensor(self.std, device=x.device).view(1, -1, 1, 1) * 255)
            self._constants[x.device] = (mean, scale)
        mean, scale = self._constants[x.device]
        x = (x.float() - mean) * scale
        if generator is not None and self.erase_prob > 0:
            x = self._erase(x, generator)
        return x

    def _erase(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Random erasing of a normalised batch, all images at once (no per-image loop)."""
        B, C, H, W = x.shape
        dev = x.device
        u = torch.rand(5, B, generator=g, device=dev)  # apply?, area, log-ratio, top, left
        lo, hi = self.ERASE_AREA
        area = (lo + (hi - lo) * u[1]) * (H * W)
        lr0, lr1 = math.log(self.ERASE_RATIO[0]), math.log(self.ERASE_RATIO[1])
        ratio = torch.exp(lr0 + (lr1 - lr0) * u[2])
        h = torch.sqrt(area * ratio).round().clamp(1, H).long()
        w = torch.sqrt(area / ratio).round().clamp(1, W).long()
        top = (u[3] * (H - h + 1)).long()
        left = (u[4] * (W - w + 1)).long()
        rows = torch.arange(H, device=dev)[None, :]
        cols = torch.arange(W, device=dev)[None, :]
        in_rows = (rows >= top[:, None]) & (rows < (top + h)[:, None])  # (B, H)
        in_cols = (cols >= left[:, None]) & (cols < (left + w)[:, None])  # (B, W)
        box = in_rows[:, :, None] & in_cols[:, None, :] & (u[0] < self.erase_prob)[:, None, None]
        noise = torch.randn(x.shape, generator=g, device=dev, dtype=x.dtype)
        return torch.where(box[:, None], noise, x)

    def _augment(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        B, C, H, W = x.shape
        dev = x.device
        if p := self.crop_padding:
            xp = F.pad(x, (p, p, p, p))  # (B, C, H + 2p, W + 2p)
            oy = torch.randint(0, 2 * p + 1, (B, 1), generator=g, device=dev)
            ox = torch.randint(0, 2 * p + 1, (B, 1), generator=g, device=dev)
            rows = (oy + torch.arange(H, device=dev))[:, None, :, None]  # (B, 1, H, 1)
            cols = (ox + torch.arange(W, device=dev))[:, None, None, :]  # (B, 1, 1, W)
            batch = torch.arange(B, device=dev)[:, None, None, None]
            chans = torch.arange(C, device=dev)[None, :, None, None]
            x = xp[batch, chans, rows, cols]  # (B, C, H, W)
        if self.hflip:
            flip = torch.rand(B, generator=g, device=dev) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        return x

    def __repr__(self):
        return (f"Transform(mean={self.mean}, std={self.std}, crop_padding={self.crop_padding}, "
                f"hflip={self.hflip}, erase_prob={self.erase_prob})")


class BatchLoader:
    """Seeded, shardable, resumable mini-batches of an in-memory dataset.

    Args:
        dataset: images and labels, already on the device where batches are wanted.
        batch_size: images per batch *per process*.
        transform: applied to each batch (with a per-batch generator when ``augment``).
        shuffle: draw a new permutation every epoch (training); otherwise keep the order.
        augment: pass a generator to ``transform`` (training) or not (evaluation).
        drop_last: drop the last incomplete batch (default: ``shuffle``, unless the shard is
            smaller than one batch).
        seed: the run's seed.
        rank, world_size: this process's shard ``perm[rank::world_size]``. Training shards are
            cut to equal lengths so every process takes the same number of steps.

    Iterating yields ``(x, y)`` from the current ``position``; :meth:`state_dict` /
    :meth:`load_state_dict` save and restore ``(epoch, position)``.
    """

    def __init__(self, dataset: ImageDataset, batch_size: int, *, transform: Transform,
                 shuffle: bool = False, augment: bool | None = None, drop_last: bool | None = None,
                 seed: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch_size must be ≥ 1, got {batch_size}.")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}.")
        self.dataset, self.batch_size, self.transform = dataset, int(batch_size), transform
        self.shuffle = shuffle
        self.augment = shuffle if augment is None else augment
        self.seed, self.rank, self.world_size = int(seed), rank, world_size
        n = len(dataset) // world_size if shuffle else math.ceil((len(dataset) - rank) / world_size)
        if n < 1:
            raise ValueError(f"{dataset.name}: {len(dataset)} examples cannot be shared by "
                             f"{world_size} processes.")
        self.shard_size = n
        drop = shuffle if drop_last is None else drop_last
        full = drop and n >= batch_size
        self.num_batches = n // batch_size if full else math.ceil(n / batch_size)
        self.device = dataset.images.device
        self._gen = torch.Generator(device=self.device)
        self._indices: tuple[int, torch.Tensor] | None = None
        self.epoch, self.position = 0, 0

    def __len__(self) -> int:
        return self.num_batches

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch."""
        self.epoch, self.position = int(epoch), 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        if not 0 <= state["position"] <= self.num_batches:
            raise ValueError(f"loader position {state['position']} is outside this epoch's "
                             f"{self.num_batches} batches: the dataset or batch size changed.")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def indices(self) -> torch.Tensor:
        """This process's example indices for the current epoch (on the data device)."""
        if self._indices is None or self._indices[0] != self.epoch:
            n = len(self.dataset)
            if self.shuffle:
                g = torch.Generator().manual_seed(counter_seed(self.seed, self.epoch))
                perm = torch.randperm(n, generator=g)
            else:
                perm = torch.arange(n)
            idx = perm[self.rank::self.world_size][: self.shard_size]
            self._indices = (self.epoch, idx.to(self.device))
        return self._indices[1]

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        idx = self.indices()
        while self.position < self.num_batches:
            b = self.position
            sel = idx[b * self.batch_size:(b + 1) * self.batch_size]
            gen = None
            if self.augment:
                gen = self._gen.manual_seed(counter_seed(self.seed, self.epoch, b, self.rank, 1))
            self.position = b + 1  # a checkpoint taken after this step resumes at the next batch
            yield self.transform(self.dataset.images[sel], gen), self.dataset.labels[sel]


def mix_batch(x: torch.Tensor, y: torch.Tensor, num_classes: int, *, mixup: float = 0.0,
              cutmix: float = 0.0, label_smoothing: float = 0.0,
              rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Mixup (Zhang et al. 2018) or CutMix (Yun et al. 2019) of a batch with its reverse.

    $\lambda \sim \mathrm{Beta}(\alpha, \alpha)$; Mixup returns $\lambda x + (1-\lambda)x'$,
    CutMix pastes a box of area $(1-\lambda)HW$ from $x'$ (and recomputes $\lambda$ from the
    clipped box). When both ``mixup`` and ``cutmix`` are positive one of them is picked with
    probability ½. Targets are the same mixture of (label-smoothed) one-hot vectors.

    Returns:
        ``x`` mixed, ``target`` ``(B, num_classes)`` soft labels.
    """
    use_cutmix = cutmix > 0 and (mixup <= 0 or rng.random() < 0.5)
    lam = float(rng.beta(cutmix, cutmix) if use_cutmix else rng.beta(mixup, mixup))
    x2 = x.flip(0)
    if use_cutmix:
        H, W = x.shape[-2:]
        cut = math.sqrt(1.0 - lam)
        ch, cw = int(H * cut), int(W * cut)
        cy, cx = int(rng.integers(H)), int(rng.integers(W))
        y0, y1 = max(cy - ch // 2, 0), min(cy + ch // 2, H)
        x0, x1 = max(cx - cw // 2, 0), min(cx + cw // 2, W)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x2[..., y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (H * W)
    else:
        x = x * lam + x2 * (1.0 - lam)
    off = label_smoothing / num_classes
    onehot = torch.full((y.shape[0], num_classes), off, device=y.device)
    onehot.scatter_(1, y[:, None], 1.0 - label_smoothing + off)
    return x, onehot * lam + onehot.flip(0) * (1.0 - lam)
