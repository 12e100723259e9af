"""The open model registry: built-in families, registered block factories, presets, configs.

A preset is a family (``mixer``, ``imixer``, ``vit``, ``et``: blocks from
:mod:`hopfield.blocks`) or a block factory plus its defaults. A factory is called as
``factory(num_tokens=N, dim=D, **kwargs)`` once per block and returns a module mapping tokens
``(B, N, D)`` to ``(B, N, D)``: a derived block (``hf.derive``) or any ``nn.Module``
(docs/concepts/fast_layers.md#classic-blocks). The stem, pooling and head come from the preset's
settings (``img_size``, ``in_chans``, ``patch_size``, ``dim``, ``depth``, ``class_token``,
``pos_embed``, ``global_pool``, ``drop_path_rate``) for every preset alike.

Example:
    >>> import torch, hopfield as hf
    >>> m = hf.models.create_model("imixer_tiny", num_classes=10)
    >>> m(torch.randn(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable

from torch import nn

from .. import blocks as B
from .classifier import HopfieldClassifier
from .factory import factory_name, import_factory

__all__ = ["create_model", "list_models", "register_model", "load_factory", "model_config",
           "model_from_config", "restore_config", "LEGACY_DEFAULTS"]

_MODELS: dict[str, dict] = {}  # name -> {"family": ..., defaults...}; JSON-clean
_FACTORIES: dict[str, Callable] = {}  # name -> the callable of a "custom" preset
_FAMILIES: dict[str, Callable] = {}
_TINY = dict(img_size=28, in_chans=1, patch_size=4, dim=128, depth=4)
_MODEL_KEYS = {"img_size", "in_chans", "patch_size", "dim", "depth", "class_token", "pos_embed",
               "global_pool", "drop_path_rate"}


def _family(name):
    def wrap(fn):
        _FAMILIES[name] = fn
        return fn
    return wrap


@_family("mixer")
def _mixer_blocks(n, dim, depth, *, tied=False, act=None, token_dim=None, channel_dim=None, **kw):
    act = act or ("relu" if tied else "gelu")
    return [B.mixer_block(n, dim, token_dim, channel_dim, act=act, tied=tied, **kw)
            for _ in range(depth)]


@_family("imixer")
def _imixer_blocks(n, dim, depth, *, tied=False, act=None, token_dim=None, feedback_dim=None,
                   channel_dim=None, n_iter=None, **kw):
    act = act or ("relu" if tied else "gelu")
    if n_iter is not None:
        kw["max_iter"] = n_iter
    return [B.imixer_block(n, dim, token_dim, feedback_dim, channel_dim, act=act, tied=tied, **kw)
            for _ in range(depth)]


@_family("vit")
def _vit_blocks(n, dim, depth, *, num_heads=4, mlp_dim=None, tied=False, qkv_bias=True, **kw):
    return [B.vit_block(n, dim, num_heads, mlp_dim, tied=tied, qkv_bias=qkv_bias, **kw)
            for _ in range(depth)]


@_family("et")
def _et_blocks(n, dim, depth, *, num_heads=4, head_dim=None, num_memories=None, steps=4,
               step_size=0.1, **kw):
    return [B.et_block(n, dim, num_heads, head_dim, num_memories, steps=steps,
                       step_size=step_size, **kw) for _ in range(depth)]


def register_model(name: str, factory: str | Callable | None = None, /, *,
                   overwrite: bool = False, **defaults):
    """Register a preset under ``name``.

    ``factory`` is a built-in family (``"mixer"``, ``"imixer"``, ``"vit"``, ``"et"``) or a
    callable block factory ``factory(num_tokens=..., dim=..., **kwargs) -> nn.Module``; without
    it, ``register_model`` is a decorator: ``@register_model("my_model", depth=2)``. ``defaults``
    are the preset's settings: stem/pooling ones (a factory preset starts from 28 px grey images,
    4 px patches, ``dim=128``, ``depth=4``) and the rest, which go to every block.

    Registering a taken name raises ``ValueError`` unless ``overwrite=True``; registering the
    same factory (same qualified name) with the same defaults again is a no-op.

    Example:
        >>> import torch, hopfield as hf
        >>> @hf.models.register_model("doc_identity", depth=1, overwrite=True)
        ... def identity_block(num_tokens, dim):
        ...     return torch.nn.Identity()
        >>> hf.models.create_model("doc_identity")(torch.randn(2, 1, 28, 28)).shape
        torch.Size([2, 10])
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"register_model: the first argument is the model's name, e.g. "
                        f"@register_model('my_model', dim=128); got {name!r}.")
    if factory is None:
        def decorate(fn: Callable) -> Callable:
            register_model(name, fn, overwrite=overwrite, **defaults)
            return fn
        return decorate
    if isinstance(factory, str):
        if factory not in _FAMILIES:
            raise ValueError(f"register_model({name!r}): unknown family {factory!r}; valid: "
                             f"{', '.join(sorted(_FAMILIES))}, or pass a block factory.")
        entry, fn = {"family": factory, **defaults}, None
    elif callable(factory):
        entry = {"family": "custom", "factory": factory_name(factory), **_TINY, **defaults}
        fn = factory
    else:
        raise TypeError(f"register_model({name!r}): expected a family name or a callable block "
                        f"factory, got {type(factory).__name__}.")
    if name in _MODELS and not overwrite and _MODELS[name] != entry:
        raise ValueError(f"register_model: {name!r} is already registered ({_describe(name)}); "
                         f"pass overwrite=True to replace it, or pick another name.")
    _MODELS[name] = entry
    _FACTORIES.pop(name, None)
    if fn is not None:
        _FACTORIES[name] = fn
    return None


