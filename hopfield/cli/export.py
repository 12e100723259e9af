"""Export a model to a file and check the file against the eager model.

:func:`export_model` writes one of :data:`FORMATS`, loads it back, runs it on example images and
reports the largest absolute difference from the eager model (``≤ 1e-5`` in float32, or it
raises :class:`ExportMismatchError`):

- ``"pt2"``: ``torch.export.export`` with a dynamic batch dimension, saved by
  ``torch.export.save`` (load with ``torch.export.load(path).module()``);
- ``"onnx"``: ``torch.onnx.export(..., dynamo=True)`` with a dynamic batch dimension, run back
  with onnxruntime (``pip install 'hopfield[export]'``);
- ``"safetensors"``: the weights, with the model's configuration (and ``metadata``) in the header,
  rebuilt through :func:`hopfield.models.model_from_config`.

Every registered family also runs under ``torch.compile(fullgraph=True)``, ``torch.jit.trace``
and ``torch.save(model)`` (spectral norms included); ``tests/test_export.py`` checks them all.

Example:
    >>> import hopfield as hf
    >>> from hopfield.cli.export import export_model
    >>> model = hf.models.create_model("mixer_tiny", depth=1, dim=16)
    >>> export_model(model, "mixer.pt2").max_abs_diff  # doctest: +SKIP
    0.0
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

__all__ = ["FORMATS", "ExportReport", "ExportMismatchError", "export_model", "example_images"]

FORMATS = ("safetensors", "onnx", "pt2")
TOLERANCE = 1e-5  # float32


class ExportMismatchError(RuntimeError):
    """The exported file computes something else than the eager model."""


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_model` wrote and how closely the file reproduces the eager model."""

    path: Path
    format: str
    max_abs_diff: float
    images: int

    def __str__(self) -> str:
        return (f"wrote {self.path} ({self.format}): max |export - eager| = "
                f"{self.max_abs_diff:.3g} over {self.images} images")


def example_images(model: nn.Module, batch_size: int = 2, seed: int = 0) -> torch.Tensor:
    """Seeded standard-normal images shaped for ``model`` (``(B, in_chans, img_size, img_size)``)."""
    stem = model.stem
    gen = torch.Generator().manual_seed(seed)
    param = next(model.parameters())
    x = torch.randn((batch_size, stem.in_chans, stem.img_size, stem.img_size), generator=gen)
    return x.to(param.device, param.dtype)


def _format_of(path: Path, format: str | None) -> str:
    fmt = format or {".pt2": "pt2", ".onnx": "onnx", ".safetensors": "safetensors"}.get(
        path.suffix.lower())
    if fmt not in FORMATS:
        raise ValueError(f"export: unknown format {format or path.suffix!r} for {path}; expected "
                         f"one of {', '.join(FORMATS)} (or a file ending in .pt2, .onnx, "
                         f".safetensors).")
    return fmt


def _batch_dim() -> tuple[dict[int, object]]:
    return ({0: torch.export.Dim("batch", min=1)},)


def _pt2(model: nn.Module, x: torch.Tensor, path: Path) -> torch.Tensor:
    program = torch.export.export(model, (x,), dynamic_shapes=_batch_dim())
    torch.export.save(program, path)
    return torch.export.load(path).module()(x)


def _onnx(model: nn.Module, x: torch.Tensor, path: Path) -> torch.Tensor:
    try:
        import onnxruntime
    except ImportError as err:
        raise ModuleNotFoundError(f"ONNX export needs onnx, onnxscript and onnxruntime: pip "
                                  f"install 'hopfield[export]' ({err}).") from None
    program = torch.onnx.export(model, (x,), dynamo=True, dynamic_shapes=_batch_dim(),
                                verbose=False)
    program.save(str(path))
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.detach().cpu().numpy()})
    return torch.from_numpy(out).to(x.device)


def _safetensors(model: nn.Module, x: torch.Tensor, path: Path, metadata: dict) -> torch.Tensor:
    from ..models import model_from_config
    from ..training.checkpoint import export_safetensors, load_safetensors

    config = getattr(model, "config", None)
    if not config:
        raise ValueError("export to safetensors: the model has no config (build it with "
                         "hopfield.models.create_model), so the file could not be loaded back.")
    export_safetensors(model, path, {**metadata, "model_config": config})
    tensors, meta = load_safetensors(path)
    rebuilt = model_from_config(meta["model_config"]).to(x.device, x.dtype).eval()
    rebuilt.load_state_dict(tensors)
    return rebuilt(x)


def export_model(model: nn.Module, path: str | os.PathLike, format: str | None = None, *,
                 example: torch.Tensor | None = None, metadata: dict | None = None,
                 tolerance: float = TOLERANCE) -> ExportReport:
    """Write ``model`` (put in eval mode) to ``path`` as ``format`` (default: from the suffix),
    load the file back and compare it with the eager model on ``example`` images (default:
    :func:`example_images`). ``metadata`` goes into a safetensors header.

    Raises:
        ValueError: unknown format.
        ModuleNotFoundError: ONNX export without onnxruntime (the ``export`` extra).
        ExportMismatchError: the file differs from eager by more than ``tolerance``.
    """
    path = Path(path)
    fmt = _format_of(path, format)
    model = model.eval()
    x = example_images(model) if example is None else example
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        eager = model(x)
        if fmt == "pt2":
            got = _pt2(model, x, path)
        elif fmt == "onnx":
            got = _onnx(model, x, path)
        else:
            got = _safetensors(model, x, path, dict(metadata or {}))
    diff = float((got.to(eager.dtype) - eager).abs().max()) if eager.numel() else 0.0
    if not diff <= tolerance:
        raise ExportMismatchError(f"{path} ({fmt}) differs from the eager model by {diff:.3g} "
                                  f"(> {tolerance:g}) on {len(x)} images.")
    return ExportReport(path, fmt, diff, len(x))
