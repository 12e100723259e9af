"""Accuracy study: Mixer vs iMixer (k = 1, 2) vs ViT vs the tied variants, several seeds.

Trains every (model, seed) pair with the same recipe through :func:`hopfield.training.train`,
then reports the final test accuracy as mean ± 95 % Student-t interval over seeds, and paired
comparisons across seeds (same seed = same data order and augmentation): iMixer − Mixer and
tied iMixer − tied Mixer, with the paired t-test's two-sided p-value. Finished runs are reused
and interrupted ones resumed (``--resume`` semantics), so the study can be stopped and restarted.

Usage:
    python benchmarks/accuracy_study.py --epochs 10 --device cuda              # bundled subset
    python benchmarks/accuracy_study.py --dataset fashion_mnist --data-dir DIR --epochs 30
    python benchmarks/accuracy_study.py --epochs 1 --max-train-samples 256 --smoke  # seconds

Writes ``benchmarks/results/<name>.json`` and ``<name>.md`` (``--name``, default ``accuracy``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hopfield.training import train  # noqa: E402

MODELS = ["mixer_tiny", "imixer_tiny", "imixer_k2_tiny", "vit_tiny", "mixer_tied_tiny",
          "imixer_tied_tiny"]
PAIRS = [("imixer_tiny", "mixer_tiny"), ("imixer_k2_tiny", "mixer_tiny"),
         ("imixer_tied_tiny", "mixer_tied_tiny")]


def read_metrics(out: Path) -> list[dict]:
    """The per-epoch rows of a run folder's ``metrics.jsonl`` (empty if it has none yet)."""
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


# optional `hopfield train` settings a study passes on only when given (else: the trainer's default)
TRAINER_FLAGS = ("crop_padding", "random_erasing", "max_train_samples", "max_eval_samples")


def add_trainer_flags(ap: argparse.ArgumentParser) -> None:
    """The ``TRAINER_FLAGS`` options, shared by the study scripts."""
    ap.add_argument("--crop-padding", type=int,
                    help="random-crop translation in pixels (default: the trainer's, image size / 8)")
    ap.add_argument("--random-erasing", type=float, metavar="P",
                    help="random-erasing probability per training image (default: off)")
    ap.add_argument("--max-train-samples", type=int)
    ap.add_argument("--max-eval-samples", type=int)


def given_trainer_flags(args) -> dict:
    """The ``TRAINER_FLAGS`` set on the command line (an explicit 0 included)."""
    return {f: getattr(args, f) for f in TRAINER_FLAGS if getattr(args, f) is not None}


def paired_table(comparisons: dict) -> list[str]:
    """Markdown lines of the paired comparisons (none when no pair of models ran)."""
    if not comparisons:
        return []
    lines = ["", "Paired over seeds (difference of accuracies, paired t-test):", "",
             "| comparison | mean diff | ± 95 % CI | p | wins |", "| --- | --- | --- | --- | --- |"]
    for name, c in comparisons.items():
        lines.append(f"| {name} | {c['mean_diff']:+.4f} | {c['ci95_half_width']:.4f} | "
                     f"{c['p_value']:.3g} | {c['wins']}/{c['n']} |")
    return lines


def settings_record(args) -> dict:
    """The run's settings for the results JSON; paths relative to the repository, so the file
    names no machine's folders."""
    def show(v):
        if not isinstance(v, Path):
            return v
        return str(v.relative_to(ROOT)) if v.is_absolute() and v.is_relative_to(ROOT) else str(v)

    return {k: show(v) for k, v in vars(args).items()}