def _describe(name: str) -> str:
    e = _MODELS[name]
    return f"factory {e['factory']}" if e["family"] == "custom" else f"family {e['family']}"


def load_factory(spec: str, name: str | None = None, *, overwrite: bool = False,
                 **defaults) -> str:
    """Import the block factory ``spec`` names (``"package.module:function"`` or
    ``"path/to/file.py:function"``), register it under ``name`` (default: the function's name)
    and return that name, ready for :func:`create_model` or ``hopfield train --model``.

    Importing runs the named file: only name code you trust. Loading the same file again is a
    no-op. Errors (no file, no such function, not callable, a syntax error) name the spec.
    """
    fn = import_factory(spec)
    name = name or getattr(fn, "__name__", None) or spec
    register_model(name, fn, overwrite=overwrite, **defaults)
    return name


# Settings every model config records explicitly (their defaults are read off the block builders),
# so that a changed default never changes a saved model; and the values they had before configs
# recorded them, which a config without the key (an older checkpoint) means.
_BUILDERS = {"mixer": B.mixer_block, "imixer": B.imixer_block, "vit": B.vit_block, "et": B.et_block}
LEGACY_DEFAULTS: dict[str, dict] = {
    "mixer": {"eps": 1e-6},
    "vit": {"eps": 1e-6},
    "et": {"eps": 1e-6},  # the authors' 1e-5 is the default since configs record it
    "imixer": {"eps": 1e-6, "coeff": 0.9, "n_power_iterations": 8, "spectral_schedule": "forward"},
}


