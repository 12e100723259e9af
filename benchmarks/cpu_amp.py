"""bf16 autocast against float32 for training steps on this CPU, model by model.

On CPUs with AVX512-BF16 or AMX, oneDNN runs bf16 matrix products at up to twice the float32
rate, so ``hopfield train --amp bf16`` can halve the time of an epoch for the MLP families. This
script measures it: for each model, one training step (forward, backward, AdamW) on a fixed batch,
float32 and bf16 alternating (order swapped every repeat) after a warm-up of each; the reported
figure is the median over repeats of the float32/bf16 step-time ratio (> 1: bf16 is faster).

Usage:
    python benchmarks/cpu_amp.py                         # tiny presets, all threads
    python benchmarks/cpu_amp.py --threads 1 --repeats 7 --models mixer_tiny imixer_tiny

Writes ``benchmarks/results/cpu_amp.{json,md}`` and ends with one
``RESULT cpu_bf16_speedup_<model> <x>`` line per model.
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
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import hopfield as hf  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
MODELS = ["mixer_tiny", "imixer_tiny", "imixer_k2_tiny", "vit_tiny", "mixer_tied_tiny",
          "imixer_tied_tiny"]


def cpu_flags() -> list[str]:
    """The bf16-relevant instruction-set flags of this CPU (Linux only; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    return sorted(f for f in flags if f in {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})


def step_time(model, optimizer, x, y, bf16: bool, steps: int) -> float:
    """Mean seconds per training step."""
    start = time.perf_counter()
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / steps


def measure(name: str, batch_size: int, steps: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = hf.models.create_model(name, num_classes=10)
    cfg = model.config
    x = torch.randn(batch_size, cfg["in_chans"], cfg["img_size"], cfg["img_size"])
    y = torch.randint(0, 10, (batch_size,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    for bf16 in (False, True):
        step_time(model, optimizer, x, y, bf16, 1)  # warm-up: kernels, allocator
    fp32, bf16, ratios = [], [], []
    for r in range(repeats):
        order = (False, True) if r % 2 == 0 else (True, False)
        t = {mode: step_time(model, optimizer, x, y, mode, steps) for mode in order}
        fp32.append(t[False])
        bf16.append(t[True])
        ratios.append(t[False] / t[True])
    return {"model": name, "fp32_step_s": statistics.median(fp32),
            "bf16_step_s": statistics.median(bf16), "speedup_median": statistics.median(ratios),
            "speedups": ratios}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3, help="training steps per timing")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    ap.add_argument("--name", default="cpu_amp", help="results file stem")
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    rows = []
    for name in args.models:
        rows.append(measure(name, args.batch_size, args.steps, args.repeats))
        r = rows[-1]
        print(f"{name:18s} fp32 {r['fp32_step_s'] * 1e3:7.1f} ms  bf16 "
              f"{r['bf16_step_s'] * 1e3:7.1f} ms  speedup {r['speedup_median']:.2f}", flush=True)
    machine = {"processor": platform.processor() or platform.machine(),
               "threads": torch.get_num_threads(), "flags": cpu_flags(),
               "torch": torch.__version__}
    record = {"settings": {k: v for k, v in vars(args).items() if k != "results"},
              "machine": machine, "rows": rows}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["# bf16 autocast vs float32 training steps on the CPU", "",
             f"Batch {args.batch_size}, {args.steps} steps per timing, median of {args.repeats} "
             f"alternating repeats. Machine: {machine['threads']} torch threads, CPU flags "
             f"{', '.join(machine['flags']) or 'unknown'}, torch {machine['torch']}. Command: "
             f"`python benchmarks/cpu_amp.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
             "", "| model | float32 ms/step | bf16 ms/step | speedup (median ratio) |",
             "| --- | --- | --- | --- |"]
    lines += [f"| {r['model']} | {r['fp32_step_s'] * 1e3:.1f} | {r['bf16_step_s'] * 1e3:.1f} | "
              f"{r['speedup_median']:.2f} |" for r in rows]
    (args.results / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    for r in rows:
        print(f"RESULT cpu_bf16_speedup_{r['model']} {r['speedup_median']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