def machine_line(args) -> str:
    """Where the numbers came from: the device, torch version, threads and precision."""
    import os

    import torch

    from hopfield.training.trainutil import amp_dtype, resolve_device

    device = resolve_device(args.device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {os.cpu_count()} cores, {torch.get_num_threads()} thread(s) per run")
    dtype = amp_dtype(args.amp, device)
    return (f"{where}; torch {torch.__version__}; "
            f"{'float32' if dtype is None else 'autocast ' + str(dtype).removeprefix('torch.')}")


def command_args(argv: list[str]) -> list[str]:
    """The command line as the table quotes it: without the ``--note`` paragraph."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--note":
            skip = True
        elif not a.startswith("--note="):
            out.append(a)
    return out


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float]:
    """``(mean, half_width)`` of the Student-t confidence interval (half-width NaN if n < 2)."""
    from scipy import stats

    n, mean = len(values), statistics.fmean(values)
    if n < 2:
        return mean, float("nan")
    return mean, stats.t.ppf(0.5 + level / 2, n - 1) * statistics.stdev(values) / math.sqrt(n)


def paired(a: list[float], b: list[float]) -> dict:
    """Paired comparison of ``a`` and ``b`` (same seeds): mean difference, its interval, p."""
    from scipy import stats

    diff = [x - y for x, y in zip(a, b, strict=True)]
    mean, half = t_interval(diff)
    varied = len(diff) > 1 and len(set(diff)) > 1  # the t statistic needs a spread
    p = float(stats.ttest_rel(a, b).pvalue) if varied else float("nan")
    return {"mean_diff": mean, "ci95_half_width": half, "p_value": p, "n": len(diff),
            "wins": sum(d > 0 for d in diff)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=MODELS)
    ap.add_argument("--factory", action="append", default=[], metavar="FILE.py:FUNCTION",
                    help="register a block factory (hopfield.models.load_factory) so that "
                         "--models can name it (by its function name)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--dataset", default="bundled")
    ap.add_argument("--data-dir")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp16", "off"])
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    add_trainer_flags(ap)
    ap.add_argument("--runs", type=Path, default=Path("runs/accuracy_study"),
                    help="parent folder of the per-run outputs")
    ap.add_argument("--name", default="accuracy", help="results file stem")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--smoke", action="store_true", help="depth-1, width-32 models (CI speed)")
    ap.add_argument("--note", default="", help="a paragraph appended to the markdown table "
                    "(how the runs were scheduled, what shared the machine)")
    args = ap.parse_args(argv)
    from hopfield.models import load_factory

    for spec in args.factory:
        load_factory(spec)

    tag = (f"{args.dataset}-e{args.epochs}"
           + (f"-n{args.max_train_samples}" if args.max_train_samples else "")
           + (f"-c{args.crop_padding}" if args.crop_padding is not None else "")
           + (f"-re{args.random_erasing:g}" if args.random_erasing else "")
           + ("-smoke" if args.smoke else ""))
    runs = {}
    for model in args.models:
        for seed in args.seeds:
            out = args.runs / tag / f"{model}-s{seed}"
            result = train(model=model, seed=seed, epochs=args.epochs, dataset=args.dataset,
                           data_dir=args.data_dir, device=args.device, amp=args.amp,
                           batch_size=args.batch_size, lr=args.lr, out=str(out), resume="auto",
                           quiet=True, **given_trainer_flags(args),
                           model_kwargs={"depth": 1, "dim": 32} if args.smoke else {})
            final = result.final
            params = sum(p.numel() for p in result.model.parameters())
            wall = sum(row.get("epoch_time_s", 0.0) for row in result.history)
            runs[f"{model}/{seed}"] = {"model": model, "seed": seed, "params": params,
                                       "train_s": wall, **final}
            print(f"{model:18s} seed {seed}: test acc {final['test_acc']:.4f} "
                  f"({final['images_per_s']:.0f} img/s)", flush=True)

    acc = {m: [runs[f"{m}/{s}"]["test_acc"] for s in args.seeds] for m in args.models}
    summary = {m: dict(zip(("mean", "ci95_half_width"), t_interval(v), strict=True), values=v,
                       params=runs[f"{m}/{args.seeds[0]}"]["params"],
                       train_s_median=statistics.median(runs[f"{m}/{s}"]["train_s"]
                                                        for s in args.seeds))
               for m, v in acc.items()}
    comparisons = {f"{a} - {b}": paired(acc[a], acc[b]) for a, b in PAIRS
                   if a in acc and b in acc}
    record = {"settings": settings_record(args),
              "summary": summary, "paired": comparisons, "runs": runs}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.name}.json").write_text(json.dumps(record, indent=2) + "\n")

    lines = [f"# Accuracy study: {args.dataset}, {args.epochs} epochs, seeds {args.seeds}", "",
             f"Final test accuracy, mean ± 95 % t-interval over {len(args.seeds)} seeds. "
             f"Command: `python benchmarks/accuracy_study.py "
             f"{' '.join(command_args(argv if argv is not None else sys.argv[1:]))}`", "",
             "| model | params | epochs | mean acc | ± 95 % CI | per seed | train s (median) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for m, s in summary.items():
        lines.append(f"| {m} | {s['params']:,} | {args.epochs} | {s['mean']:.4f} | "
                     f"{s['ci95_half_width']:.4f} | {', '.join(f'{v:.4f}' for v in s['values'])} "
                     f"| {s['train_s_median']:.0f} |")
    lines += paired_table(comparisons)
    lines += ["", f"Machine: {machine_line(args)}."] + (["", args.note] if args.note else [])
    (args.results / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