def _recorded_defaults(family: str) -> dict:
    if family not in _BUILDERS:
        return {}
    params = inspect.signature(_BUILDERS[family]).parameters
    return {k: params[k].default for k in LEGACY_DEFAULTS[family]}


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``."""
    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def model_config(name: str) -> dict:
    """A copy of the preset ``name`` (``family``, and ``factory`` for a registered factory)."""
    if name not in _MODELS:
        raise ValueError(f"Unknown model {name!r}; valid models: {', '.join(list_models())}.")
    return dict(_MODELS[name])


def _custom_blocks(fn: Callable, who: str, n: int, dim: int, depth: int, **kw) -> list[nn.Module]:
    blocks = [fn(num_tokens=n, dim=dim, **kw) for _ in range(depth)]
    for blk in blocks:
        if not isinstance(blk, nn.Module):
            raise TypeError(f"{who}: the factory {factory_name(fn)} returned a "
                            f"{type(blk).__name__}; a block factory must return an nn.Module "
                            f"mapping tokens (B, N, D) to (B, N, D).")
    return blocks


def _build(name: str, preset: dict, fn: Callable | None, num_classes: int, img_size, in_chans,
           kwargs: dict) -> HopfieldClassifier:
    cfg = dict(preset)
    family = cfg.pop("family")
    cfg.pop("factory", None)
    if img_size is not None:
        cfg["img_size"] = img_size
    if in_chans is not None:
        cfg["in_chans"] = in_chans
    cfg.update(kwargs)
    for key, value in _recorded_defaults(family).items():  # explicit in the config
        cfg.setdefault(key, value)
    model_kw = {k: cfg.pop(k) for k in list(cfg) if k in _MODEL_KEYS}
    patches = (model_kw["img_size"] // model_kw["patch_size"]) ** 2
    n = patches + (1 if model_kw.get("class_token") else 0)
    who = f"create_model({name!r})"
    build = _FAMILIES[family] if fn is None else (lambda n, d, depth, **kw:
                                                  _custom_blocks(fn, who, n, d, depth, **kw))
    try:
        blocks = build(n, model_kw["dim"], model_kw["depth"], **cfg)
    except TypeError as err:
        if fn is not None:
            raise TypeError(f"{who}: the factory {factory_name(fn)} rejected its arguments "
                            f"(num_tokens={n}, dim={model_kw['dim']}, {cfg}): {err}. Model "
                            f"options: {', '.join(sorted(_MODEL_KEYS))}.") from err
        valid = sorted(_MODEL_KEYS | set(inspect.signature(build).parameters) - {"n", "kw"})
        raise TypeError(f"{who}: {err}. Model options: {', '.join(valid)}; solver options: "
                        f"solver, max_iter, tol, grad, currents, spectral_schedule.") from err
    depth = model_kw.pop("depth")
    model = HopfieldClassifier(blocks, num_classes=num_classes, **model_kw)
    recorded = {"factory": factory_name(fn)} if fn is not None else {}
    model.config = {"name": name, "family": family, **recorded, "num_classes": num_classes,
                    "depth": depth, **model_kw, **cfg}
    model.pretrained_cfg["architecture"] = name
    return model


def create_model(name: str, num_classes: int = 10, img_size: int | None = None,
                 in_chans: int | None = None, *, pretrained: bool = False,
                 pretrained_file: str | None = None, **kwargs) -> HopfieldClassifier:
    """Build a registered model; keyword arguments override the preset (e.g. ``depth=2``,
    ``n_iter=4``, ``solver="anderson"``, ``tol=1e-4``, ``grad="implicit"``,
    ``spectral_schedule="iteration"``, ``global_pool=""``; ``num_classes=0``: no head).
    ``model.config`` records every setting, ``eps`` and the iMixer spectral-norm settings
    included even when left at their defaults, and a factory preset's ``factory`` name; rebuild
    a saved one with :func:`model_from_config`. Weights from a file: ``hf.create_model(name,
    pretrained_file=...)`` (:mod:`hopfield.weights`)."""
    if pretrained:
        raise ValueError(f"create_model({name!r}, pretrained=True): hopfield hosts no pretrained "
                         f"weights; pass pretrained_file='path' (a hopfield .safetensors, a timm "
                         f"or an official iMixer checkpoint) to hf.create_model.")
    if pretrained_file is not None:
        raise ValueError(f"create_model({name!r}, pretrained_file=...): hopfield.models builds "
                         f"models only; load files with hf.create_model (hopfield.weights).")
    preset = model_config(name)
    if preset["family"] == "custom" and name not in _FACTORIES:
        raise ValueError(f"create_model({name!r}): its factory is not registered.")
    return _build(name, preset, _FACTORIES.get(name), num_classes, img_size, in_chans, kwargs)


def restore_config(config: dict) -> dict:
    """A recorded model config (a checkpoint's ``model_config``) with the settings it does not
    record (written before they were) set to :data:`LEGACY_DEFAULTS`, the values they had then,
    not today's defaults. A config of no known family comes back unchanged."""
    cfg = dict(config)
    family = cfg.get("family") or _MODELS.get(cfg.get("name"), {}).get("family")
    for key, value in LEGACY_DEFAULTS.get(family, {}).items():
        cfg.setdefault(key, value)
    return cfg


def _factory_for(config: dict, factory: Callable | None) -> Callable | None:
    """The factory that rebuilds ``config``: the one the user names, checked against the
    recorded name. Nothing is imported here."""
    recorded, name = config.get("factory"), config["name"]
    if recorded is None:
        if factory is not None:
            raise ValueError(f"model_from_config: {name!r} records no factory (a built-in "
                             f"family); drop factory=.")
        return None
    fn = factory if factory is not None else _FACTORIES.get(name)
    if fn is None:
        raise ValueError(f"{name!r} was built by the block factory {recorded}; loading never "
                         f"imports code: name it again with hf.models.load_factory("
                         f"'path/to/file.py:function') or register_model({name!r}, function), "
                         f"or pass factory=function.")
    given = factory_name(fn)
    if given != recorded:
        raise ValueError(f"factory mismatch for {name!r}: the weights were built by {recorded}, "
                         f"but the factory given is {given}; name the factory that built them.")
    return fn


def model_from_config(config: dict, *, factory: Callable | None = None,
                      **overrides) -> HopfieldClassifier:
    """Rebuild the model a recorded ``config`` describes (see :func:`restore_config`);
    ``overrides`` go to :func:`create_model`. A factory-built model needs its factory named
    again (registered, or ``factory=``); a different factory is an error. No weights load."""
    if "name" not in config:
        raise ValueError(f"model_from_config: the config has no 'name' (a registered model); "
                         f"got keys {sorted(config)}.")
    cfg = restore_config(config)
    fn = _factory_for(cfg, factory)
    for key in ("family", "factory"):
        cfg.pop(key, None)
    cfg.update(overrides)
    name = cfg.pop("name")
    if fn is None:
        return create_model(name, **cfg)
    preset = _MODELS.get(name) if name in _FACTORIES and _FACTORIES[name] is fn else None
    preset = preset or {"family": "custom", **_TINY}
    num_classes = cfg.pop("num_classes", 10)
    return _build(name, preset, fn, num_classes, cfg.pop("img_size", None),
                  cfg.pop("in_chans", None), cfg)
