r"""Load timm / official-iMixer checkpoints into derived models, and write them back.

The derived blocks *are* the published blocks (``docs/concepts/fast_layers.md#classic-blocks``;
``tests/derivation/test_equivalence.py`` pins them to reference implementations in float64, and
``tests/derivation/test_faithful.py`` pins 20 training steps of a converted iMixer to the official
loop), so every tensor of a checkpoint has exactly one place in the derived model. Per block
``blocks.<i>.``:

| checkpoint | derived block |
|---|---|
| ``norm1`` | ``graph.neurons.x.lagrangian``: the visible layer's layer-norm Lagrangian |
| ``norm2`` | ``group_lagrangians.0``: the channel group's Lagrangian (operator splitting) |
| an MLP ``fc1`` / ``fc2`` | a dense synapse: ``weight``, ``bias`` ($W g_A + b$) / ``weight_back``, ``bias_back`` ($V g_B + c$) |
| ``attn.qkv`` (rows q; k; v), ``attn.proj`` | ``graph.synapses.attn.in_proj_*``, ``.out_proj`` |
| iMixer ``fc_sn1`` / ``fc_sn2`` | ``graph.synapses.token_feedback``: $W_{32}$ / $W_{23}$ (spectral norm: ``parametrizations``) |

The MLPs sit on ``token_mlp`` / ``channel_mlp`` (Mixer), ``token_in`` / ``channel_mlp`` (iMixer)
and ``mlp`` (ViT); the stem, class token, position embedding, final norm and head keep their names
(timm's ``patch_embed`` becomes ``stem``).

Example:
    >>> import torch, hopfield as hf
    >>> model = hf.models.create_model("mixer_tiny", depth=1, dim=16)
    >>> sd = hf.interop.export(model, target="timm_mixer")
    >>> back = hf.interop.convert(sd, source="timm_mixer")
    >>> x = torch.randn(2, 1, 28, 28)
    >>> torch.allclose(back(x), model.eval()(x), atol=1e-6)
    True
"""

from __future__ import annotations

import math
import re
from functools import partial

import torch

from . import blocks as B
from ._interop_layout import (
    _FULL,
    _UNSUPPORTED,
    _fits,
    _guess,
    _key_map,
    _layout,
    _optional,
    _short,
    _stem_key,
    read_checkpoint,
)
from .dynamics.spectral import SCHEDULES
from .models import HopfieldClassifier

__all__ = ["SOURCES", "convert", "export", "infer_config", "read_checkpoint"]

