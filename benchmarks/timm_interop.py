"""Check ``hopfield.interop.convert`` against real timm models, when timm is installed.

Builds timm's ``MlpMixer`` and ``VisionTransformer`` (random weights, several configurations),
converts their state dicts with ``hf.interop.convert`` and compares the logits of both models on
the same images. timm is not a dependency of hopfield; without it the script says so and exits 0.

Usage: ``python benchmarks/timm_interop.py``. Ends with ``RESULT timm_interop_max_abs_diff <x>``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

import hopfield as hf


def cases(timm):
    from timm.models.mlp_mixer import MlpMixer
    from timm.models.vision_transformer import VisionTransformer

    yield "timm MlpMixer 32px/4 d=64 x3", MlpMixer(
        num_classes=7, img_size=32, in_chans=3, patch_size=4, num_blocks=3, embed_dim=64), \
        "timm_mixer", {}, (2, 3, 32, 32)
    yield "timm MlpMixer 224px/16 d=128 x2", MlpMixer(
        num_classes=10, img_size=224, in_chans=3, patch_size=16, num_blocks=2, embed_dim=128), \
        "timm_mixer", {}, (2, 3, 224, 224)
    yield "timm VisionTransformer 28px/4 d=48 h=4 x2 (1 channel)", VisionTransformer(
        img_size=28, patch_size=4, in_chans=1, num_classes=10, embed_dim=48, depth=2,
        num_heads=4), "timm_vit", {"num_heads": 4}, (2, 1, 28, 28)
    yield "timm VisionTransformer 224px/16 d=192 h=3 x2 (vit_tiny shape)", VisionTransformer(
        img_size=224, patch_size=16, num_classes=10, embed_dim=192, depth=2, num_heads=3), \
        "timm_vit", {"num_heads": 3}, (2, 3, 224, 224)


def main() -> int:
    try:
        import timm
    except ImportError:
        print("timm is not installed: nothing to check (pip install timm to run this).")
        print("RESULT timm_interop_max_abs_diff nan")
        return 0
    torch.manual_seed(0)
    rows, worst = [], 0.0
    for name, ref, source, kw, shape in cases(timm):
        ref = ref.eval()
        with torch.no_grad():
            for p in ref.parameters():  # timm zero-inits some tensors (head, cls token)
                p.add_(0.02 * torch.randn_like(p))
        model = hf.interop.convert(ref.state_dict(), source=source, **kw)
        x = torch.randn(shape)
        with torch.no_grad():
            diff = (model(x) - ref(x)).abs().max().item()
        worst = max(worst, diff)
        rows.append({"case": name, "max_abs_diff": diff})
        print(f"{name}: max |logits diff| = {diff:.2e}")
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "timm_interop.json").write_text(json.dumps(
        {"timm": timm.__version__, "torch": torch.__version__, "rows": rows}, indent=2))
    print(f"RESULT timm_interop_max_abs_diff {worst:.3e}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    raise SystemExit(main())
