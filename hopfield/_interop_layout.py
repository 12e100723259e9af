"""Key layouts of the checkpoints :mod:`hopfield.interop` reads and writes, and reading them.

``{checkpoint key: derived model key}`` per source (timm ``MlpMixer`` / ``VisionTransformer``,
the official iMixer), the expected layout as readable text for error messages, and
:func:`read_checkpoint` (state dicts, wrappers, ``torch.save`` and ``.safetensors`` files).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

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


def _fits(src: torch.Tensor, dst: torch.Tensor, key: str) -> bool:
    if _optional(key):  # the official sigma buffer is (1,), ours a scalar
        return src.numel() == dst.numel()
    return tuple(src.shape) == tuple(dst.shape)