SOURCES = ("timm_mixer", "timm_vit", "imixer")
_FAMILY = {"timm_mixer": "mixer", "timm_vit": "vit", "imixer": "imixer"}
_OPTIONS = {  # what the tensors' shapes cannot tell: name -> default (None: required/absent)
    "timm_mixer": {"eps": 1e-6, "dtype": None, "currents": "auto"},
    "timm_vit": {"eps": 1e-6, "dtype": None, "currents": "auto", "num_heads": None},
    "imixer": {"eps": 1e-6, "dtype": None, "currents": "auto", "n_iter": 4, "coeff": 0.9,
               "n_power_iterations": 8, "solver": "fixed_point", "tol": None,
               "grad": "unrolled", "solver_options": None,
               # the official hook refreshes the spectral norms before every call of fc_sn*:
               # per fixed-point iteration, so that training follows the official loop exactly
               "spectral_schedule": "iteration"},
}
# ----------------------------------------------------------------------------- inference
def infer_config(checkpoint, source: str) -> dict:
    r"""Read the architecture off the tensors' shapes.

    ``depth`` (number of ``blocks.<i>``), ``dim``/``in_chans``/``patch_size`` (the stem's
    convolution, ``(dim, in_chans, p, p)``), ``num_classes`` (the head), the token count $N$
    (Mixer/iMixer: ``fc1`` of the token MLP is ``(token_dim, N)``; ViT: ``pos_embed`` is
    ``(1, N + 1, dim)``), hence ``img_size`` $= p\sqrt N$, and the hidden widths.
    """
    _check_source(source, "infer_config")
    sd = read_checkpoint(checkpoint)
    stem = _stem_key(source)
    anchors = [stem, "head.weight"] + {
        "timm_mixer": ["blocks.0.mlp_tokens.fc1.weight", "blocks.0.mlp_channels.fc1.weight"],
        "imixer": ["blocks.0.mlp_tokens.fc1.weight", "blocks.0.mlp_channels.fc1.weight"],
        "timm_vit": ["pos_embed", "cls_token", "blocks.0.mlp.fc1.weight"]}[source]
    if source == "imixer":
        sn = "blocks.0.mlp_tokens.fc_sn1.weight_orig"
        anchors.append(sn if sn in sd or "blocks.0.mlp_tokens.fc_sn1.weight" not in sd
                       else "blocks.0.mlp_tokens.fc_sn1.weight")
    missing = [k for k in anchors if k not in sd]
    if missing:
        guess = _guess(sd)
        hint = (f" The keys look like source={guess!r}." if guess and guess != source else "")
        raise ValueError(f"convert(source={source!r}): cannot read the architecture, missing "
                         f"key(s) {_short(missing)}. Expected the {source} layout: "
                         f"{_layout(source, _FULL)}.{hint}")
    w = sd[stem]
    if w.dim() != 4 or w.shape[2] != w.shape[3]:
        raise ValueError(f"convert(source={source!r}): {stem!r} must be a square patch "
                         f"convolution (dim, in_chans, p, p), got shape {tuple(w.shape)}.")
    dim, in_chans, patch = (int(s) for s in w.shape[:3])
    idx = {int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))}
    cfg = {"depth": max(idx) + 1 if idx else 0, "dim": dim, "in_chans": in_chans,
           "patch_size": patch, "num_classes": int(sd["head.weight"].shape[0])}
    if source == "timm_vit":
        tokens = int(sd["pos_embed"].shape[1]) - 1  # class token first
        cfg.update(mlp_dim=int(sd["blocks.0.mlp.fc1.weight"].shape[0]),
                   qkv_bias="blocks.0.attn.qkv.bias" in sd)
    else:
        token_dim, tokens = (int(s) for s in sd["blocks.0.mlp_tokens.fc1.weight"].shape)
        cfg.update(token_dim=token_dim,
                   channel_dim=int(sd["blocks.0.mlp_channels.fc1.weight"].shape[0]))
    if source == "imixer":
        cfg["spectral_norm"] = anchors[-1].endswith("weight_orig")
        cfg["feedback_dim"] = int(sd[anchors[-1]].shape[0])
    side = math.isqrt(max(tokens, 0))
    if tokens < 1 or side * side != tokens:
        what = "pos_embed has" if source == "timm_vit" else "the token MLP mixes"
        raise ValueError(f"convert(source={source!r}): {what} {tokens} patch tokens, not a "
                         f"square number; only square images on a square patch grid are "
                         f"supported (timm's no_embed_class / dynamic sizes are not).")
    cfg.update(num_patches=tokens, img_size=side * patch)
    return cfg


def _check_source(source, who):
    if source not in SOURCES:
        raise ValueError(f"{who}: unknown source {source!r}; valid: {', '.join(SOURCES)}.")


# ----------------------------------------------------------------------------- convert
def _options(source: str, overrides: dict) -> dict:
    valid = _OPTIONS[source]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"convert(source={source!r}): unknown option(s) {unknown}; valid: "
                         f"{', '.join(sorted(valid))} (everything else is read off the shapes).")
    dtype = overrides.get("dtype")
    if dtype is not None and not (isinstance(dtype, torch.dtype) and dtype.is_floating_point):
        raise ValueError(f"convert(source={source!r}): dtype must be a floating torch.dtype "
                         f"(e.g. torch.float32), got {dtype!r}.")
    schedule = overrides.get("spectral_schedule", valid.get("spectral_schedule"))
    if schedule not in (None, *SCHEDULES):
        raise ValueError(f"convert(source={source!r}): spectral_schedule must be one of "
                         f"{', '.join(map(repr, SCHEDULES))}, got {schedule!r}.")
    return {**valid, **overrides}


