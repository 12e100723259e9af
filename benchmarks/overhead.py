"""Cost of derivation: forward+backward time of each derived block / its hand-written reference.

The reference blocks are the plain-PyTorch ones in ``tests/reference`` (timm's Mixer and ViT
layouts, the official iMixer iMLP). Each derived block gets the reference's weights through
``hopfield.interop.convert``; both run in training mode on the same input, timed in interleaved
pairs in one process, and the ratio is the median over pairs (target ≤ 1.05). The same pairs
are then timed for inference (eval mode, no gradients, forward only), reported without a target.

Usage: ``python benchmarks/overhead.py [--pairs 30] [--sizes small,s16] [--threads N]``.
Ends with one ``RESULT overhead_<block>_<size> <ratio>`` line per block and size.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

import hopfield as hf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.reference.imixer import IMixer  # noqa: E402
from tests.reference.mixer import MlpMixer  # noqa: E402
from tests.reference.vit import VisionTransformer  # noqa: E402

# name: (img_size, patch, dim, heads, batch)
SIZES = {"small": (28, 4, 128, 4, 32), "s16": (224, 16, 512, 8, 4)}


def pair(kind, size, k=None):
    img, patch, dim, heads, batch = SIZES[size]
    common = dict(num_classes=10, img_size=img, in_chans=3, patch_size=patch)
    if kind == "mixer":
        ref = MlpMixer(num_blocks=1, embed_dim=dim, **common)
        model = hf.interop.convert(ref.state_dict(), source="timm_mixer")
    elif kind == "vit":
        ref = VisionTransformer(depth=1, embed_dim=dim, num_heads=heads, **common)
        model = hf.interop.convert(ref.state_dict(), source="timm_vit", num_heads=heads)
    else:
        ref = IMixer(num_blocks=1, embed_dim=dim, n_repeat=k, n_power_iterations=8,
                     every_call=False, **common)
        # like for like: the reference refreshes its spectral norms once per forward
        # (every_call=False), so the derived block does too (converted checkpoints default to
        # the official per-iteration refresh, which costs both sides the same extra work)
        model = hf.interop.convert(ref.state_dict(), source="imixer", n_iter=k,
                                   spectral_schedule="forward")
    n = (img // patch) ** 2 + (1 if kind == "vit" else 0)
    return ref.blocks[0].train(), model.blocks[0].train(), (batch, n, dim)


def zero_grads(params, x):
    for p in params:
        p.grad = None
    x.grad = None


def fwd_bwd(block, x):
    zero_grads(block.parameters(), x)
    block(x).sum().backward()


def timed(block, params, x):
    """Forward + backward time; the gradients are reset before the clock starts (walking a
    module tree for its parameters is neither forward nor backward)."""
    zero_grads(params, x)
    t = time.perf_counter()
    block(x).sum().backward()
    return time.perf_counter() - t


def measure_eval(ref, der, shape, pairs, warmup=3):
    """Inference: eval mode, no gradients, forward only; median over interleaved pairs."""
    ref, der = ref.eval(), der.eval()
    x = torch.randn(shape)
    ratios = []
    with torch.no_grad():
        for _ in range(warmup):
            ref(x)
            der(x)
        for i in range(pairs):
            order = (ref, der) if i % 2 else (der, ref)
            times = {}
            for block in order:
                t = time.perf_counter()
                block(x)
                times[block is der] = time.perf_counter() - t
            ratios.append(times[True] / times[False])
    ref.train()
    der.train()
    return statistics.median(ratios)


def measure(ref, der, shape, pairs, warmup=3):
    x = torch.randn(shape, requires_grad=True)
    for _ in range(warmup):
        fwd_bwd(ref, x)
        fwd_bwd(der, x)
    p_ref, p_der = list(ref.parameters()), list(der.parameters())
    ratios, t_ref, t_der = [], [], []
    for i in range(pairs):
        if i % 2:
            a, b = timed(ref, p_ref, x), timed(der, p_der, x)
        else:
            b, a = timed(der, p_der, x), timed(ref, p_ref, x)
        t_ref.append(a)
        t_der.append(b)
        ratios.append(b / a)
    return statistics.median(ratios), statistics.median(t_ref), statistics.median(t_der)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=30)
    ap.add_argument("--sizes", default="small,s16")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for size in args.sizes.split(","):
        for kind, k in (("mixer", None), ("vit", None), ("imixer", 1), ("imixer", 2),
                        ("imixer", 4)):
            ref, der, shape = pair(kind, size, k)
            ratio, tr, td = measure(ref, der, shape, args.pairs)
            eval_ratio = measure_eval(ref, der, shape, args.pairs)
            name = kind if k is None else f"imixer_k{k}"
            rows.append({"block": name, "size": size, "input": list(shape), "ratio": ratio,
                         "ref_ms": 1e3 * tr, "derived_ms": 1e3 * td, "eval_ratio": eval_ratio})
            print(f"{name:10s} {size:6s} ref {1e3 * tr:8.2f} ms  derived {1e3 * td:8.2f} ms  "
                  f"ratio {ratio:.3f}  inference ratio {eval_ratio:.3f}", flush=True)
    machine = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "torch": torch.__version__}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "overhead.json").write_text(json.dumps({"machine": machine, "pairs": args.pairs,
                                                   "rows": rows}, indent=2))
    lines = ["# Overhead of derivation (forward + backward, training mode)", "",
             f"Command: `python benchmarks/overhead.py --pairs {args.pairs} --sizes {args.sizes}` "
             f"· CPU {machine['cpu']}, {machine['threads']} threads, torch {machine['torch']}. "
             "Median over interleaved pairs of derived / reference time: training mode forward + "
             "backward (reference and derived ms, ratio; target <= 1.05), and inference (eval "
             "mode, no gradients, forward only; no target).", "",
             "| block | size | input (B, N, D) | reference ms | derived ms | ratio | inference "
             "ratio |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['block']} | {r['size']} | {tuple(r['input'])} | {r['ref_ms']:.2f} | "
                     f"{r['derived_ms']:.2f} | {r['ratio']:.3f} | {r['eval_ratio']:.3f} |")
    (out / "overhead.md").write_text("\n".join(lines) + "\n")
    for r in rows:
        print(f"RESULT overhead_{r['block']}_{r['size']} {r['ratio']:.4f}")
    for r in rows:
        print(f"RESULT overhead_inference_{r['block']}_{r['size']} {r['eval_ratio']:.4f}")


if __name__ == "__main__":
    main()
