"""The image classifier every model is: stem, blocks, final norm, pooling, head (timm's API).

``patch-embedding stem -> [class token, position embedding] -> blocks -> final layer norm ->
pooling -> linear head``. The blocks are derived from declared energies (:mod:`hopfield.blocks`)
or come from a registered factory (any module mapping ``(B, N, D)`` tokens to ``(B, N, D)``);
nothing here writes a block by hand (docs/concepts/fast_layers.md#classic-blocks).

The model speaks timm's vocabulary: :meth:`~HopfieldClassifier.forward_features`,
:meth:`~HopfieldClassifier.forward_head`, :meth:`~HopfieldClassifier.reset_classifier`,
``num_features``, ``global_pool``, ``pretrained_cfg`` (alias ``default_cfg``) and
:meth:`~HopfieldClassifier.set_grad_checkpointing`.
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = ["PatchEmbed", "HopfieldClassifier", "POOLS"]

POOLS = ("avg", "token", "")  # mean over patch tokens, the class token, none (tokens out)


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_chans or tuple(x.shape[2:]) != (self.img_size,) * 2:
            raise ValueError(f"expected images shaped (batch, {self.in_chans}, {self.img_size}, "
                             f"{self.img_size}), got {tuple(x.shape)}; set in_chans/img_size when "
                             f"creating the model.")
        return rearrange(self.proj(x), "b d h w -> b (h w) d")


def _check_pool(global_pool: str, class_token: bool) -> None:
    if global_pool not in POOLS:
        raise ValueError(f"global_pool must be one of {', '.join(map(repr, POOLS))} ('': no "
                         f"pooling, the tokens come out), got {global_pool!r}.")
    if global_pool == "token" and not class_token:
        raise ValueError("global_pool='token' needs class_token=True; use 'avg' or create the "
                         "model with class_token=True.")


def _head(dim: int, num_classes: int) -> nn.Module:
    if not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(f"num_classes must be an integer >= 0 (0: no head, the pooled features "
                         f"come out), got {num_classes!r}.")
    return nn.Linear(dim, num_classes) if num_classes > 0 else nn.Identity()


class HopfieldClassifier(nn.Module):
    """Stem, blocks, final norm, pooling and a linear head.

    Args:
        blocks: modules mapping tokens ``(B, N, D)`` to ``(B, N, D)``, with ``N`` the patch count
            (plus one with ``class_token``).
        img_size, patch_size, in_chans, dim: the stem's square images, patches, channels, width.
        num_classes: the head's outputs; ``0`` gives an identity head (pooled features out).
        class_token, pos_embed: a learned class token / position embedding.
        global_pool: ``"avg"`` (mean of the patch tokens), ``"token"`` (the class token) or
            ``""`` (no pooling: :meth:`forward` returns per-token outputs).
        drop_path_rate: stochastic depth, growing linearly over the blocks (derived blocks
            only: a block without a ``drop_path`` attribute cannot take it).
        norm_eps: the final layer norm's epsilon.
    """

    def __init__(self, blocks: list[nn.Module], *, img_size: int, patch_size: int, in_chans: int,
                 dim: int, num_classes: int, class_token: bool = False, pos_embed: bool = False,
                 global_pool: str = "avg", drop_path_rate: float = 0.0, norm_eps: float = 1e-6):
        super().__init__()
        _check_pool(global_pool, class_token)
        self.stem = PatchEmbed(img_size, patch_size, in_chans, dim)
        self.num_prefix = 1 if class_token else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if class_token else None
        n = self.stem.num_patches + self.num_prefix
        self.pos_embed = nn.Parameter(torch.randn(1, n, dim) * 0.02) if pos_embed else None
        self.blocks = nn.ModuleList(blocks)
        for i, blk in enumerate(self.blocks):  # linearly growing stochastic depth
            if hasattr(blk, "drop_path"):
                blk.drop_path = drop_path_rate * i / max(len(self.blocks) - 1, 1)
            elif drop_path_rate > 0:
                raise ValueError(f"drop_path_rate={drop_path_rate}: block {i} "
                                 f"({type(blk).__name__}) has no drop_path attribute (stochastic "
                                 f"depth needs a derived block); set drop_path_rate=0.")
        self.norm = nn.LayerNorm(dim, eps=norm_eps)
        self.head = _head(dim, num_classes)
        self.global_pool, self.num_classes, self.dim = global_pool, num_classes, dim
        self.num_features = dim  # timm: the width of forward_head(pre_logits=True)
        self.grad_checkpointing = False
        self.config: dict = {}
        # timm's record of what the weights expect; create_model names the architecture, the
        # weights loader adds the file and the training set's mean/std
        self.pretrained_cfg: dict = {
            "architecture": None, "num_classes": num_classes,
            "input_size": (in_chans, img_size, img_size), "mean": (0.5,) * in_chans,
            "std": (0.5,) * in_chans, "first_conv": "stem.proj", "classifier": "head",
            "global_pool": global_pool, "file": None}

    @property
    def default_cfg(self) -> dict:
        """timm's older name of :attr:`pretrained_cfg`."""
        return self.pretrained_cfg

    # ------------------------------------------------------------------ timm API
    def get_classifier(self) -> nn.Module:
        return self.head

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A fresh head for ``num_classes`` outputs (``0``: identity); optionally new pooling."""
        if global_pool is not None:
            _check_pool(global_pool, self.cls_token is not None)
            self.global_pool = global_pool
        ref = self.norm.weight
        self.head = _head(self.num_features, num_classes).to(ref.device, ref.dtype)
        self.num_classes = num_classes
        self.pretrained_cfg.update(num_classes=num_classes, global_pool=self.global_pool)
        if self.config:
            self.config.update(num_classes=num_classes, global_pool=self.global_pool)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them
        (``torch.utils.checkpoint`` per block): less memory, same outputs and gradients."""
        self.grad_checkpointing = bool(enable)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, H, W)`` -> normalised tokens ``(B, N, D)`` (class token first)."""
        # eager only: the data-dependent branch would break torch.compile / torch.export graphs
        if not _recording() and not torch.isfinite(x).all():
            raise ValueError(f"input images contain NaN or Inf ({int((~torch.isfinite(x)).sum())} "
                             f"of {x.numel()} values); check the data pipeline or normalisation.")
        x = self.stem(x)
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        if self.pos_embed is not None:
            x = x + self.pos_embed
        for blk in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = _checkpointed(blk, x)
            else:
                x = blk(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Tokens ``(B, N, D)`` -> pooled ``(B, D)`` (``pre_logits``) or logits; with
        ``global_pool=''`` the tokens stay, and the head acts on each."""
        if self.global_pool == "token":
            x = x[:, 0]
        elif self.global_pool == "avg":
            x = x[:, self.num_prefix:].mean(1)
        return x if pre_logits else self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def _recording() -> bool:
    """True while torch.compile, torch.export (ONNX included) or torch.jit.trace records a graph."""
    return torch.compiler.is_compiling() or torch.jit.is_tracing()


def _checkpointed(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``blk(x)`` under ``torch.utils.checkpoint``. A block that writes buffers in its forward
    (the spectral norms' power iteration, running statistics) is set back to its buffers of
    before the forward when the backward pass recomputes it, so that the recomputation sees the
    weights the forward saw, and the buffers end where one plain forward leaves them."""
    buffers = [b for b in blk.buffers()]
    saved = [b.detach().clone() for b in buffers]
    calls = [0]

    def run(inp: torch.Tensor) -> torch.Tensor:
        if calls[0]:  # the recomputation: start from the forward's state
            with torch.no_grad():
                for b, s in zip(buffers, saved, strict=True):
                    b.copy_(s)
        calls[0] += 1
        return blk(inp)

    return checkpoint(run, x, use_reentrant=False)
