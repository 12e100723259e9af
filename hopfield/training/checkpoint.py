"""Crash-safe checkpoints, RNG state capture, and ``safetensors`` weight export.

* :func:`atomic_write_bytes` writes to a temporary file in the destination folder, ``fsync``\\ s
  it, then ``os.replace``\\ s it over the old file (atomic on POSIX): a crash or a full disk
  leaves either the old checkpoint or the new one, never a torn file.
* Checkpoints hold only tensors and plain containers, and are read with
  ``torch.load(weights_only=True)``: loading one never runs pickled code.
* :func:`fault` is a fail point for the reliability tests: the environment variable
  ``HOPFIELD_FAULT="<point>@<n>:<action>"`` (e.g. ``step@5:kill``, ``write:last.pt@2:kill``,
  ``loss@3:nan``) makes the ``n``-th visit of ``point`` SIGKILL the
  process (``kill``), raise :class:`FaultInjected` (``raise``), block forever after touching
  ``$HOPFIELD_FAULT_MARKER`` (``pause``, so a test can kill it from outside) or poison the loss
  (``nan``). Unset, it costs one environment lookup.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["CheckpointError", "atomic_write_bytes", "save_checkpoint", "load_checkpoint",
           "ensure_writable", "rng_state", "set_rng_state", "export_safetensors",
           "load_safetensors", "fault", "FaultInjected", "FORMAT"]

FORMAT = "hopfield-checkpoint-v1"
FAULT_ENV = "HOPFIELD_FAULT"


class CheckpointError(ValueError):
    """A checkpoint or weights file that cannot be read back (truncated, corrupt, foreign)."""


class FaultInjected(RuntimeError):
    """Raised by a ``raise`` fail point (a simulated crash inside the process)."""


# ---------------------------------------------------------------------------- fail points
def fault(point: str, index: int) -> str | None:
    """Fire the fail point ``point@index`` if ``$HOPFIELD_FAULT`` names it; returns the action."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return None
    for item in spec.split(","):
        where, _, action = item.rpartition(":")
        if where != f"{point}@{index}":
            continue
        if action == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        if action == "raise":
            raise FaultInjected(f"fail point {point}@{index} ({FAULT_ENV}={spec})")
        if action == "pause":
            Path(os.environ.get("HOPFIELD_FAULT_MARKER", "hopfield-fault-paused")).touch()
            while True:
                time.sleep(1)
        return action
    return None


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
        raise OSError(err.errno, f"output folder {folder} is not writable ({err.strerror or err}); "
                                 f"choose another --out, fix its permissions or free disk "
                                 f"space") from err
    return folder


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``.

    Raises:
        OSError: naming ``path`` (e.g. disk full); the previous file at ``path`` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
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
        raise OSError(err.errno, f"could not write {path} ({err.strerror or err}); the previous "
                                 f"version of the file is intact. Free disk space or choose "
                                 f"another --out") from err
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
    """Serialise ``state`` (tensors, numbers, strings, lists, tuples, dicts) atomically."""
    buf = io.BytesIO()
    torch.save({"format": FORMAT, **state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises:
        FileNotFoundError: no such file. CheckpointError: unreadable or not a hopfield checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist; check --resume / --out.")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"checkpoint {path} is unreadable ({reason}); it is truncated or "
                              f"corrupt. Delete it to start over, or pass an intact checkpoint to "
                              f"--resume.") from err
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"{path} is not a hopfield training checkpoint (expected format "
                              f"{FORMAT!r}, found {found!r}).")
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
    """Write ``module``'s state dict to ``path`` as safetensors, atomically; ``metadata`` (any
    JSON-serialisable dict) is stored under the header key ``"hopfield"``."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in module.state_dict().items()}
    atomic_write_bytes(path, save(tensors, metadata={"hopfield": json.dumps(metadata)}))


def load_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """Read ``(state_dict, metadata)`` written by :func:`export_safetensors`."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("hopfield", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:
        raise CheckpointError(f"weights file {path} is unreadable ({err}); it is truncated or not "
                              f"a safetensors file.") from err
    return tensors, meta
