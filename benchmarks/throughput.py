"""Training throughput of ``hopfield.training``'s loop against a minimal hand-written PyTorch loop.

Both loops train the same model (same initial weights, batch size, optimiser and autocast dtype)
on the bundled Fashion-MNIST subset already in (device) memory. The pipeline runs its full
recipe (crop + flip augmentation on the device, label smoothing, gradient clipping, the LR
schedule, on-device metric accumulation, periodic finiteness checks); the baseline only
gathers, normalises, and steps. Measurements alternate between the two (order swapped every
repeat) after one warm-up round each. The reported ratio is the median over repeats of
pipeline/baseline images/s measured back to back (the ratio of the medians is saved as well).

Usage:
    python benchmarks/throughput.py                          # CPU here, CUDA when present
    python benchmarks/throughput.py --device cuda --batch-size 256 --steps 50 --repeats 7

Writes ``benchmarks/results/throughput.{json,md}`` (entries keyed by device, so CPU and GPU
results accumulate) and ends with ``RESULT pipeline_throughput_ratio <x>``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hopfield.training import TrainConfig, Trainer  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class Baseline:
    """The loop one would write by hand: index, normalise, forward, backward, AdamW step."""

    def __init__(self, trainer: Trainer, steps: int):
        cfg, self.device = trainer.cfg, trainer.device
        self.model = trainer.build_model().to(self.device)
        self.model.load_state_dict(trainer.model.state_dict())
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr,
                                           weight_decay=cfg.weight_decay)
        data = trainer.train_loader.dataset
        self.images, self.labels = data.images, data.labels
        self.mean = torch.tensor(trainer.mean, device=self.device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(trainer.std, device=self.device).view(1, -1, 1, 1) * 255
        self.amp, self.steps, self.batch_size = trainer.amp_dtype, steps, cfg.batch_size
        self.epoch = 0

    def run(self) -> None:
        self.model.train()
        g = torch.Generator().manual_seed(self.epoch)
        perm = torch.randperm(len(self.images), generator=g).to(self.device)
        self.epoch += 1
        for i in range(self.steps):
            idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
            x = (self.images[idx].float() - self.mean) / self.std
            with torch.autocast(self.device.type, dtype=self.amp or torch.float32,
                                enabled=self.amp is not None):
                loss = F.cross_entropy(self.model(x).float(), self.labels[idx])
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)


def timed(fn, device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def write_markdown(results: dict, path: Path) -> None:
    """The table of every stored measurement (one row per device, model and batch size)."""
    lines = ["# Training throughput: `hopfield.training` loop vs a minimal PyTorch loop", "",
             "Same model, batch size, optimiser and autocast dtype; data in device memory. "
             "Median of interleaved repeats (images/s); ratio = median of back-to-back "
             "pipeline/baseline ratios. Regenerate with the command shown.", "",
             "| device | nproc | model | batch | amp | pipeline | baseline | ratio | command |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for e in results.values():
        m = e["median_images_per_s"]
        lines.append(f"| {e['device']} | {e['nproc']} | {e['model']} | {e['batch_size']} | "
                     f"{e['amp']} | {m['pipeline']:.0f} | {m['baseline']:.0f} | "
                     f"{e['pipeline_throughput_ratio']:.3f} | `{e['command'].strip()}` |")
    notes = [f"- {k}: {e['note']}" for k, e in results.items() if e.get("note")]
    if notes:
        lines += ["", "Notes:", *notes]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="imixer_tiny")
    ap.add_argument("--batch-size", type=int, default=None, help="default: 256 GPU, 64 CPU")
    ap.add_argument("--steps", type=int, default=None, help="steps per measurement "
                                                            "(default: 40 GPU, 8 CPU)")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    gpu = args.device.startswith("cuda") or (args.device == "auto" and torch.cuda.is_available())
    bs = args.batch_size or (256 if gpu else 64)
    steps = args.steps or (40 if gpu else 8)

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(TrainConfig(model=args.model, batch_size=bs, epochs=1000,
                                      max_train_samples=bs * steps, max_eval_samples=bs,
                                      amp=args.amp, device=args.device, out=tmp, quiet=True,
                                      plot=False))
        baseline = Baseline(trainer, steps)
        loader, epoch = trainer.train_loader, iter(range(10**6))

        def pipeline():
            loader.set_epoch(next(epoch))
            trainer.train_epoch()

        device = trainer.device
        timed(pipeline, device), timed(baseline.run, device)  # warm-up (allocator, kernels)
        times = {"pipeline": [], "baseline": []}
        for r in range(args.repeats):
            order = [("pipeline", pipeline), ("baseline", baseline.run)]
            for name, fn in order if r % 2 == 0 else order[::-1]:
                times[name].append(timed(fn, device))

    images = bs * steps
    ips = {k: [images / t for t in v] for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in ips.items()}
    # each repeat measures both loops back to back: the median of these paired ratios cancels
    # slow drifts of the machine (other jobs, clocks) that the ratio of medians would keep
    paired = [p / b for p, b in zip(ips["pipeline"], ips["baseline"], strict=True)]
    ratio = statistics.median(paired)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    device_name = f"{device.type}:{name or platform.machine()}"
    key = f"{device_name} | {args.model} | batch {bs}"
    entry = {"device": device_name, "nproc": os.cpu_count(), "torch": torch.__version__,
             "model": args.model, "batch_size": bs, "steps": steps, "repeats": args.repeats,
             "amp": str(trainer.amp_dtype), "images_per_s": ips, "median_images_per_s": med,
             "paired_ratios": paired, "ratio_of_medians": med["pipeline"] / med["baseline"],
             "pipeline_throughput_ratio": ratio,
             "command": "python benchmarks/throughput.py " + " ".join(argv or sys.argv[1:])}
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "throughput.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    results[key] = entry
    path.write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(results, args.out / "throughput.md")
    print(f"{key}: pipeline {med['pipeline']:.0f} img/s, baseline {med['baseline']:.0f} img/s "
          f"(batch {bs}, {steps} steps x {args.repeats} repeats, amp {trainer.amp_dtype})")
    print(f"RESULT pipeline_throughput_ratio {ratio:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
