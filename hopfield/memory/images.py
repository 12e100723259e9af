"""Images as patterns: the bundled Fashion-MNIST subset, masks that hide rows, pixel noise
(docs/concepts/memory.md#recall-and-completion).

Pixels become values in $[-1, 1]$ ($2x/255 - 1$; continuous memories) or ±1 (binary memories,
threshold at mid-grey). A hidden pixel of a query is 0: "unknown" for a binary unit, mid-grey for
a continuous one.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import torch

from ..core.validate import check_int, is_real

__all__ = ["IMAGE_SIDE", "load_images", "hide_rows", "flip_pixels"]

IMAGE_SIDE = 28
_BUNDLED = "fashion_mnist_subset.npz"


def load_images(num_images: int, *, binary: bool, split: str = "train", seed: int = 0,
                dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """``num_images`` distinct images of the bundled Fashion-MNIST subset, drawn with ``seed``.

    Returns ``(patterns (num_images, 784), labels (num_images,))``; ``binary`` picks ±1 pixels
    (threshold at mid-grey) over values in [-1, 1].
    """
    check_int("load_images", "num_images", num_images, minimum=1)
    if split not in ("train", "test"):
        raise ValueError(f"load_images: unknown split {split!r}; valid: train, test.")
    path = resources.files("hopfield") / "assets" / _BUNDLED
    with resources.as_file(path) as p, np.load(p, allow_pickle=False) as z:
        images, labels = z[f"x_{split}"], z[f"y_{split}"]
    if num_images > len(images):
        raise ValueError(f"load_images: the bundled {split} split holds {len(images)} images, got "
                         f"num_images={num_images}; ask for at most {len(images)}.")
    pick = np.random.default_rng(seed).choice(len(images), size=num_images, replace=False)
    x = torch.from_numpy(images[pick].reshape(num_images, -1).astype(np.float64) / 255.0)
    x = torch.where(x > 0.5, 1.0, -1.0) if binary else 2.0 * x - 1.0
    return x.to(dtype), torch.from_numpy(labels[pick].astype(np.int64))


def hide_rows(batch: int, fraction: float, *, side: int = IMAGE_SIDE) -> torch.Tensor:
    """Known-pixel mask ``(batch, side*side)``: ``False`` on the bottom ``round(fraction*side)``
    rows (to be completed), ``True`` elsewhere (known, clamped)."""
    if not (is_real(fraction) and 0.0 <= fraction <= 1.0):
        raise ValueError(f"hide_rows: expected a fraction of rows in [0, 1], got {fraction!r}.")
    rows = int(round(fraction * side))
    known = torch.ones(side, side, dtype=torch.bool)
    if rows:
        known[side - rows:] = False
    return known.flatten().expand(batch, -1).clone()


def flip_pixels(x: torch.Tensor, fraction: float, *, generator: torch.Generator | None = None
                ) -> torch.Tensor:
    """Negate ``round(fraction*N)`` randomly chosen entries of each row of ``x`` ``(batch, N)``:
    a bit flip for ±1 patterns, the negative grey level for values in [-1, 1]."""
    if not (is_real(fraction) and 0.0 <= fraction <= 1.0):
        raise ValueError(f"flip_pixels: expected a fraction in [0, 1], got {fraction!r}.")
    count = int(round(fraction * x.shape[1]))
    if count == 0:
        return x.clone()
    idx = torch.rand(x.shape, generator=generator).argsort(1)[:, :count]  # (batch, count)
    out = x.clone()
    out.scatter_(1, idx, -out.gather(1, idx))
    return out
