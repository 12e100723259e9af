"""``hopfield recall``: store Fashion-MNIST images, recall them from corrupted queries, draw the
recall and write the numbers (docs/concepts/memory.md#recall-and-completion).

    hopfield recall --energy ham --patterns 50 --mask 0.5 --out recall.png

writes ``recall.png`` (a few queries: query, states on the way, recalled and stored image, energy
curve), ``recall.json`` (settings, nearest-pattern accuracy, per-query results, and
``energy_trace``: each query's energy after every record) and ``recall.csv`` (one row per
query). Bad input raises ``ValueError``; the CLI's one error boundary turns it into
``error: ...`` and exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import torch

from .base import nearest
from .images import flip_pixels, hide_rows, load_images
from .plot import recall_figure
from .registry import BINARY, energy_names, store

__all__ = ["add_recall_parser", "run_recall"]

_MAX_IMAGES = 6000  # the bundled training split
_NO_BETA = ("classical", "poly")


def add_recall_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``recall`` on the CLI's subparsers; returns its parser."""
    p = subparsers.add_parser(
        "recall", help="store images in an associative memory, recall and complete them",
        description="Store bundled Fashion-MNIST images in an associative memory, recall them "
                    "from queries whose bottom rows are hidden (--mask) and pixels negated "
                    "(--noise), and write a figure plus CSV/JSON numbers beside it.")
    p.add_argument("--energy", choices=energy_names(), default="ham",
                   help="classical/poly/exp: ±1 pixels, asynchronous sweeps; tanh/lse/ham: grey "
                        "levels in [-1, 1], leaky descent (default: %(default)s)")
    p.add_argument("--patterns", type=int, default=50, help="number of stored images (default: %(default)s)")
    p.add_argument("--mask", type=float, default=0.5,
                   help="fraction of rows hidden at the bottom of each query, to be completed "
                        "(default: %(default)s)")
    p.add_argument("--noise", type=float, default=0.0,
                   help="fraction of the known pixels negated in each query; with noise nothing "
                        "is clamped, without it the known pixels are (default: %(default)s)")
    p.add_argument("--queries", type=int, default=200,
                   help="stored images recalled for the accuracy, at most --patterns "
                        "(default: %(default)s)")
    p.add_argument("--show", type=int, default=4, help="queries drawn in the figure (default: %(default)s)")
    p.add_argument("--steps", type=int, help="sweeps or descent steps (default: the memory's)")
    p.add_argument("--beta", type=float, help="inverse temperature (tanh: gain; exp, lse, ham)")
    p.add_argument("--degree", type=int, help="poly: degree n (default 3)")
    p.add_argument("--seed", type=int, default=0, help="images and noise (default: %(default)s)")
    p.add_argument("--out", default="recall.png", help="figure path; .json and .csv go beside it (default: %(default)s)")
    return p


def _check(args) -> None:
    def need(ok, msg):
        if not ok:
            raise ValueError(msg)

    need(1 <= args.patterns <= _MAX_IMAGES,
         f"--patterns: expected 1..{_MAX_IMAGES} stored images, got {args.patterns}.")
    need(0.0 <= args.mask <= 1.0, f"--mask: expected a fraction of rows in [0, 1], got {args.mask}.")
    need(0.0 <= args.noise <= 1.0, f"--noise: expected a fraction in [0, 1], got {args.noise}.")
    need(args.queries >= 1, f"--queries: expected at least 1, got {args.queries}.")
    need(args.show >= 1, f"--show: expected at least 1, got {args.show}.")
    need(args.steps is None or args.steps >= 1, f"--steps: expected at least 1, got {args.steps}.")
    need(args.beta is None or args.energy not in _NO_BETA,
         f"--beta: the {args.energy} energy has no inverse temperature; drop --beta (it applies "
         f"to {', '.join(e for e in energy_names() if e not in _NO_BETA)}).")
    need(args.beta is None or args.beta > 0, f"--beta: expected a number > 0, got {args.beta}.")
    need(args.degree is None or args.energy == "poly",
         f"--degree: only the poly energy has a degree, got --energy {args.energy}.")
    need(Path(args.out).suffix.lower() == ".png",
         f"--out: expected a .png file name (the .json and .csv go beside it), got {args.out!r}.")


def run_recall(args: argparse.Namespace) -> int:
    """Run ``hopfield recall`` with parsed ``args``; returns the exit status."""
    _check(args)
    started = time.perf_counter()
    torch.set_num_threads(1)  # many small tensor operations: threads only add synchronisation
    binary = args.energy in BINARY
    patterns, labels = load_images(args.patterns, binary=binary, seed=args.seed)
    kwargs = {} if args.beta is None else {"beta": args.beta}
    if args.degree is not None:
        kwargs["n"] = args.degree
    memory = store(args.energy, patterns, **kwargs)
    count = min(args.queries, args.patterns)
    gen = torch.Generator().manual_seed(args.seed)
    targets = patterns[:count].to(memory.patterns.dtype)
    known = hide_rows(count, args.mask)
    query = torch.where(known, flip_pixels(targets, args.noise, generator=gen), 0.0)
    per_sweep = 4 if binary else 1
    clamp = known if args.noise == 0 else None  # noisy pixels may be wrong: nothing is clamped
    result = memory.recall(query, clamp, steps=args.steps, keep_history=True, generator=gen,
                           records_per_sweep=per_sweep)
    found = nearest(result.output, memory.patterns)
    correct = found == torch.arange(count)
    hidden = ~known
    error = ((result.output - targets).abs() / 2 * hidden).sum(1) / hidden.sum(1).clamp(min=1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    show = min(args.show, count)
    unit = "sweep" if binary else "step"
    recall_figure(out, query[:show], result.history[:, :show], result.energy[:, :show],
                  targets[:show], step_label=unit, records_per_step=per_sweep,
                  title=f"{args.energy}: {args.patterns} stored images, bottom {args.mask:.0%} "
                        f"hidden, {args.noise:.0%} noise; nearest-pattern accuracy "
                        f"{float(correct.double().mean()):.0%}")
    rows = [{"query": i, "label": int(labels[i]), "nearest": int(found[i]),
             "correct": bool(correct[i]), "hidden_pixel_error": float(error[i]),
             "energy_start": float(result.energy[0, i]), "energy_end": float(result.energy[-1, i])}
            for i in range(count)]
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = {"energy": args.energy, "patterns": args.patterns, "mask": args.mask,
               "noise": args.noise, "queries": count, "beta": memory.beta,
               "steps": result.steps, "records_per_" + unit: per_sweep,
               "accuracy": float(correct.double().mean()),
               "hidden_pixel_error": float(error.mean()), "seconds": time.perf_counter() - started,
               "figure": str(out), "results": rows,
               "energy_trace": result.energy.T.tolist()}
    out.with_suffix(".json").write_text(json.dumps(summary) + "\n")
    print(f"recall: {args.energy}, {args.patterns} images, mask {args.mask:g}, noise "
          f"{args.noise:g}: nearest-pattern accuracy {summary['accuracy']:.3f} over {count} "
          f"queries, hidden-pixel error {summary['hidden_pixel_error']:.3f} ({result.steps} "
          f"{unit}s, {summary['seconds']:.1f} s) -> {out}, {out.with_suffix('.json').name}, "
          f"{out.with_suffix('.csv').name}")
    return 0
