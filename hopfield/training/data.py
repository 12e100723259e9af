"""Image datasets as in-memory ``uint8`` tensors: readers for the standard on-disk formats.

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

``data_dir`` falls back to the environment variable :data:`DATA_DIR_ENV`.

Example:
    >>> from hopfield.training.data import load_dataset
    >>> ds = load_dataset("bundled", "test")
    >>> ds.images.shape, ds.images.dtype, len(ds.classes)
    (torch.Size([1000, 1, 28, 28]), torch.uint8, 10)
"""

from __future__ import annotations

import gzip
import importlib
import os
import pickle
import zlib
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch

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
IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
             "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


class DatasetFormatError(ValueError):
    """A data file exists but is not what its format promises (corrupt, truncated, wrong kind)."""


def check_labels(labels, num_classes: int, source: str) -> None:
    """Every label lies in ``0..num_classes-1``; ``source`` (a file) is named otherwise.

    Raises:
        DatasetFormatError: a label out of range, with how many and the class count.
    """
    labels = torch.as_tensor(np.asarray(labels)) if not isinstance(labels, torch.Tensor) \
        else labels
    if not len(labels):
        return
    bad = (labels < 0) | (labels >= num_classes)
    if bool(bad.any()):
        raise DatasetFormatError(
            f"{source}: {int(bad.sum())} label(s) outside 0..{num_classes - 1} (found "
            f"{int(labels.min())}..{int(labels.max())}) for {num_classes} classes; the file is "
            f"corrupt or belongs to another dataset.")


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


# ---------------------------------------------------------------------------- IDX
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (the MNIST format), plain or gzip-compressed.

    Raises:
        DatasetFormatError: bad magic number, unknown type code, or a size that disagrees with
            the header; the message names the file.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as err:
        raise DatasetFormatError(f"{path}: cannot read the file ({err}); it is truncated or not "
                                 f"gzip data. Re-download or reinstall it.") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        codes = ", ".join(f"{c:02x}" for c in _IDX_DTYPES)
        raise DatasetFormatError(f"{path}: not an IDX file: expected the magic number 00 00 <type> "
                                 f"<ndim> with type one of {codes}, got {raw[:4].hex(' ')}.")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetFormatError(f"{path}: header truncated ({len(raw)} bytes, expected ≥ "
                                 f"{header}).")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
    expected = header + int(np.prod(dims)) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetFormatError(f"{path}: header promises shape {dims} ({expected} bytes), but "
                                 f"the file has {len(raw)} bytes; it is truncated or corrupt.")
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find(folder: Path, stem: str, hint: str) -> Path:
    for p in (folder / stem, folder / f"{stem}.gz"):
        if p.is_file():
            return p
    raise FileNotFoundError(f"missing data file {folder / stem}[.gz]. {hint}")


def _read_idx_pair(folder: Path, split: str, hint: str) -> tuple[np.ndarray, np.ndarray, Path]:
    images = read_idx(img_path := _find(folder, IDX_FILES[split][0], hint))
    labels = read_idx(lab_path := _find(folder, IDX_FILES[split][1], hint))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetFormatError(f"{img_path} / {lab_path}: expected images (N, H, W) and labels "
                                 f"(N,), got {images.shape} and {labels.shape}.")
    return images.astype(np.uint8)[:, None], labels.astype(np.int64), lab_path


