"""The built-in presets: tiny models for 28 px Fashion-MNIST and the papers' 224 px sizes
(docs/concepts/fast_layers.md#classic-blocks)."""

from __future__ import annotations

from .registry import _TINY, register_model

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
