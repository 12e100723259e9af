r"""Load timm / official-iMixer checkpoints into derived models, and write them back.

The derived blocks *are* the published blocks (THEORY §4; ``tests/test_equivalence.py`` pins them
to reference implementations in float64), so every tensor of a checkpoint has exactly one place
in the derived model. Per block ``blocks.<i>.``:

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
import os
import re
from collections.abc import Mapping
from functools import partial
from pathlib import Path

import torch
from torch import nn

from . import blocks as B
from .models import HopfieldClassifier

__all__ = ["SOURCES", "convert", "export", "infer_config", "read_checkpoint"]

SOURCES = ("timm_mixer", "timm_vit", "imixer")
_FAMILY = {"timm_mixer": "mixer", "timm_vit": "vit", "imixer": "imixer"}
_OPTIONS = {  # what the tensors' shapes cannot tell: name -> default (None: required/absent)
    "timm_mixer": {"eps": 1e-6, "dtype": None, "currents": "auto"},
    "timm_vit": {"eps": 1e-6, "dtype": None, "currents": "auto", "num_heads": None},
    "imixer": {"eps": 1e-6, "dtype": None, "currents": "auto", "n_iter": 4, "coeff": 0.9,
               "n_power_iterations": 8, "solver": "fixed_point", "tol": None,
               "grad": "unrolled", "solver_options": None},
}
_FULL = {"depth": 1, "qkv_bias": True, "spectral_norm": True}  # for describing a layout
_SN_SUFFIXES = {"weight_orig": "original", "weight_u": "0.u", "weight_v": "0.v",
                "weight_sigma": "0.sigma"}
_UNSUPPORTED = {"fc_norm": "fc_norm (timm global_pool='avg': pool, then norm)",
                "norm_pre": "norm_pre", "reg_token": "reg_token (register tokens)",
                "ls1": "LayerScale (ls1/ls2)", "ls2": "LayerScale (ls1/ls2)",
                "stem.norm": "stem_norm", "q_norm": "qk_norm", "k_norm": "qk_norm"}


# ----------------------------------------------------------------------------- key layouts
def _block_keys(source: str, cfg: dict) -> dict[str, str]:
    """``{checkpoint key: derived key}`` for one block, without the ``blocks.<i>.`` prefix."""
    keys: dict[str, str] = {}

    def linear(src, dst, w="weight", b="bias"):  # an affine map's weight and bias
        keys.update({f"{src}.weight": f"{dst}.{w}", f"{src}.bias": f"{dst}.{b}"})

    def mlp(src, synapse):  # fc2(σ(fc1 ·)) <-> E = -<g_B, W g_A + b> with untied back half V, c
        linear(f"{src}.fc1", f"graph.synapses.{synapse}")
        linear(f"{src}.fc2", f"graph.synapses.{synapse}", "weight_back", "bias_back")

    linear("norm1", "graph.neurons.x.lagrangian")  # nn.LayerNorm <-> layer-norm Lagrangian
    if source == "timm_mixer":
        mlp("mlp_tokens", "token_mlp")
    elif source == "imixer":  # module order: fc1, fc_sn1, fc_sn2, fc2
        linear("mlp_tokens.fc1", "graph.synapses.token_in")
        fb = "graph.synapses.token_feedback"
        for fc, w, b in (("fc_sn1", "weight", "bias"), ("fc_sn2", "weight_back", "bias_back")):
            keys[f"mlp_tokens.{fc}.bias"] = f"{fb}.{b}"
            if cfg["spectral_norm"]:
                for s, d in _SN_SUFFIXES.items():
                    keys[f"mlp_tokens.{fc}.{s}"] = f"{fb}.parametrizations.{w}.{d}"
            else:
                keys[f"mlp_tokens.{fc}.weight"] = f"{fb}.{w}"
        linear("mlp_tokens.fc2", "graph.synapses.token_in", "weight_back", "bias_back")
    else:  # fused qkv rows (q; k; v) are the synapse's in_proj rows
        linear("attn.qkv", "graph.synapses.attn", "in_proj_weight", "in_proj_bias")
        if not cfg["qkv_bias"]:
            del keys["attn.qkv.bias"]
        linear("attn.proj", "graph.synapses.attn.out_proj")
    linear("norm2", "group_lagrangians.0")
    mlp("mlp" if source == "timm_vit" else "mlp_channels",
        "mlp" if source == "timm_vit" else "channel_mlp")
    return keys


def _key_map(source: str, cfg: dict) -> dict[str, str]:
    """``{checkpoint key: derived model key}`` for a whole model of ``cfg["depth"]`` blocks."""
    keys = {"cls_token": "cls_token", "pos_embed": "pos_embed"} if source == "timm_vit" else {}
    stem = "patch_embed.proj" if source == "timm_vit" else "stem.proj"
    keys.update({f"{stem}.weight": "stem.proj.weight", f"{stem}.bias": "stem.proj.bias"})
    block = _block_keys(source, cfg)
    for i in range(cfg["depth"]):
        keys.update({f"blocks.{i}.{s}": f"blocks.{i}.{d}" for s, d in block.items()})
    keys.update({k: k for k in ("norm.weight", "norm.bias", "head.weight", "head.bias")})
    return keys


def _stem_key(source: str) -> str:
    return "patch_embed.proj.weight" if source == "timm_vit" else "stem.proj.weight"


def _optional(key: str) -> bool:
    return key.endswith("weight_sigma")  # a logging buffer of the official spectral norm


def _layout(source: str, cfg: dict) -> str:
    """The expected key layout, compactly: ``blocks.<i>.norm1.{weight,bias}, ...``."""
    groups: dict[str, list[str]] = {}
    for k in _key_map(source, dict(cfg, depth=1)):
        head, _, leaf = re.sub(r"^blocks\.0\.", "blocks.<i>.", k).rpartition(".")
        groups.setdefault(head or leaf, []).append(leaf if head else "")
    parts = [h if leaves == [""] else f"{h}.{{{','.join(leaves)}}}" for h, leaves in groups.items()]
    return ", ".join(parts)


# ----------------------------------------------------------------------------- reading
def read_checkpoint(checkpoint) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from a state dict, a module, a ``{"state_dict": ...}`` or
    ``{"model": ...}`` wrapper, or a path to a ``torch.save`` file (read with
    ``weights_only=True``) or a ``.safetensors`` file. A ``module.`` prefix (DataParallel) is
    removed."""
    if isinstance(checkpoint, (str, os.PathLike)):
        path = Path(checkpoint)
        if not path.is_file():
            raise FileNotFoundError(f"read_checkpoint: no checkpoint file at {str(path)!r}.")
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            checkpoint = load_file(str(path), device="cpu")
        else:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(checkpoint, nn.Module):
        checkpoint = checkpoint.state_dict()
    while isinstance(checkpoint, Mapping):
        inner = next((checkpoint[k] for k in ("state_dict", "model")
                      if isinstance(checkpoint.get(k), Mapping)), None)
        if inner is None:
            break
        checkpoint = inner
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"read_checkpoint: expected a state dict (name -> tensor), a module or a "
                        f"path, got {type(checkpoint).__name__}.")
    bad = sorted(str(k) for k, v in checkpoint.items() if not isinstance(v, torch.Tensor))
    if bad:
        raise ValueError(f"read_checkpoint: expected tensors only, but {_short(bad)} are not "
                         f"tensors; pass the model's state dict (unwrapped).")
    sd = dict(checkpoint)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def _short(keys, limit=12) -> str:
    keys = list(keys)
    more = f" ... and {len(keys) - limit} more" if len(keys) > limit else ""
    return "[" + ", ".join(repr(k) for k in keys[:limit]) + more + "]"


def _guess(sd) -> str | None:
    text = " ".join(sd)
    for source, marker in (("imixer", "fc_sn1"), ("timm_mixer", "mlp_tokens"),
                           ("timm_vit", "attn.qkv")):
        if marker in text:
            return source
    return None


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
            solver_options=opt["solver_options"], **kw)
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
            $k$, default 4), ``coeff`` (0.9), ``n_power_iterations`` (8), ``solver``, ``tol``,
            ``grad``, ``solver_options`` (iMixer); ``eps`` (layer norms, 1e-6), ``currents``,
            ``dtype`` (default float64 for a float64 checkpoint, else float32).

    Returns:
        A :class:`~hopfield.models.HopfieldClassifier` on CPU in eval mode, ``config`` filled.

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


def _fits(src: torch.Tensor, dst: torch.Tensor, key: str) -> bool:
    if _optional(key):  # the official sigma buffer is (1,), ours a scalar
        return src.numel() == dst.numel()
    return tuple(src.shape) == tuple(dst.shape)


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
