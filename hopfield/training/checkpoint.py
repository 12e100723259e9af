"""Crash-safe checkpoints, RNG state capture, and ``safetensors`` weight export.

* :func:`atomic_write_bytes` writes to a temporary file in the destination folder, ``fsync``\\ s
  it, then ``os.replace``\\ s it over the old file (atomic on POSIX): a crash or a full disk
  leaves either the old checkpoint or the new one, never a torn file.
* Checkpoints hold only tensors and plain containers, and are read with
  ``torch.load(weights_only=True)``: loading one never runs pickled code.
* Format ``hopfield-checkpoint-v2`` (see ``docs/reliability.md#checkpoint-format``) adds the
  SHA-256 of the weights (``checksums``: ``model`` and ``ema``) and the thread count
  (``num_threads``); every load verifies the checksums and refuses NaN/Inf weights unless asked
  (:mod:`hopfield.integrity`). A ``v1`` checkpoint still loads, with a warning that it
  has no checksum. Exports carry the checksum in their safetensors header.
* :func:`clean_stale_temps` removes the temporary files of writes whose process was killed.
* :func:`fault`, :class:`FaultInjected` and :data:`FAULT_ENV`, the fail points of the
  reliability tests, live in :mod:`hopfield.training.faults` and are re-exported here.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from ..integrity import (
    CheckpointError,
    NonFiniteWeightsError,
    nonfinite_tensors,
    read_torch_file,
    verify_weights,
    weights_checksum,
)
from .faults import FAULT_ENV, FaultInjected, fault

__all__ = ["CheckpointError", "atomic_write_bytes", "save_checkpoint", "load_checkpoint",
           "ensure_writable", "rng_state", "set_rng_state", "export_safetensors",
           "load_safetensors", "fault", "FaultInjected", "FAULT_ENV", "FORMAT", "verify_weights",
           "weights_checksum", "clean_stale_temps", "RunFileError", "resolve_checkpoint"]

FORMAT = "hopfield-checkpoint-v2"
LEGACY_FORMATS = ("hopfield-checkpoint-v1",)  # load without a checksum, with a warning
EXPORT_FORMAT = "hopfield-weights-v2"
WEIGHT_KEYS = ("model", "ema")  # the state dicts of a checkpoint that carry a checksum


class RunFileError(OSError):
    """The output folder or a file in it cannot be written (a run-time fault: exit status 1,
    whatever the errno; a plain ``OSError(ENOENT, ...)`` would become ``FileNotFoundError``)."""


# ---------------------------------------------------------------------------- files
def ensure_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` and prove that a file can be written and synced in it.

    Raises:
        OSError: with a message naming the folder, the reason and the fix.
    """
    folder = Path(folder)
    probe = folder / f".write-test-{os.getpid()}"
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"output folder {folder} exists and is a file; choose another "
                                 f"--out.")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"\0" * 4096)
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as err:
        if folder.is_dir():
            probe.unlink(missing_ok=True)
        raise _run_file_error(err, f"output folder {folder} is not writable ("
                                   f"{err.strerror or err}); choose another --out, fix its "
                                   f"permissions or free disk space") from err
    return folder


def _run_file_error(err: OSError, message: str) -> OSError:
    """An ``OSError`` that the command line reports with exit status 1 (never a
    ``FileNotFoundError``, which means a missing input)."""
    cls = PermissionError if isinstance(err, PermissionError) else RunFileError
    return cls(err.errno, message)


_TEMP = re.compile(r"^\..+\.tmp-(\d+)$")  # the temporary name atomic_write_bytes uses


