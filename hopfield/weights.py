"""The one loader: run folders, training checkpoints, ``.safetensors`` exports, timm and official
iMixer files -> a model. Loading never runs code: ``torch.load(weights_only=True)`` and
safetensors only; a factory-built model needs its factory named again (loading compares the
recorded name with it, it never imports it; docs/concepts/fast_layers.md#classic-blocks).

* :func:`create_model` is timm's ``create_model`` for this package: the registry's builder
  (:func:`hopfield.models.create_model`) plus ``pretrained_file=`` (``pretrained=True`` is an
  error: no weights are hosted).
* :func:`load_model` rebuilds the model a file or run folder describes and loads its weights.
* :func:`read_weights` reads ``(state_dict, metadata)`` from any of those files.

Example:
    >>> import torch, hopfield as hf
    >>> m = hf.create_model("mixer_tiny", depth=1, dim=16)
    >>> from safetensors.torch import save_file
    >>> save_file(m.state_dict(), "mixer.safetensors")
    >>> back = hf.create_model("mixer_tiny", depth=1, dim=16, pretrained_file="mixer.safetensors")
    >>> torch.equal(back.head.weight, m.head.weight)
    True
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ._interop_layout import _guess, read_checkpoint
from .integrity import read_torch_file, verify_weights
from .interop import convert
from .models import create_model as _create_model
from .models import model_from_config

__all__ = ["create_model", "load_model", "load_pretrained", "read_weights", "resolve_path"]

CHECKPOINT_PREFIX = "hopfield-checkpoint-"  # the format tag of `hopfield train` checkpoints


def resolve_path(path: str | os.PathLike, *, ema: bool = False) -> Path:
    """A file, or the weights of a run folder: ``model.safetensors`` (``model_ema.safetensors``
    with ``ema``), else ``last.pt`` (a run that has not finished)."""
    path = Path(path)
    if path.is_dir():
        name = "model_ema.safetensors" if ema else "model.safetensors"
        if (path / name).is_file():
            return path / name
        if (path / "last.pt").is_file():
            return path / "last.pt"
        raise FileNotFoundError(f"run folder {path} holds neither {name} nor last.pt"
                                f"{' (was it trained with --ema?)' if ema else ''}.")
    if not path.is_file():
        raise FileNotFoundError(f"no weights file or run folder at {str(path)!r}.")
    return path


def _read_safetensors(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = json.loads((f.metadata() or {}).get("hopfield", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:
        raise ValueError(f"weights file {path} is unreadable ({err}); it is truncated or not a "
                         f"safetensors file.") from None
    return tensors, meta


def read_weights(path: str | os.PathLike, *, map_location="cpu", ema: bool = False,
                 allow_nonfinite: bool = False) -> tuple[dict[str, torch.Tensor], dict]:
    """``(state_dict, metadata)`` of a run folder or a file.

    Hopfield checkpoints and exports are verified against the checksum stored with them, and
    NaN/Inf weights are refused unless ``allow_nonfinite`` (docs/reliability.md); timm and
    official iMixer files carry no checksum and are read as they are.

    The metadata of a hopfield file holds ``model_config`` and, from ``hopfield train``,
    ``dataset``, ``classes``, ``mean``, ``std``; a foreign file (timm, official iMixer: a state
    dict, possibly wrapped in ``{"state_dict": ...}`` or ``{"model": ...}``) gives ``{}``.
    """
    path = resolve_path(path, ema=ema)
    if path.suffix == ".safetensors":
        state, meta = _read_safetensors(path)
        if ema and path.name != "model_ema.safetensors":
            raise ValueError(f"{path} is a single set of weights; EMA weights are in "
                             f"model_ema.safetensors of a run trained with --ema.")
        if meta:  # a hopfield export: verify its checksum (foreign files carry none)
            verify_weights(state, meta.get("checksum"), source=f"weights file {path}",
                           allow_nonfinite=allow_nonfinite)
        return state, meta
    obj = read_torch_file(path, map_location, what="weights file")
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict) and (
            str(obj.get("format", "")).startswith(CHECKPOINT_PREFIX) or "model_config" in obj
            or "name" in (obj.get("config") if isinstance(obj.get("config"), dict) else {})):
        state = obj.get("ema") if ema else obj["model"]
        if state is None:
            raise ValueError(f"{path} holds no EMA weights: the run was trained without --ema.")
        if str(obj.get("format", "")).startswith(CHECKPOINT_PREFIX):
            sums = obj.get("checksums") or {}
            verify_weights(dict(state), sums.get("ema" if ema else "model"),
                           source=f"checkpoint {path}", allow_nonfinite=allow_nonfinite)
        config = obj.get("config") if isinstance(obj.get("config"), dict) else {}
        meta = {"model_config": obj.get("model_config") or
                (config if "name" in config else None),
                "dataset": config.get("dataset"), "classes": obj.get("classes"),
                **(obj.get("normalize") or {})}
        return dict(state), {k: v for k, v in meta.items() if v is not None}
    if ema:
        raise ValueError(f"{path} is not a hopfield training checkpoint; it has no EMA weights.")
    return read_checkpoint(obj), {}


def _foreign_source(state: dict, source: str | None, path) -> str:
    source = source or _guess(state)
    if source is None:
        raise ValueError(f"{path} holds weights without a hopfield model configuration, and "
                         f"their keys are neither timm's nor the official iMixer's; pass the "
                         f"model (model=..., or name=<registered model>).")
    return source


def _note_file(model: nn.Module, path, meta: dict) -> None:
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict):
        cfg["file"] = str(path)
        for key in ("mean", "std"):
            if meta.get(key) is not None:
                cfg[key] = tuple(meta[key])
        for key in ("classes", "dataset"):
            if meta.get(key) is not None:
                cfg[key] = meta[key]


def load_pretrained(model: nn.Module, path: str | os.PathLike, *, source: str | None = None,
                    strict: bool = True) -> nn.Module:
    """Load a file's weights into ``model`` (a hopfield file, or a timm / official iMixer
    checkpoint converted through :func:`hopfield.interop.convert`). A head of another size (or
    ``num_classes=0``) keeps its fresh initialisation, with a warning, as in timm."""
    state, meta = read_weights(path)
    if "model_config" not in meta and not any(k.startswith("blocks.") and ".graph." in k
                                              for k in state):
        src = _foreign_source(state, source, path)
        options = {"num_heads": model.config["num_heads"]} if src == "timm_vit" else {}
        state = convert(state, src, **options).state_dict()
    own = model.state_dict()
    head = [k for k in state if k.startswith("head.")]
    if head and any(k not in own or own[k].shape != state[k].shape for k in head):
        warnings.warn(f"{path}: its head ({tuple(state['head.weight'].shape)}) does not fit "
                      f"the model's ({getattr(model, 'num_classes', '?')} classes); the head "
                      f"keeps its fresh initialisation.", stacklevel=2)
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        state.update({k: v for k, v in own.items() if k.startswith("head.")})
    try:
        model.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit the model "
                         f"{getattr(model, 'config', {}).get('name', type(model).__name__)}: "
                         f"{err}") from None
    _note_file(model, path, meta)
    return model


def create_model(name: str, num_classes: int = 10, img_size: int | None = None,
                 in_chans: int | None = None, *, pretrained: bool = False,
                 pretrained_file: str | os.PathLike | None = None, **kwargs) -> nn.Module:
    """timm's ``create_model``: build the registered model ``name`` (keyword arguments as for
    :func:`hopfield.models.create_model`) and, with ``pretrained_file``, load that file's
    weights (:func:`load_pretrained`). ``pretrained=True`` raises: no weights are hosted."""
    model = _create_model(name, num_classes, img_size, in_chans, pretrained=pretrained, **kwargs)
    if pretrained_file is not None:
        load_pretrained(model, pretrained_file)
    return model


def load_model(path_or_run_folder: str | os.PathLike, *, model: nn.Module | None = None,
               map_location="cpu", factory: Callable | None = None, ema: bool = False,
               name: str | None = None, source: str | None = None, **overrides) -> nn.Module:
    """The model a run folder or weights file holds, with its weights, in eval mode.

    Args:
        path_or_run_folder: a ``hopfield train`` run folder (its ``model.safetensors``, else
            ``last.pt``), a ``.pt`` checkpoint, a ``.safetensors`` export, or a timm / official
            iMixer checkpoint (converted, :func:`hopfield.interop.convert`).
        model: load into this module instead of building one.
        map_location: the device of the returned model.
        factory: the block factory of a factory-built model, if not registered; it must be the
            one the file records (a mismatch raises).
        ema: the EMA weights of a run trained with ``--ema``.
        name: a registered model, for a file of bare weights (no configuration).
        source: ``"timm_mixer"``, ``"timm_vit"`` or ``"imixer"`` when the keys do not tell.
        **overrides: go to :func:`hopfield.models.model_from_config` (or to ``convert``).

    ``model.pretrained_cfg`` then records the file and, from ``hopfield train``, the training
    set's ``mean``/``std``, ``classes`` and ``dataset``.
    """
    path = resolve_path(path_or_run_folder, ema=ema)
    state, meta = read_weights(path, ema=ema)
    if model is not None:
        return load_pretrained(model, path, source=source).to(map_location).eval()
    if meta.get("model_config"):
        model = model_from_config(meta["model_config"], factory=factory, **overrides)
    elif name is not None:
        model = _create_model(name, **overrides)
    else:
        model = convert(state, _foreign_source(state, source, path), **overrides)
        _note_file(model, path, meta)
        return model.to(map_location).eval()
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{path}: the weights do not fit the model its configuration "
                         f"describes: {err}") from None
    _note_file(model, path, meta)
    return model.to(map_location).eval()
