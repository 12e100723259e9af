"""Training steps with the model through ``torch.compile`` against eager, preset by preset.

``hopfield train --compile`` (``TrainConfig(compile=True)``) passes the model through
``torch.compile`` once it is on its device; the loss, the backward pass's bookkeeping, gradient
clipping and AdamW stay as they are. This script times exactly that training step (forward,
label-smoothed cross-entropy, backward, gradient clipping, AdamW) on one batch of the bundled
Fashion-MNIST subset (``1 x 28 x 28`` images, batch 128 by default), for every ``*_tiny`` preset
of the model registry: an eager model and a compiled copy with the same initial weights, each with
its own optimiser. After the compile warm-up (the wall time of the first compiled steps, which
trace and generate code) and a few steps of each, eager and compiled steps alternate in pairs
(the order swapped every pair); the reported ratio is the median over pairs of
compiled / eager step time (< 1: compiling pays).

Usage:
    python benchmarks/compile_training.py                       # every tiny preset, one thread
    python benchmarks/compile_training.py --models mixer_tiny imixer_tiny --pairs 7
    python benchmarks/compile_training.py --quick --backend eager   # the smoke test's seconds

Writes ``benchmarks/results/compile_training.{json,md}`` and prints
``RESULT compile_step_ratio_<family> <ratio>`` and ``RESULT compile_warmup_s_<family> <s>``
per preset (``<family>``: the preset name without ``_tiny``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import hopfield as hf  # noqa: E402
from hopfield.training.data import load_dataset  # noqa: E402
from hopfield.training.loader import Transform  # noqa: E402
from hopfield.training.trainutil import param_groups  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
GOAL = 0.8  # compiled / eager step time wanted for the Mixer and the iMixer at batch 128
GOAL_MODELS = ("mixer_tiny", "imixer_tiny")
QUICK_KWARGS = {"depth": 1, "dim": 32}  # --quick: the smallest models that still build


def tiny_presets() -> list[str]:
    """Every ``*_tiny`` preset of the registry (one per family, tied variants included), the
    Mixer and the iMixer of the goal first."""
    names = [name for name in hf.models.list_models() if name.endswith("_tiny")]
    return sorted(names, key=lambda n: (n not in GOAL_MODELS, GOAL_MODELS.index(n)
                                        if n in GOAL_MODELS else 0, n))


def family(name: str) -> str:
    return name.removesuffix("_tiny")


def batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``size`` bundled training images, normalised as the trainer does."""
    ds = load_dataset("bundled", "train")
    mean, std = ds.channel_stats()
    return Transform(mean, std)(ds.images[:size]), ds.labels[:size]


class Step:
    """One training step as :class:`hopfield.training.Trainer` takes it (float32, no Mixup)."""

    def __init__(self, model: torch.nn.Module, forward):
        self.model, self.forward = model, forward
        self.optimizer = torch.optim.AdamW(param_groups(model, 0.05), lr=1e-3)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> float:
        start = time.perf_counter()
        loss = F.cross_entropy(self.forward(x).float(), y, label_smoothing=0.1)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start


