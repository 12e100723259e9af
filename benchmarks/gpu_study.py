"""Parallel accuracy study on one GPU: every (model, seed) run is its own ``hopfield train``
process, all sharing the GPU (the tiny presets leave most of an H100 idle, so running them side
by side costs little wall time). Aggregates like ``accuracy_study.py``: mean ± 95 % t-interval
over seeds, paired comparisons iMixer vs Mixer.

A ``--deadline`` (seconds) stops runs still going at that time; they are reported as unfinished
(their last epoch is shown but excluded from the statistics), so a lent machine's time limit
never loses the finished runs. Every run is launched with ``--resume``: calling the script
again with the same ``--runs`` folder reuses finished runs and continues stopped ones from their
last checkpoint, so a long schedule can be spread over several time-limited calls.

Usage:
    python benchmarks/gpu_study.py --data-dir .gpu/fashion-mnist --epochs 20 --deadline 400
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.accuracy_study import (  # noqa: E402
    MODELS,
    PAIRS,
    add_trainer_flags,
    given_trainer_flags,
    paired,
    paired_table,
    read_metrics,
    settings_record,
    t_interval,
)

EXTRA = {"et_tiny"}


def launch(model, seed, args, out: Path):
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "hopfield", "train", "--model", model, "--seed", str(seed),
           "--epochs", str(args.epochs), "--dataset", args.dataset, "--batch-size",
           str(args.batch_size), "--lr", str(args.lr), "--device", args.device, "--amp", args.amp,
           "--out", str(out), "--quiet", "--no-plot", "--resume"]
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    for flag, value in given_trainer_flags(args).items():
        cmd += ["--" + flag.replace("_", "-"), str(value)]
    log = open(out / "stdout.log", "w")  # noqa: SIM115 - closed when the process ends
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env), log


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=MODELS + sorted(EXTRA))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--dataset", default="fashion_mnist")
    ap.add_argument("--data-dir")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--amp", default="bf16")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    add_trainer_flags(ap)
    ap.add_argument("--deadline", type=float, default=None, help="seconds; stop what still runs")
    ap.add_argument("--runs", type=Path, default=Path("runs/gpu_study"))
    ap.add_argument("--name", default="fashion_mnist_gpu")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args(argv)

    start = time.time()
    procs = {}
    for model in args.models:
        for seed in args.seeds:
            out = args.runs / f"{model}-s{seed}"
            procs[(model, seed)] = (*launch(model, seed, args, out), out)
    print(f"launched {len(procs)} runs", flush=True)
    while any(p.poll() is None for p, _, _ in procs.values()):
        if args.deadline and time.time() - start > args.deadline:
            for p, _, _ in procs.values():
                if p.poll() is None:
                    p.terminate()
            time.sleep(3)
            break
        time.sleep(5)
    wall = time.time() - start
    runs = {}
    for (model, seed), (p, log, out) in procs.items():
        log.close()
        hist = read_metrics(out)
        last = hist[-1] if hist else {}
        done = p.returncode == 0 and len(hist) >= args.epochs
        runs[f"{model}/{seed}"] = {"model": model, "seed": seed, "finished": done,
                                   "epochs_done": len(hist), "returncode": p.returncode, **last}
        if p.returncode not in (0, None) and not done:
            tail = (out / "stdout.log").read_text()[-600:]
            print(f"{model} seed {seed}: exit {p.returncode}\n{tail}", flush=True)
    good = {m: [runs[f"{m}/{s}"]["test_acc"] for s in args.seeds if runs[f"{m}/{s}"]["finished"]]
            for m in args.models}
    summary = {m: {"mean": t_interval(v)[0], "ci95_half_width": t_interval(v)[1], "values": v}
               for m, v in good.items() if v}
    comparisons = {f"{a} - {b}": paired(good[a], good[b]) for a, b in PAIRS
                   if len(good.get(a, [])) == len(args.seeds) == len(good.get(b, []))}
    gpu = None
    try:
        import torch

        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
    except Exception:  # noqa: BLE001 - reporting only
        pass
    from hopfield.models import create_model

    params = {m: sum(p.numel() for p in create_model(m).parameters()) for m in args.models}
    secs = {m: max(sum(h.get("epoch_time_s", 0) for h in read_metrics(args.runs / f"{m}-s{s}"))
                   for s in args.seeds) for m in args.models}
    record = {"settings": settings_record(args),
              "gpu": gpu, "wall_s": wall, "summary": summary, "paired": comparisons,
              "params": params, "runs": runs}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [f"# Accuracy: {args.dataset}, {args.epochs} epochs, seeds {args.seeds} ({gpu})", "",
             f"All {len(procs)} runs side by side on one {gpu}, batch {args.batch_size}, lr "
             f"{args.lr}, AMP {args.amp}; wall time {wall:.0f} s. Final test accuracy, mean ± "
             f"95 % t-interval over seeds. Command: `python benchmarks/gpu_study.py "
             f"{' '.join(argv if argv is not None else sys.argv[1:])}`", "",
             "| model | params | mean acc | ± 95 % CI | per seed | train s (slowest seed) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for m in args.models:
        s = summary.get(m)
        per = ", ".join(f"{runs[f'{m}/{sd}'].get('test_acc', float('nan')):.4f}"
                        + ("" if runs[f"{m}/{sd}"]["finished"] else " (unfinished)")
                        for sd in args.seeds)
        if s:
            lines.append(f"| {m} | {params[m]} | {s['mean']:.4f} | {s['ci95_half_width']:.4f} | "
                         f"{per} | {secs[m]:.0f} |")
        else:
            lines.append(f"| {m} | {params[m]} | – | – | {per} | {secs[m]:.0f} |")
    lines += paired_table(comparisons)
    (args.results / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