def temp_name(path: Path) -> Path:
    """The temporary file :func:`atomic_write_bytes` writes ``path`` through."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def clean_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files that killed writes left in ``folder`` (those of processes
    that no longer run); returns the removed paths."""
    removed = []
    for p in Path(folder).glob(".*.tmp-*"):
        m = _TEMP.match(p.name)
        if not m or not p.is_file() or _alive(int(m.group(1))):
            continue
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process writes nothing while it cleans up
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's), or unknown: keep the file
    return True


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``.

    Raises:
        OSError: naming ``path`` (e.g. disk full); the previous file at ``path`` is untouched.
    """
    path = Path(path)
    tmp = temp_name(path)
    _WRITES[str(path)] = _WRITES.get(str(path), 0) + 1
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view, half = memoryview(data), len(data) // 2
            _write_all(fd, view[:half])
            fault(f"write:{path.name}", _WRITES[str(path)])  # a crash here leaves a torn temp file
            _write_all(fd, view[half:])
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise _run_file_error(err, f"could not write {path} ({err.strerror or err}); the "
                                   f"previous version of the file is intact. Free disk space or "
                                   f"choose another --out") from err
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:  # some filesystems refuse to fsync a directory; the data is still safe
        pass


_WRITES: dict[str, int] = {}  # per path: how many writes this process attempted


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        view = view[os.write(fd, view):]


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    """Serialise ``state`` (tensors, numbers, strings, lists, tuples, dicts) atomically, with the
    format tag, the checksum of each of its weight dicts (``model``, ``ema``) and the thread
    count."""
    sums = {k: weights_checksum(state[k]) for k in WEIGHT_KEYS if isinstance(state.get(k), dict)}
    buf = io.BytesIO()
    torch.save({**state, "format": FORMAT, "checksums": sums,
                "num_threads": state.get("num_threads", torch.get_num_threads())}, buf)
    atomic_write_bytes(path, buf.getvalue())


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """``path``, or ``path/last.pt`` when ``path`` is a run folder."""
    path = Path(path)
    if path.is_dir():
        if not (path / "last.pt").is_file():
            raise FileNotFoundError(f"{path} is a folder without a checkpoint (last.pt); pass a "
                                    f"run folder or a .pt file.")
        return path / "last.pt"
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu", *,
                    allow_nonfinite: bool = False) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``); a run
    folder means its ``last.pt``. The weights' checksums are verified.

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, not a hopfield checkpoint, weights that fail their
            checksum, or NaN/Inf weights (unless ``allow_nonfinite``).
    """
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; check --resume / --out.")
    state = read_torch_file(path, map_location, what="checkpoint")
    found = state.get("format") if isinstance(state, dict) else type(state).__name__
    if not isinstance(state, dict) or found not in (FORMAT, *LEGACY_FORMATS):
        raise CheckpointError(f"{path} is not a hopfield training checkpoint (expected format "
                              f"{FORMAT!r}, found {found!r}).")
    sums = state.get("checksums") or {}
    for key in WEIGHT_KEYS:
        if isinstance(state.get(key), dict):
            verify_weights(state[key], sums.get(key), source=f"checkpoint {path} ({key})",
                           allow_nonfinite=allow_nonfinite)
    return state


# ---------------------------------------------------------------------------- RNG
def rng_state() -> dict:
    """The states of Python's, NumPy's and torch's (CPU and CUDA) global generators."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                       "has_gauss": has_gauss, "gauss": gauss},
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["gauss"]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# ---------------------------------------------------------------------------- safetensors
def export_safetensors(module: torch.nn.Module, path: str | os.PathLike, metadata: dict) -> None:
    """Write ``module``'s state dict to ``path`` as safetensors, atomically. ``metadata`` (any
    JSON-serialisable dict) is stored under the header key ``"hopfield"``, with ``format`` and
    the weights' ``checksum`` added.

    Raises:
        NonFiniteWeightsError: the weights hold NaN/Inf (nothing is written).
    """
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    if bad := nonfinite_tensors(tensors):
        raise NonFiniteWeightsError(f"not exporting {path}: {len(bad)} weight tensor(s) hold NaN "
                                    f"or Inf ({', '.join(bad[:5])}).")
    meta = {**metadata, "format": EXPORT_FORMAT, "checksum": weights_checksum(tensors)}
    atomic_write_bytes(path, save(tensors, metadata={"hopfield": json.dumps(meta)}))


def load_safetensors(path: str | os.PathLike, *, allow_nonfinite: bool = False,
                     ) -> tuple[dict[str, torch.Tensor], dict]:
    """Read ``(state_dict, metadata)`` written by :func:`export_safetensors`, verifying the
    checksum in its header (an export without one loads with a warning).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: unreadable, checksum mismatch, or NaN/Inf weights (unless
            ``allow_nonfinite``).
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("hopfield", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # noqa: BLE001 - safetensors raises several kinds
        raise CheckpointError(f"weights file {path} is unreadable ({type(err).__name__}: "
                              f"{str(err)[:200]}); it is truncated or not a safetensors "
                              f"file.") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"weights file {path}: its 'hopfield' header is not a JSON object.")
    verify_weights(tensors, meta.get("checksum"), source=f"weights file {path}",
                   allow_nonfinite=allow_nonfinite)
    return tensors, meta
