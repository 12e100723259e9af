"""Readers of the on-disk image formats: IDX (MNIST), CIFAR pickles, image folders.

Each reader returns NumPy arrays (``images (N, C, H, W) uint8``, ``labels (N,) int64``) and
names the file and what was expected when a file is not what its format promises
(:class:`DatasetFormatError`). :mod:`hopfield.training.data` wraps them into
an :class:`~hopfield.training.data.ImageDataset` and re-exports every public name here.

Example:
    >>> from hopfield.training.readers import check_labels
    >>> check_labels([0, 3, 9], 10, "labels.idx")  # silent: every label names a class
"""

from __future__ import annotations

import gzip
import importlib
import os
import pickle
import zlib
from pathlib import Path

import numpy as np
import torch

__all__ = ["read_idx", "read_cifar", "read_image_folder", "DatasetFormatError", "check_labels",
           "IDX_FILES", "IMAGE_SUFFIXES"]

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