def _build(source: str, cfg: dict, opt: dict) -> HopfieldClassifier:
    n, dim, eps = cfg["num_patches"], cfg["dim"], opt["eps"]
    kw = {"eps": eps, "currents": opt["currents"]}
    if source == "timm_mixer":
        make = partial(B.mixer_block, n, dim, cfg["token_dim"], cfg["channel_dim"], **kw)
    elif source == "imixer":
        coeff = opt["coeff"] if cfg["spectral_norm"] else None
        make = partial(
            B.imixer_block, n, dim, cfg["token_dim"], cfg["feedback_dim"], cfg["channel_dim"],
            coeff=coeff, n_power_iterations=opt["n_power_iterations"], max_iter=opt["n_iter"],
            solver=opt["solver"], tol=opt["tol"], grad=opt["grad"],
            solver_options=opt["solver_options"], spectral_schedule=opt["spectral_schedule"], **kw)
    else:
        heads = opt["num_heads"]
        if heads is None:
            raise ValueError("convert(source='timm_vit'): num_heads is required (the fused qkv "
                             f"weight does not record how it splits into heads); pass "
                             f"num_heads=<int>, a divisor of dim={dim}.")
        if not (isinstance(heads, int) and heads > 0 and dim % heads == 0):
            raise ValueError(f"convert(source='timm_vit'): num_heads must be a positive divisor "
                             f"of dim={dim}, got {heads!r}.")
        make = partial(B.vit_block, n + 1, dim, heads, cfg["mlp_dim"], qkv_bias=cfg["qkv_bias"],
                       **kw)
    vit = source == "timm_vit"
    model = HopfieldClassifier(
        [make() for _ in range(cfg["depth"])], img_size=cfg["img_size"],
        patch_size=cfg["patch_size"], in_chans=cfg["in_chans"], dim=dim,
        num_classes=cfg["num_classes"], class_token=vit, pos_embed=vit,
        global_pool="token" if vit else "avg", norm_eps=eps)
    extra = {k: opt[k] for k in opt if k not in ("dtype", "currents", "solver_options")}
    model.config = {"name": f"converted:{source}", "family": _FAMILY[source], **cfg, **extra,
                    "class_token": vit, "pos_embed": vit, "global_pool": model.global_pool}
    model.pretrained_cfg["architecture"] = model.config["name"]
    return model


def convert(checkpoint, source: str, **overrides) -> HopfieldClassifier:
    r"""Build the derived model equivalent to a checkpoint and load its weights.

    Args:
        checkpoint: a state dict, a ``{"state_dict": ...}``/``{"model": ...}`` wrapper, a module,
            or a path (``torch.save`` file or ``.safetensors``).
        source: ``"timm_mixer"`` (timm ``MlpMixer``), ``"timm_vit"`` (timm ``VisionTransformer``
            with its defaults: class token, learned position embedding, pre-norm, fused qkv,
            class-token pooling) or ``"imixer"`` (the official iMixer).
        **overrides: what shapes cannot tell. ``num_heads`` (ViT, required); ``n_iter`` (iMixer
            $k$, default 4), ``coeff`` (0.9), ``n_power_iterations`` (8), ``spectral_schedule``
            (``"iteration"``: the spectral norms are refreshed before every fixed-point
            iteration, as the official hook does, so training follows the official loop
            exactly; ``"forward"``: once per forward), ``solver``, ``tol``, ``grad``,
            ``solver_options`` (iMixer); ``eps`` (layer norms, 1e-6), ``currents``, ``dtype``
            (default float64 for a float64 checkpoint, else float32).

    Returns:
        A :class:`~hopfield.models.HopfieldClassifier` on CPU in eval mode, ``config`` filled
        (with every option above, ``eps`` and the spectral-norm settings included).

    Raises:
        ValueError: unknown source or option, missing ``num_heads``, or keys that do not fit the
            layout (unknown, missing or mis-shaped keys are listed with the expected layout).
    """
    _check_source(source, "convert")
    opt = _options(source, overrides)
    sd = read_checkpoint(checkpoint)
    cfg = infer_config(sd, source)
    if source == "imixer" and not cfg["spectral_norm"] and "coeff" in overrides:
        raise ValueError("convert(source='imixer'): coeff was given, but the checkpoint stores "
                         "plain fc_sn*.weight tensors (no weight_orig/u/v): it has no spectral "
                         "norm to configure. Drop coeff.")
    model = _build(source, cfg, opt)
    float64 = sd[_stem_key(source)].dtype == torch.float64
    model.to(opt["dtype"] or (torch.float64 if float64 else torch.float32))
    target = model.state_dict()
    keys = _key_map(source, cfg)
    unknown = sorted(set(sd) - set(keys))
    missing = [k for k in keys if k not in sd and not _optional(k)]
    shaped = [f"{k}: expected {tuple(target[d].shape)}, got {tuple(sd[k].shape)}"
              for k, d in keys.items() if k in sd and not _fits(sd[k], target[d], k)]
    if unknown or missing or shaped:
        lines = [f"convert(source={source!r}): the checkpoint does not fit the inferred model "
                 f"(depth={cfg['depth']}, dim={cfg['dim']}, img_size={cfg['img_size']})."]
        if unknown:
            lines.append(f"  unknown keys: {_short(unknown)}")
            feats = sorted({v for k in unknown for p, v in _UNSUPPORTED.items()
                            if f".{p}." in f".{k}"})
            if feats:
                lines.append(f"  (features without a derived counterpart: {', '.join(feats)})")
        if missing:
            lines.append(f"  missing keys: {_short(missing)}")
        if shaped:
            lines.append(f"  mis-shaped keys: {_short(shaped)}")
        lines.append(f"  expected the {source} layout: {_layout(source, cfg)}")
        guess = _guess(sd)
        if guess and guess != source:
            lines.append(f"  (the keys look like source={guess!r})")
        raise ValueError("\n".join(lines))
    mapped = {d: sd[k].reshape(target[d].shape) if k in sd else target[d] for k, d in keys.items()}
    model.load_state_dict(mapped, strict=True)
    return model.eval()


