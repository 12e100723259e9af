"""Integrity of weights files: checksums, non-finite weights, safe reading, JSON without NaN.

* :func:`weights_checksum` is a SHA-256 over a state dict's tensors in a fixed order (sorted
  names; for each: name, dtype, shape, raw bytes), written as ``"sha256:<hex>"``. Checkpoints and
  ``.safetensors`` exports store it; every loader recomputes it with :func:`verify_weights`, so a
  flipped bit is refused, naming the file.
* Weights holding NaN or ±Inf are refused unless the caller asks for them
  (``allow_nonfinite=True``): a diverged run is never resumed, exported or evaluated silently.
* :func:`read_torch_file` is ``torch.load(weights_only=True)`` with messages that say what the
  file is (empty, truncated, not a checkpoint, or one that asks to run code, which was refused)
  and never advise ``weights_only=False``.
* :func:`json_safe` replaces non-finite floats by ``null`` so printed JSON stays JSON.

This module depends on torch alone, so the weights loader (``hopfield/weights.py``) may use it.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import warnings
from pathlib import Path

import torch

__all__ = ["CheckpointError", "ChecksumMismatchError", "NonFiniteWeightsError",
           "weights_checksum", "nonfinite_tensors", "verify_weights", "read_torch_file",
           "json_safe", "NoChecksumWarning"]


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be read back (truncated, corrupt, foreign)."""


class ChecksumMismatchError(CheckpointError):
    """The weights differ from those the file's checksum was computed on (corruption)."""


class NonFiniteWeightsError(CheckpointError):
    """The weights hold NaN or ±Inf (a diverged run); refused unless ``allow_nonfinite``."""


class NoChecksumWarning(UserWarning):
    """A weights file written before checksums existed: loaded, but not verified."""


def weights_checksum(state_dict: dict[str, torch.Tensor]) -> str:
    """``"sha256:<hex>"`` over the tensors of ``state_dict`` in sorted-name order (name, dtype,
    shape and bytes of each), independent of device, strides and dict order.

    Example:
        >>> weights_checksum({"w": torch.zeros(2)})[:7]
        'sha256:'
    """
    h = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name]
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"weights_checksum: {name!r} is a {type(t).__name__}, not a tensor.")
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"sha256:{h.hexdigest()}"


def nonfinite_tensors(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point tensors holding NaN or ±Inf."""
    return [k for k, v in state_dict.items() if isinstance(v, torch.Tensor)
            and (v.is_floating_point() or v.is_complex()) and not torch.isfinite(v).all()]


def verify_weights(state_dict: dict[str, torch.Tensor], checksum: str | None, *, source: str,
                   allow_nonfinite: bool = False) -> None:
    """Check weights read from ``source`` (a file name, for the messages) against the checksum
    stored with them and refuse non-finite values.

    Args:
        checksum: the stored ``"sha256:..."``; ``None`` for a file written before checksums
            (warns with :class:`NoChecksumWarning` and goes on).
        allow_nonfinite: load NaN/Inf weights anyway (to inspect a diverged run).

    Raises:
        ChecksumMismatchError: the bytes changed since the file was written.
        NonFiniteWeightsError: NaN/Inf weights and not ``allow_nonfinite``.
    """
    if checksum is None:
        warnings.warn(f"{source} has no weights checksum (written by an older hopfield); its "
                      f"integrity cannot be verified. Re-save it to add one.", NoChecksumWarning,
                      stacklevel=3)
    elif (actual := weights_checksum(state_dict)) != checksum:
        raise ChecksumMismatchError(
            f"{source}: the weights do not match the checksum stored with them (stored "
            f"{checksum[:19]}..., computed {actual[:19]}...): the file was corrupted after it "
            f"was written (disk, copy or edit). Use a backup or retrain.")
    if not allow_nonfinite and (bad := nonfinite_tensors(state_dict)):
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise NonFiniteWeightsError(
            f"{source}: {len(bad)} weight tensor(s) hold NaN or Inf ({shown}); the run that "
            f"wrote them diverged. Resume from an earlier checkpoint with a lower --lr, or pass "
            f"allow_nonfinite=True to load them anyway for inspection.")


_GLOBAL = re.compile(r"(?:GLOBAL|global)[: ]+([\w.]+)")


def read_torch_file(path: str | os.PathLike, map_location="cpu", *, what: str = "checkpoint"):
    """``torch.load(path, weights_only=True)`` with errors that name the file and say what it is.

    Raises:
        FileNotFoundError: no such file (a folder is named as such).
        CheckpointError: empty, truncated, not a PyTorch file, or a file that asks to import
            code (refused: it was not run).
    """
    path = Path(path)
    if path.is_dir():
        raise FileNotFoundError(f"{what} {path} is a folder, not a file.")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist.")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{what} {path} is empty (0 bytes): an interrupted copy or "
                              f"download? Use another file.")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - every failure becomes one clear message
        text = str(err)
        if "Unsupported global" in text or "GLOBAL" in text:
            found = _GLOBAL.search(text)
            name = found.group(1) if found else "a Python object"
            raise CheckpointError(
                f"{what} {path} was refused: it asks to import {name}, which weights never need, "
                f"so it may try to run code. Nothing in it was executed. Load only files written "
                f"by hopfield or safetensors files.") from None
        if "Unsupported operand" in text or isinstance(err, (EOFError,)) or "zip" in text:
            kind = ("truncated" if isinstance(err, EOFError) or "zip" in text
                    else "not a PyTorch checkpoint")
            raise CheckpointError(f"{what} {path} is unreadable: it is {kind} ("
                                  f"{type(err).__name__}). Use an intact file.") from None
        first = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        raise CheckpointError(f"{what} {path} is unreadable ({first[:200]}); it is truncated or "
                              f"corrupt. Use an intact file.") from None


def json_safe(obj, _path: str = "") -> tuple[object, list[str]]:
    """``obj`` with every NaN/±Inf float replaced by ``None``, and the dotted paths replaced.

    Example:
        >>> json_safe({"loss": float("nan"), "acc": 0.5})
        ({'loss': None, 'acc': 0.5}, ['loss'])
    """
    if isinstance(obj, float) and not math.isfinite(obj):
        return None, [_path or "value"]
    if isinstance(obj, dict):
        out, bad = {}, []
        for k, v in obj.items():
            out[k], b = json_safe(v, f"{_path}.{k}" if _path else str(k))
            bad += b
        return out, bad
    if isinstance(obj, (list, tuple)):
        items = [json_safe(v, f"{_path}[{i}]") for i, v in enumerate(obj)]
        return [v for v, _ in items], [p for _, b in items for p in b]
    return obj, []
