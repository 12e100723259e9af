"""Image datasets as in-memory ``uint8`` tensors, from the standard on-disk formats.

Small classification sets (Fashion-MNIST, CIFAR) fit in memory, and on a GPU in device memory,
so they are read once into an :class:`ImageDataset` (``images`` ``(N, C, H, W)`` ``uint8``,
``labels`` ``(N,)`` ``int64``) and batched by :class:`hopfield.training.loader.BatchLoader`; no
worker processes, no torchvision, no downloads.

Datasets (``load_dataset(name, split, data_dir)``):

* ``bundled`` (alias ``fashion_mnist_subset``): a stratified subset of Fashion-MNIST shipped with
  the package (600 training and 100 test images per class), so everything runs offline.
* ``fashion_mnist``, ``mnist``: the four IDX files (plain or ``.gz``). Fashion-MNIST is found in
  :data:`FASHION_MNIST_DIR`, where Debian's ``dataset-fashion-mnist`` package installs it.
* ``cifar10``, ``cifar100``: the "python version" pickle folders.
* ``imagefolder``: ``<data_dir>/{train,test|val}/<class>/*.png|jpg``.

``data_dir`` falls back to the environment variable :data:`DATA_DIR_ENV`. The format readers
(:func:`read_idx`, :func:`read_cifar`, :func:`read_image_folder`) live in
:mod:`hopfield.training.readers` and are re-exported here.

Example:
    >>> from hopfield.training.data import load_dataset
    >>> ds = load_dataset("bundled", "test")
    >>> ds.images.shape, ds.images.dtype, len(ds.classes)
    (torch.Size([1000, 1, 28, 28]), torch.uint8, 10)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .readers import (
    IDX_FILES,  # noqa: F401 - re-exported: a name of this module before the split
    IMAGE_SUFFIXES,  # noqa: F401
    DatasetFormatError,
    _read_idx_pair,
    check_labels,
    read_cifar,
    read_idx,
    read_image_folder,
)

__all__ = ["ImageDataset", "load_dataset", "list_datasets", "read_idx", "read_cifar",
           "read_image_folder", "FASHION_MNIST_DIR", "DATA_DIR_ENV", "DatasetFormatError",
           "check_labels"]

#: Where Debian's ``dataset-fashion-mnist`` package installs the four ``*-ubyte.gz`` files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
#: Environment variable naming the data folder when ``data_dir`` is not given.
DATA_DIR_ENV = "HOPFIELD_DATA_DIR"
BUNDLED_FILE = "fashion_mnist_subset.npz"

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]


@dataclass(frozen=True)
class ImageDataset:
    """A labelled image set held in memory.

    Attributes:
        images: ``(N, C, H, W)`` ``uint8``.
        labels: ``(N,)`` ``int64`` in ``[0, len(classes))``.
        classes: class names, index = label.
        name: the dataset's registry name.
        hflip: whether a horizontal flip preserves the label (clothes, objects: yes; digits: no).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: list[str]
    name: str
    hflip: bool = True

    def __post_init__(self):
        if self.images.dim() != 4 or self.images.dtype != torch.uint8:
            raise ValueError(f"{self.name}: images must be (N, C, H, W) uint8, got "
                             f"{tuple(self.images.shape)} {self.images.dtype}.")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"{self.name}: {self.images.shape[0]} images but labels shaped "
                             f"{tuple(self.labels.shape)}.")
        check_labels(self.labels, len(self.classes), self.name)

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to(self, device) -> ImageDataset:
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def subset(self, n: int | None, seed: int = 0) -> ImageDataset:
        """A seeded random subset of ``n`` examples (the whole set when ``n`` is None or ≥ N)."""
        if n is None or n >= len(self):
            return self
        if n < 1:
            raise ValueError(f"subset size must be ≥ 1, got {n}.")
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:n]
        idx = idx.sort().values.to(self.images.device)
        return replace(self, images=self.images[idx], labels=self.labels[idx])

    def channel_stats(self, max_images: int = 20000) -> tuple[list[float], list[float]]:
        """Per-channel mean and standard deviation in ``[0, 1]`` units (first ``max_images``)."""
        x = self.images[:max_images].float().div_(255)
        return x.mean((0, 2, 3)).tolist(), x.std((0, 2, 3)).clamp_min(1e-3).tolist()