# ----------------------------------------------------------------------------- export
def export(model: HopfieldClassifier, target: str | None = None) -> dict[str, torch.Tensor]:
    """The inverse of :func:`convert`: the model's weights in a source's key layout.

    ``target`` defaults to the model's family (mixer -> ``"timm_mixer"``, vit -> ``"timm_vit"``,
    imixer -> ``"imixer"``). Only untied models with per-feature layer norms have such a layout;
    a ViT needs a class token, a position embedding and token pooling (timm's defaults).
    """
    if not isinstance(model, HopfieldClassifier):
        raise TypeError(f"export: expected a HopfieldClassifier, got {type(model).__name__}.")
    synapses = set(model.blocks[0].graph.synapses) if len(model.blocks) else set()
    family = {"token_mlp": "timm_mixer", "token_in": "imixer", "attn": "timm_vit"}
    found = next((s for k, s in family.items() if k in synapses), None)
    target = target or found
    _check_source(target, "export")
    if found != target:
        raise ValueError(f"export: the model's blocks (synapses {sorted(synapses)}) do not have "
                         f"the {target} layout; expected target={found!r}.")
    vit = target == "timm_vit"
    layout = (model.cls_token is not None, model.pos_embed is not None, model.global_pool)
    if layout != ((True, True, "token") if vit else (False, False, "avg")):
        raise ValueError(f"export(target={target!r}): expected class_token={vit}, "
                         f"pos_embed={vit}, global_pool={'token' if vit else 'avg'!r}, got "
                         f"{layout[0]}, {layout[1]}, {layout[2]!r}.")
    syn = model.blocks[0].graph.synapses if len(model.blocks) else {}
    cfg = {"depth": len(model.blocks),
           "qkv_bias": vit and syn["attn"].in_proj_bias is not None,
           "spectral_norm": target == "imixer" and hasattr(syn["token_feedback"],
                                                           "parametrizations")}
    sd = model.state_dict()
    keys = _key_map(target, cfg)
    absent = [d for d in keys.values() if d not in sd]
    left = sorted(set(sd) - set(keys.values()))
    if absent or left:
        raise ValueError(f"export(target={target!r}): the model is not in the {target} layout "
                         f"(tied weights or a scalar-gain layer norm have no counterpart): "
                         f"missing {_short(absent)}, unmapped {_short(left)}. Export needs "
                         f"tied=False models.")
    return {k: sd[d].detach().clone().reshape(1) if k.endswith("weight_sigma")
            else sd[d].detach().clone() for k, d in keys.items()}
