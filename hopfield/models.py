"""Image classifiers built from derived blocks, and a timm-style model registry.

Every model is ``patch-embedding stem -> [class token, position embedding] -> derived blocks ->
final layer norm -> pooling -> linear head``. The blocks come from :mod:`hopfield.blocks`, i.e.
from declared energies; nothing here writes a block by hand.

Example:
    >>> import torch, hopfield as hf
    >>> m = hf.models.create_model("imixer_tiny", num_classes=10)
    >>> m(torch.randn(2, 1, 28, 28)).shape
    torch.Size([2, 10])
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

from . import blocks as B

__all__ = ["PatchEmbed", "HopfieldClassifier", "create_model", "list_models", "register_model",
           "model_config", "model_from_config", "restore_config", "LEGACY_DEFAULTS"]


class PatchEmbed(nn.Module):
    """Non-overlapping patches -> tokens: ``(B, C, H, W) -> (B, (H/p)(W/p), dim)``."""

    def __init__(self, img_size: int, patch_size: int, in_chans: int, dim: int):
        super().__init__()
        if img_size % patch_size:
            raise ValueError(f"PatchEmbed: img_size={img_size} is not divisible by "
                             f"patch_size={patch_size}; pick sizes whose ratio is an integer.")
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.num_patches = (img_size // patch_size) ** 2
        self.proj = nn.Conv2d(in_chans, dim, patch_size, patch_size)

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != self.in_chans or tuple(x.shape[2:]) != (self.img_size,) * 2:
            raise ValueError(f"expected images shaped (batch, {self.in_chans}, {self.img_size}, "
                             f"{self.img_size}), got {tuple(x.shape)}; set in_chans/img_size when "
                             f"creating the model.")
        return self.proj(x).flatten(2).transpose(1, 2)  # (B, N, D)


class HopfieldClassifier(nn.Module):
    """Stem, derived blocks, final norm, pooling (``"avg"`` or ``"token"``) and a linear head."""

    def __init__(self, blocks: list[nn.Module], *, img_size: int, patch_size: int, in_chans: int,
                 dim: int, num_classes: int, class_token: bool = False, pos_embed: bool = False,
                 global_pool: str = "avg", drop_path_rate: float = 0.0, norm_eps: float = 1e-6):
        super().__init__()
        if global_pool not in ("avg", "token"):
            raise ValueError(f"global_pool must be 'avg' or 'token', got {global_pool!r}.")
        if global_pool == "token" and not class_token:
            raise ValueError("global_pool='token' needs class_token=True.")
        self.stem = PatchEmbed(img_size, patch_size, in_chans, dim)
        self.num_prefix = 1 if class_token else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        n = self.stem.num_patches + self.num_prefix
        self.pos_embed = nn.Parameter(torch.randn(1, n, dim) * 0.02) if pos_embed else None
        self.blocks = nn.ModuleList(blocks)
        for i, blk in enumerate(self.blocks):  # linearly growing stochastic depth
            blk.drop_path = drop_path_rate * i / max(len(self.blocks) - 1, 1)
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.head = nn.Linear(dim, num_classes)
        self.global_pool, self.num_classes, self.dim = global_pool, num_classes, dim
        self.config: dict = {}

    def forward_features(self, x):
        if not torch.isfinite(x).all():
            raise ValueError(f"input images contain NaN or Inf ({int((~torch.isfinite(x)).sum())} "
                             f"of {x.numel()} values); check the data pipeline or normalisation.")
        x = self.stem(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def forward(self, x):
        x = self.forward_features(x)
        x = x[:, 0] if self.global_pool == "token" else x[:, self.num_prefix:].mean(1)
        return self.head(x)


# ---------------------------------------------------------------------------- registry
_MODELS: dict[str, dict] = {}
_FAMILIES: dict[str, Callable] = {}


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


def register_model(name: str, family: str, **config) -> None:
    """Register a preset: ``family`` in mixer/imixer/vit/et plus its default configuration."""
    if family not in _FAMILIES:
        raise ValueError(f"unknown family {family!r}; valid: {', '.join(sorted(_FAMILIES))}.")
    _MODELS[name] = {"family": family, **config}


_TINY = dict(img_size=28, in_chans=1, patch_size=4, dim=128, depth=4)
register_model("mixer_tiny", "mixer", **_TINY)
register_model("mixer_tied_tiny", "mixer", tied=True, **_TINY)
register_model("imixer_tiny", "imixer", n_iter=1, **_TINY)
register_model("imixer_k2_tiny", "imixer", n_iter=2, **_TINY)
register_model("imixer_tied_tiny", "imixer", tied=True, n_iter=2, **_TINY)
register_model("vit_tiny", "vit", num_heads=4, **_TINY)
register_model("et_tiny", "et", num_heads=4, steps=4, step_size=0.1, **_TINY)
for _size, (_depth, _dim) in {"s": (8, 512), "b": (12, 768), "l": (24, 1024)}.items():
    _paper = dict(img_size=224, in_chans=3, patch_size=16, dim=_dim, depth=_depth)
    register_model(f"mixer_{_size}16_224", "mixer", **_paper)
    register_model(f"imixer_{_size}16_224", "imixer", n_iter=4, **_paper)
register_model("vit_s16_224", "vit", img_size=224, in_chans=3, patch_size=16, dim=384, depth=12,
               num_heads=6, class_token=True, pos_embed=True, global_pool="token")
register_model("vit_b16_224", "vit", img_size=224, in_chans=3, patch_size=16, dim=768, depth=12,
               num_heads=12, class_token=True, pos_embed=True, global_pool="token")
register_model("et_s16_224", "et", img_size=224, in_chans=3, patch_size=16, dim=384, depth=1,
               num_heads=12, steps=12, step_size=0.1, pos_embed=True)

_MODEL_KEYS = {"img_size", "in_chans", "patch_size", "dim", "depth", "class_token", "pos_embed",
               "global_pool", "drop_path_rate"}

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
    params = inspect.signature(_BUILDERS[family]).parameters
    return {k: params[k].default for k in LEGACY_DEFAULTS[family]}


def list_models(pattern: str = "*") -> list[str]:
    """Registered model names matching a shell-style ``pattern``."""
    import fnmatch

    return sorted(n for n in _MODELS if fnmatch.fnmatch(n, pattern))


def model_config(name: str) -> dict:
    if name not in _MODELS:
        raise ValueError(f"Unknown model {name!r}; valid models: {', '.join(list_models())}.")
    return dict(_MODELS[name])


def create_model(name: str, num_classes: int = 10, img_size: int | None = None,
                 in_chans: int | None = None, **kwargs) -> HopfieldClassifier:
    """Build a registered model; keyword arguments override the preset (e.g. ``depth=2``,
    ``n_iter=4``, ``solver="anderson"``, ``tol=1e-4``, ``grad="implicit"``,
    ``spectral_schedule="iteration"``). ``model.config`` records every setting, ``eps`` and the
    iMixer spectral-norm settings included even when left at their defaults; rebuild a saved
    one with :func:`model_from_config`."""
    cfg = model_config(name)
    family = cfg.pop("family")
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
    fam = _FAMILIES[family]
    try:
        blocks = fam(n, model_kw["dim"], model_kw["depth"], **cfg)
    except TypeError as err:
        valid = sorted(_MODEL_KEYS | set(inspect.signature(fam).parameters) - {"n", "kw"})
        raise TypeError(f"create_model({name!r}): {err}. Model options: {', '.join(valid)}; "
                        f"solver options: solver, max_iter, tol, grad, currents, "
                        f"spectral_schedule.") from err
    depth = model_kw.pop("depth")
    model = HopfieldClassifier(blocks, num_classes=num_classes, **model_kw)
    model.config = {"name": name, "family": family, "num_classes": num_classes, "depth": depth,
                    **model_kw, **cfg}
    return model


def restore_config(config: dict) -> dict:
    """A recorded model config (a checkpoint's ``model_config``) with the settings it does not
    record (written before they were) set to :data:`LEGACY_DEFAULTS`, the values they had then,
    not today's defaults. A config of no known family comes back unchanged."""
    cfg = dict(config)
    family = cfg.get("family") or _MODELS.get(cfg.get("name"), {}).get("family")
    for key, value in LEGACY_DEFAULTS.get(family, {}).items():
        cfg.setdefault(key, value)
    return cfg


def model_from_config(config: dict, **overrides) -> HopfieldClassifier:
    """Rebuild the model a recorded ``config`` describes (see :func:`restore_config`);
    ``overrides`` go to :func:`create_model`. The weights are not loaded."""
    if "name" not in config:
        raise ValueError(f"model_from_config: the config has no 'name' (a registered model); "
                         f"got keys {sorted(config)}.")
    cfg = restore_config(config)
    cfg.pop("family", None)
    cfg.update(overrides)
    return create_model(cfg.pop("name"), **cfg)