# ---------------------------------------------------------------------------- registry
def _data_dir(data_dir, default=None, name="") -> Path:
    d = data_dir or os.environ.get(DATA_DIR_ENV) or default
    if d is None:
        raise FileNotFoundError(f"dataset {name!r} needs a data folder: pass --data-dir DIR "
                                f"(data_dir=...) or set {DATA_DIR_ENV}.")
    return Path(d).expanduser()


def _load_idx(name, split, data_dir, **_):
    default = FASHION_MNIST_DIR if name == "fashion_mnist" else None
    folder = _data_dir(data_dir, default, name)
    hint = (f"Install Fashion-MNIST with `apt-get install dataset-fashion-mnist` (it goes to "
            f"{FASHION_MNIST_DIR}) or pass --data-dir / set {DATA_DIR_ENV} to the folder holding "
            f"the four IDX files." if name == "fashion_mnist" else
            f"Pass --data-dir / set {DATA_DIR_ENV} to the folder holding the four IDX files.")
    images, labels, lab_path = _read_idx_pair(folder, split, hint)
    classes = FASHION_MNIST_CLASSES if name == "fashion_mnist" else [str(i) for i in range(10)]
    check_labels(labels, len(classes), str(lab_path))
    return images, labels, classes


def _load_bundled(name, split, data_dir, **_):
    path = resources.files("hopfield") / "assets" / BUNDLED_FILE
    try:
        with resources.as_file(path) as p, np.load(p, allow_pickle=False) as z:
            return z[f"x_{split}"][:, None], z[f"y_{split}"].astype(np.int64), list(z["classes"])
    except FileNotFoundError as err:
        raise FileNotFoundError(f"the bundled subset {path} is missing from this installation; "
                                f"regenerate it with scripts/make_bundled_subset.py.") from err


def _load_cifar(name, split, data_dir, **_):
    return read_cifar(_data_dir(data_dir, None, name), split)


def _load_folder(name, split, data_dir, img_size=None, **_):
    root = _data_dir(data_dir, None, name)
    sub = next((root / s for s in ((split,) if split == "train" else ("test", "val"))
                if (root / s).is_dir()), None)
    if sub is None:
        want = "train/" if split == "train" else "test/ (or val/)"
        raise FileNotFoundError(f"{root}: expected a subfolder {want} holding one folder per "
                                f"class.")
    classes = None if split == "train" else sorted(p.name for p in (root / "train").iterdir()
                                                   if p.is_dir()) or None
    return read_image_folder(sub, classes, img_size=img_size)


_DATASETS = {  # name -> (loader, horizontal flips preserve the label)
    "bundled": (_load_bundled, True),
    "fashion_mnist": (_load_idx, True),
    "mnist": (_load_idx, False),
    "cifar10": (_load_cifar, True),
    "cifar100": (_load_cifar, True),
    "imagefolder": (_load_folder, True),
}
_ALIASES = {"fashion_mnist_subset": "bundled", "fashion-mnist": "fashion_mnist",
            "cifar-10": "cifar10", "cifar-100": "cifar100"}


def list_datasets() -> list[str]:
    """Dataset names accepted by :func:`load_dataset` (aliases not included)."""
    return sorted(_DATASETS)


def load_dataset(name: str, split: str = "train", data_dir: str | os.PathLike | None = None, *,
                 img_size: int | None = None) -> ImageDataset:
    """Load one split of a dataset into memory.

    Args:
        name: one of :func:`list_datasets` (or an alias such as ``fashion_mnist_subset``).
        split: ``"train"`` or ``"test"``.
        data_dir: the dataset folder; defaults to ``$HOPFIELD_DATA_DIR``, then (Fashion-MNIST
            only) :data:`FASHION_MNIST_DIR`.
        img_size: resize every image to ``img_size`` squared (``imagefolder`` only).

    Raises:
        ValueError: unknown name or split. FileNotFoundError: a missing file (named, with the
            fix). DatasetFormatError: a corrupt file (named, with what was expected).
    """
    key = _ALIASES.get(name, name)
    if key not in _DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(list_datasets())} "
                         f"(aliases: {', '.join(sorted(_ALIASES))}).")
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
    loader, hflip = _DATASETS[key]
    images, labels, classes = loader(key, split, data_dir, img_size=img_size)
    if not classes:
        raise DatasetFormatError(f"{key}/{split}: the dataset names no classes.")
    check_labels(labels, len(classes), f"{key}/{split}")
    return ImageDataset(torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels),
                        [str(c) for c in classes], key, hflip)
