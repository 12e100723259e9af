"""Fashion-MNIST images in associative memories: nearest-pattern retrieval accuracy against the
corruption of the query and the number of stored images, for every energy of ``hopfield.memory``.

    python benchmarks/memory_images.py [--quick] [--stored 10 100 1000] [--energies exp ham ...]

K images of the bundled subset are stored (±1 pixels for classical / poly / exp, grey levels in
[-1, 1] for tanh / lse / ham). Up to ``--queries`` of them are corrupted and recalled:

* ``noise 0.2``: 20 % of the pixels negated, nothing clamped;
* ``mask f``: the bottom fraction f of the rows hidden (set to 0), the rest known and clamped.

A recall is correct when the stored image nearest (Euclidean) to the recalled state is the one the
query came from. Writes ``benchmarks/results/<name>.{md,json}`` and prints
``RESULT memory_images_<energy>_K<K>_<condition> <accuracy>`` lines.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from memory_capacity import machine  # noqa: E402

from hopfield import memory  # noqa: E402

ENERGIES = ("classical", "tanh", "poly", "exp", "lse", "ham")
CONDITIONS = (("noise", 0.2), ("mask", 0.25), ("mask", 0.5), ("mask", 0.75))


def accuracy(energy: str, stored: int, kind: str, amount: float, queries: int, seed: int,
             baseline: bool = False):
    """``(accuracy, hidden-pixel error, seconds)`` of one cell of the table; ``baseline``: of the
    query itself, without recall (the nearest stored image to the corrupted query)."""
    started = time.perf_counter()
    patterns, _ = memory.load_images(stored, binary=energy in memory.BINARY, seed=seed)
    mem = memory.store(energy, patterns)
    count = min(queries, stored)
    gen = torch.Generator().manual_seed(seed + stored)
    targets = patterns[:count].to(mem.patterns.dtype)
    if kind == "noise":
        query, clamp = memory.flip_pixels(targets, amount, generator=gen), None
        judged = torch.ones_like(targets, dtype=torch.bool)
    else:
        clamp = memory.hide_rows(count, amount)
        query, judged = torch.where(clamp, targets, 0.0), ~clamp
    out = query if baseline else mem.recall(query, clamp, generator=gen).output
    correct = memory.nearest(out, mem.patterns) == torch.arange(count)
    error = ((out - targets).abs() / 2 * judged).sum() / judged.sum()
    return float(correct.double().mean()), float(error), time.perf_counter() - started


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: 10 images, 8 queries")
    ap.add_argument("--stored", type=int, nargs="+", help="numbers of stored images")
    ap.add_argument("--energies", nargs="+", choices=ENERGIES, default=list(ENERGIES))
    ap.add_argument("--queries", type=int, help="recalls per cell (default 100; quick 8)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--name", default=None, help="file stem (default memory_images[_quick])")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    stored = args.stored or ([10] if args.quick else [10, 100, 1000])
    queries = args.queries or (8 if args.quick else 100)
    name = args.name or ("memory_images_quick" if args.quick else "memory_images")
    args.results.mkdir(parents=True, exist_ok=True)
    started, cells = time.perf_counter(), []
    rows = [(e, e) for e in args.energies]
    rows += [] if args.quick else [("query, binary", "exp"), ("query, grey", "lse")]
    for label, energy in rows:
        for k in stored:
            for kind, amount in CONDITIONS:
                acc, err, secs = accuracy(energy, k, kind, amount, queries, args.seed,
                                          baseline=label.startswith("query"))
                cells.append({"energy": label, "stored": k, "condition": f"{kind} {amount:g}",
                              "accuracy": acc, "pixel_error": err, "seconds": secs})
                if label == energy:
                    print(f"RESULT memory_images_{energy}_K{k}_{kind}{amount:g} {acc:.3f}",
                          flush=True)
    total = time.perf_counter() - started
    cmd = "python benchmarks/memory_images.py" + (" --quick" if args.quick else "")
    heads = [f"{kind} {amount:g}" for kind, amount in CONDITIONS]
    md = [f"# Fashion-MNIST recall: nearest-pattern accuracy ({'quick' if args.quick else 'full'})",
          "", f"Command: `{cmd}`  ", f"Machine: {machine()}; total {total:.0f} s", "",
          f"Bundled Fashion-MNIST subset (training split), {queries} queries per cell (fewer "
          f"when fewer images are stored). `noise 0.2`: 20 % of the pixels negated, nothing "
          f"clamped; `mask f`: bottom fraction f of the rows hidden, the rest clamped. Cell: "
          f"accuracy (hidden-pixel error in brackets: mean |recalled - stored| / 2 over the "
          f"judged pixels). Default settings of every memory. The `query` rows are the "
          f"baseline without any recall: the stored image nearest to the corrupted query "
          f"itself (±1 pixels, and grey levels).", "",
          "| energy | stored | " + " | ".join(heads) + " | time (s) |",
          "|---|---:|" + "---:|" * len(heads) + "---:|"]
    for label, _ in rows:
        for k in stored:
            row = [c for c in cells if c["energy"] == label and c["stored"] == k]
            md.append(f"| {label} | {k} | " + " | ".join(
                f"{c['accuracy']:.2f} ({c['pixel_error']:.3f})" for c in row)
                + f" | {sum(c['seconds'] for c in row):.1f} |")
    (args.results / f"{name}.md").write_text("\n".join(md) + "\n")
    (args.results / f"{name}.json").write_text(json.dumps(
        {"command": cmd, "machine": machine(), "seconds": total, "queries": queries,
         "cells": cells}, indent=1) + "\n")
    print(f"wrote {args.results / name}.md/.json in {total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
