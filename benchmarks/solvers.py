"""Fixed-point solvers on an iMixer token group: evaluations to converge, and backward memory.

Two questions, at Fashion-MNIST-like and CIFAR-like sizes, with trained-like weights (the
feedback weights saturate their spectral-norm bound c = 0.9, as they do after training):

1. function evaluations to reach relative residual 1e-5: plain iteration vs Anderson;
2. memory held for the backward pass (bytes of tensors autograd saves, counted exactly with
   ``torch.autograd.graph.saved_tensors_hooks``) for k = 1, 4, 16 iterations, unrolled vs
   implicit differentiation. On CUDA the peak allocated memory is measured as well.

Usage: ``python benchmarks/solvers.py [--batch 32] [--device cpu|cuda] [--out benchmarks/results]``
Ends with ``RESULT anderson_eval_ratio <x>`` and ``RESULT implicit_memory_ratio_k16_k1 <x>``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
from pathlib import Path

import torch

import hopfield as hf

SIZES = {  # name: (tokens, dim) -> token width D/2, feedback width D
    "fashion_mnist (28px, patch 4)": (49, 128),
    "cifar (32px, patch 4)": (64, 256),
}


def trained_like_block(tokens, dim, seed, **kw):
    torch.manual_seed(seed)
    block = hf.blocks.imixer_block(tokens, dim, **kw)
    fb = block.graph.synapses["token_feedback"]
    with torch.no_grad():  # raw weights far above the bound: the soft spectral norm clamps to c
        fb.parametrizations.weight.original.mul_(8.0)
        fb.parametrizations.weight_back.original.mul_(8.0)
    block.train()
    for _ in range(20):  # converge the power iterations, then freeze them (eval)
        block(torch.randn(2, tokens, dim))
    return block.eval()


def count_evals(tokens, dim, batch, solver, device, seed=0, tol=1e-5):
    block = trained_like_block(tokens, dim, seed, solver=solver, tol=tol, max_iter=500).to(device)
    x = torch.randn(batch, tokens, dim, device=device)
    with torch.no_grad():
        _, _, stats = block.solve_implicit(x)
    return stats.nfev, stats.converged, stats.final_residual


def saved_bytes(block, x):
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = block(x)
    out.square().mean().backward()
    return total[0]


def backward_memory(tokens, dim, batch, k, grad, device):
    block = trained_like_block(tokens, dim, 0, max_iter=k, grad=grad,
                               **({"tol": None} if grad == "unrolled" else {})).to(device)
    x = torch.randn(batch, tokens, dim, device=device, requires_grad=True)
    saved = saved_bytes(block, x)
    peak = None
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        block(x).square().mean().backward()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
    return saved, peak


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    evals, ratios = [], []
    for name, (n, d) in SIZES.items():
        for seed in range(args.seeds):
            p, pc, pr = count_evals(n, d, args.batch, "fixed_point", args.device, seed)
            a, ac, ar = count_evals(n, d, args.batch, "anderson", args.device, seed)
            evals.append({"size": name, "seed": seed, "plain_nfev": p, "plain_converged": pc,
                          "anderson_nfev": a, "anderson_converged": ac, "ratio": a / p})
            ratios.append(a / p)
    memory = []
    for name, (n, d) in SIZES.items():
        for grad in ("unrolled", "implicit"):
            for k in (1, 4, 16):
                saved, peak = backward_memory(n, d, args.batch, k, grad, args.device)
                memory.append({"size": name, "grad": grad, "k": k, "saved_MiB": saved / 2**20,
                               "cuda_peak_MiB": None if peak is None else peak / 2**20})

    def mem(size, grad, k):
        return next(r["saved_MiB"] for r in memory if r["size"] == size and r["grad"] == grad
                    and r["k"] == k)

    mem_ratios = {s: mem(s, "implicit", 16) / mem(s, "implicit", 1) for s in SIZES}
    unrolled_ratios = {s: mem(s, "unrolled", 16) / mem(s, "unrolled", 1) for s in SIZES}
    eval_ratio = statistics.median(ratios)
    mem_ratio = max(mem_ratios.values())
    machine = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
               "cpu": platform.processor() or platform.machine(),
               "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
    result = {"machine": machine, "batch": args.batch, "evals": evals, "memory": memory,
              "anderson_eval_ratio_median": eval_ratio, "implicit_memory_ratio_k16_k1": mem_ratio,
              "unrolled_memory_ratio_k16_k1": unrolled_ratios}
    (out / "solvers.json").write_text(json.dumps(result, indent=2))
    lines = ["# Solvers on the iMixer token group", "",
             f"Command: `python benchmarks/solvers.py --batch {args.batch} --device {args.device}` "
             f"· machine: {machine['gpu'] or machine['cpu']}, torch {machine['torch']}, "
             f"{machine['threads']} threads.", "",
             "Function evaluations to relative residual 1e-5 (trained-like weights, spectral norm "
             "at c = 0.9, GELU):", "",
             "| size | seed | plain | Anderson (m=5) | ratio |", "|---|---|---|---|---|"]
    for r in evals:
        lines.append(f"| {r['size']} | {r['seed']} | {r['plain_nfev']}"
                     f"{'' if r['plain_converged'] else ' (not converged)'} | {r['anderson_nfev']} "
                     f"| {r['ratio']:.2f} |")
    lines += ["", f"Median ratio Anderson / plain: **{eval_ratio:.2f}** (target ≤ 0.5).", "",
              "Memory saved for backward (MiB, exact count of saved tensors):", "",
              "| size | gradient | k=1 | k=4 | k=16 | k=16 / k=1 |", "|---|---|---|---|---|---|"]
    for s in SIZES:
        for grad in ("unrolled", "implicit"):
            row = [mem(s, grad, k) for k in (1, 4, 16)]
            lines.append(f"| {s} | {grad} | {row[0]:.2f} | {row[1]:.2f} | {row[2]:.2f} | "
                         f"{row[2] / row[0]:.2f} |")
    if args.device == "cuda":
        lines += ["", "CUDA peak allocated during forward+backward (MiB): " + ", ".join(
            f"{r['size'].split()[0]} {r['grad']} k={r['k']}: {r['cuda_peak_MiB']:.1f}"
            for r in memory)]
    lines += ["", f"Implicit k=16 / k=1: **{mem_ratio:.3f}** (target ≤ 1.1)."]
    (out / "solvers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"RESULT anderson_eval_ratio {eval_ratio:.4f}")
    print(f"RESULT implicit_memory_ratio_k16_k1 {mem_ratio:.4f}")


if __name__ == "__main__":
    main()