# ---------------------------------------------------------------------------- CIFAR
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only dicts, lists, strings, numbers and numpy arrays: CIFAR files are pickles,
    and a pickle may otherwise run arbitrary code."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
                ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):  # protocols 0-2 store bytes as latin-1 text
            return _latin1_encode
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (only numpy arrays)")
        if module.startswith("numpy.core") and int(np.__version__.split(".")[0]) >= 2:
            module = module.replace("numpy.core", "numpy._core", 1)
        return getattr(importlib.import_module(module), name)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing to decode bytes with {encoding!r}")
    return text.encode("latin1")


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise
    except pickle.UnpicklingError as err:
        if "refusing" in str(err):
            raise DatasetFormatError(f"{path}: refused: the pickle asks for code ({err}); CIFAR "
                                     f"files hold only arrays. Nothing was executed.") from None
        raise DatasetFormatError(f"{path}: not a readable CIFAR pickle ({err}); the file is "
                                 f"corrupt or truncated.") from err
    except Exception as err:  # truncated, not a pickle at all
        raise DatasetFormatError(f"{path}: not a readable CIFAR pickle ({type(err).__name__}: "
                                 f"{err}); the file is corrupt or truncated.") from err
    if not isinstance(obj, dict):
        raise DatasetFormatError(f"{path}: expected a pickled dict, got {type(obj).__name__}.")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def read_cifar(folder: str | os.PathLike, split: str = "train", *, fine: bool | None = None
               ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read CIFAR-10 (``data_batch_1..5``, ``test_batch``, ``batches.meta``) or CIFAR-100
    (``train``, ``test``, ``meta``) from the python pickle folder.

    Returns:
        ``images (N, 3, 32, 32) uint8``, ``labels (N,) int64``, ``classes``. CIFAR-100 uses
        the 100 fine labels unless ``fine=False``.
    """
    folder = Path(folder)
    for sub in ("cifar-10-batches-py", "cifar-100-python"):
        if not (folder / "batches.meta").exists() and not (folder / "meta").exists() \
                and (folder / sub).is_dir():
            folder = folder / sub
    c100 = (folder / "meta").exists() and not (folder / "batches.meta").exists()
    names = (["train"] if split == "train" else ["test"]) if c100 else \
        ([f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"])
    hint = (f"Expected the CIFAR python folder (data_batch_1..5, test_batch, batches.meta for "
            f"CIFAR-10; train, test, meta for CIFAR-100) in {folder}; pass --data-dir.")
    meta_path = folder / ("meta" if c100 else "batches.meta")
    if not meta_path.exists():
        raise FileNotFoundError(f"missing {meta_path}. {hint}")
    label_key = ("fine_labels" if fine is not False else "coarse_labels") if c100 else "labels"
    images, labels = [], []
    for name in names:
        if not (path := folder / name).exists():
            raise FileNotFoundError(f"missing {path}. {hint}")
        d = _unpickle(path)
        if "data" not in d or label_key not in d:
            raise DatasetFormatError(f"{path}: expected keys 'data' and {label_key!r}, found "
                                     f"{sorted(d)}.")
        data = np.asarray(d["data"])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 \
                or len(data) != len(d[label_key]):
            raise DatasetFormatError(f"{path}: expected 'data' uint8 (N, 3072) with N labels, got "
                                     f"{data.dtype} {data.shape} and {len(d[label_key])} labels.")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append((path, np.asarray(d[label_key], dtype=np.int64)))
    meta = _unpickle(meta_path)
    key = "label_names" if not c100 else ("fine_label_names" if fine is not False else
                                          "coarse_label_names")
    expected = 10 if not c100 else (100 if fine is not False else 20)
    names = meta.get(key)
    if not isinstance(names, (list, tuple)) or len(names) != expected:
        got = f"{len(names)} names" if isinstance(names, (list, tuple)) else f"keys {sorted(meta)}"
        raise DatasetFormatError(f"{meta_path}: expected {key!r} with {expected} class names, "
                                 f"got {got}.")
    classes = [c.decode() if isinstance(c, bytes) else str(c) for c in names]
    for path, lab in labels:
        check_labels(lab, len(classes), str(path))
    return np.concatenate(images), np.concatenate([lab for _, lab in labels]), classes


# ---------------------------------------------------------------------------- image folders
def _read_image(path: Path, mode: str | None, size: int | None) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow ships with matplotlib
        Image = None
    try:
        if Image is None:
            import matplotlib.image as mpimg

            arr = mpimg.imread(path)
            arr = (arr * 255).round().astype(np.uint8) if arr.dtype != np.uint8 else arr
        else:
            with Image.open(path) as im:
                im = im.convert(mode or ("L" if im.mode in ("L", "1", "I;16") else "RGB"))
                if size is not None:
                    im = im.resize((size, size), Image.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
    except Exception as err:
        raise DatasetFormatError(f"{path}: not a readable image ({err}).") from err
    return arr[None] if arr.ndim == 2 else arr[..., :3].transpose(2, 0, 1)


def read_image_folder(root: str | os.PathLike, classes: list[str] | None = None, *,
                      img_size: int | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read ``root/<class>/<image>`` into ``(N, C, H, W) uint8``; classes are the sorted
    subfolder names (or ``classes``, for a test split that must match training).

    All images must share one size unless ``img_size`` resizes them (needs Pillow); greyscale
    and colour files may not be mixed with different channel counts.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist; expected "
                                f"{root}/<class name>/<image>.png.")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    if classes is None:
        classes = found
    elif unknown := sorted(set(found) - set(classes)):
        raise DatasetFormatError(f"{root}: class folders {unknown} do not exist in the training "
                                 f"split {classes}.")
    files = [(p, label) for label, c in enumerate(classes) if (root / c).is_dir()
             for p in sorted((root / c).iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {root}/<class>/.")
    arrays = [_read_image(p, None, img_size) for p, _ in files]
    mode = "RGB" if any(a.shape[0] == 3 for a in arrays) else None
    if mode:  # promote greyscale files so every image has 3 channels
        arrays = [a if a.shape[0] == 3 else np.repeat(a, 3, 0) for a in arrays]
    shape = arrays[0].shape
    for (p, _), a in zip(files, arrays, strict=True):
        if a.shape != shape:
            raise DatasetFormatError(f"{p}: image shaped {a.shape} (C, H, W) but {files[0][0]} "
                                     f"is {shape}; resize the images or pass img_size.")
    return np.stack(arrays), np.array([lab for _, lab in files], dtype=np.int64), classes


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