def dynamo_counts() -> tuple[int, int]:
    """(graphs compiled, graph breaks) since the last ``torch._dynamo.reset()``."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"]), int(sum(counters["graph_break"].values()))


def measure(name: str, x, y, *, pairs: int, warmup: int, backend: str, mode: str | None,
            model_kwargs: dict) -> dict:
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    eager = hf.models.create_model(name, num_classes=10, img_size=x.shape[-1],
                                   in_chans=x.shape[1], **model_kwargs).train()
    twin = copy.deepcopy(eager)  # the same initial weights, its own parameters
    steps = {"eager": Step(eager, eager),
             "compiled": Step(twin, torch.compile(twin, backend=backend, mode=mode))}
    start = time.perf_counter()
    first = [steps["compiled"](x, y) for _ in range(warmup)]  # traces, generates code
    warmup_s = time.perf_counter() - start
    for _ in range(warmup):
        steps["eager"](x, y)
    times = {"eager": [], "compiled": []}
    ratios = []
    for i in range(pairs):
        order = ("eager", "compiled") if i % 2 == 0 else ("compiled", "eager")
        t = {kind: steps[kind](x, y) for kind in order}
        for kind in order:
            times[kind].append(t[kind])
        ratios.append(t["compiled"] / t["eager"])
    graphs, breaks = dynamo_counts()
    return {"model": name, "family": family(name), "params": sum(p.numel() for p in
                                                                 eager.parameters()),
            "eager_step_s": statistics.median(times["eager"]),
            "compiled_step_s": statistics.median(times["compiled"]),
            "ratio_median": statistics.median(ratios), "ratios": ratios,
            "warmup_s": warmup_s, "warmup_steps_s": first, "graphs": graphs,
            "graph_breaks": breaks}


def machine() -> dict:
    return {"processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "threads": torch.get_num_threads(),
            "cpu_capability": str(torch.backends.cpu.get_cpu_capability()),
            "torch": torch.__version__, "python": platform.python_version()}


def shown(argv: list[str]) -> list[str]:
    """The command line as recorded: without ``--results DIR`` (a path of this machine)."""
    out, skip = [], False
    for a in argv:
        if skip or a == "--results" or a.startswith("--results="):
            skip = a == "--results"
            continue
        out.append(a)
    return out


def render_md(record: dict) -> str:
    """The Markdown table of a results record (``python -c`` can redo it from the JSON)."""
    st, info, rows = record["settings"], record["machine"], record["rows"]
    lines = ["# Compiled against eager training steps on the CPU", "",
             f"Batch {st['batch_size']} of bundled Fashion-MNIST (1 x 28 x 28), float32; one "
             f"step = forward, loss, backward, gradient clipping, AdamW, with the model through "
             f"`torch.compile(backend={st['backend']!r}, mode={st['mode']!r})` as "
             f"`hopfield train --compile` does. Warm-up: the first {st['warmup']} compiled "
             f"step(s) (a fresh inductor cache: {not st['warm_cache']}), then {st['warmup']} "
             f"eager; then {st['pairs']} interleaved pairs, median of the per-pair ratios. "
             f"Machine: {info['cpu_count']} cores ({info['cpu_capability']}), {info['threads']} "
             f"torch thread(s), torch {info['torch']}. Command: `{record['command'].strip()}`", "",
             "| model | params | eager ms/step | compiled ms/step | compiled / eager (median) "
             "| compile warm-up s | graphs | graph breaks |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['model']} | {r['params'] / 1e3:.0f} k | {r['eager_step_s'] * 1e3:.0f} | "
              f"{r['compiled_step_s'] * 1e3:.0f} | {r['ratio_median']:.2f} | "
              f"{r['warmup_s']:.1f} | {r['graphs']} | {r['graph_breaks']} |" for r in rows]
    goal = record["goal"]
    judged = [r for r in rows if r["model"] in goal["models"]]
    if judged and not st["quick"]:
        met = all(r["ratio_median"] <= goal["ratio_max"] for r in judged)
        found = ", ".join(f"{r['model']} {r['ratio_median']:.2f}" for r in judged)
        lines += ["", f"Goal compiled / eager ≤ {goal['ratio_max']}: "
                      f"{'met' if met else 'not met'} ({found})."]
    return "\n".join(lines) + "\n"


def write(args, argv, rows, info) -> None:
    record = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                           if k != "results"},
              "command": "python benchmarks/compile_training.py " + " ".join(shown(argv)),
              "machine": info, "goal": {"models": list(GOAL_MODELS), "ratio_max": GOAL},
              "rows": rows}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")
    (args.results / f"{args.name}.md").write_text(render_md(record) + "\n"
                                                  + "\n".join(result_lines(record)) + "\n")


def result_lines(record: dict) -> list[str]:
    """The ``RESULT`` lines of a ``compile_training.json`` record (printed and written)."""
    out = []
    for r in record["rows"]:
        out.append(f"RESULT compile_step_ratio_{r['family']} {r['ratio_median']:.3f}")
        out.append(f"RESULT compile_warmup_s_{r['family']} {r['warmup_s']:.1f}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", help="presets (default: every *_tiny preset)")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--pairs", type=int, default=5, help="interleaved pairs after warm-up")
    ap.add_argument("--warmup", type=int, default=2, help="warm-up steps of each kind")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's choice)")
    ap.add_argument("--backend", default="inductor", help="torch.compile backend")
    ap.add_argument("--mode", default=None, help="torch.compile mode (default: none)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: depth-1 width-32 models, batch 8, 2 pairs, mixer_tiny only")
    ap.add_argument("--warm-cache", action="store_true",
                    help="use inductor's on-disk cache (default: a fresh one, so the warm-up is "
                         "a first compile's)")
    ap.add_argument("--name", default="compile_training", help="results file stem")
    ap.add_argument("--results", type=Path, default=RESULTS)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cold = None if args.warm_cache else tempfile.mkdtemp(prefix="inductor-cold-")
    if cold:
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cold
    try:
        return run(args, argv)
    finally:
        if cold:
            shutil.rmtree(cold, ignore_errors=True)


def run(args, argv) -> int:
    model_kwargs = {}
    if args.quick:
        args.batch_size, args.pairs, args.warmup = min(args.batch_size, 8), min(args.pairs, 2), 1
        args.models = args.models or ["mixer_tiny"]
        model_kwargs = QUICK_KWARGS
    models = args.models or tiny_presets()
    x, y = batch(args.batch_size)
    rows = []
    for name in models:
        rows.append(measure(name, x, y, pairs=args.pairs, warmup=args.warmup,
                            backend=args.backend, mode=args.mode, model_kwargs=model_kwargs))
        r = rows[-1]
        print(f"{name:18s} eager {r['eager_step_s'] * 1e3:7.1f} ms  compiled "
              f"{r['compiled_step_s'] * 1e3:7.1f} ms  ratio {r['ratio_median']:.3f}  warm-up "
              f"{r['warmup_s']:.1f} s  graphs {r['graphs']}  breaks {r['graph_breaks']}",
              flush=True)
        write(args, argv, rows, machine())  # a partial table survives an interrupted run
    print("\n".join(result_lines({"rows": rows})))
    for r in rows:
        if r["model"] in GOAL_MODELS and not args.quick:
            met = "met" if r["ratio_median"] <= GOAL else "not met"
            print(f"goal compiled/eager <= {GOAL} for {r['model']}: {met} "
                  f"({r['ratio_median']:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
