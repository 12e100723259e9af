"""Test accuracy per epoch, read from the ``metrics.jsonl`` of finished or running runs.

Each ``--run LABEL=FOLDER`` adds one run folder; give the same label several times (one folder
per seed) and the table shows the mean over those runs at each epoch, with the number of runs
that reached it. Epoch times are summarised as the median seconds per epoch.

Usage:
    python benchmarks/curves_table.py --name fashion_mnist_cpu_8ep_seed0 \\
        --run mixer_tiny=runs/cpu_long/mixer_tiny --run imixer_tiny=runs/cpu_long/imixer_tiny

Writes ``benchmarks/results/<name>.{md,json}`` (paths in them relative to the repository);
``--plot FILE.png`` also draws the curves (mean over a label's runs, shaded between its lowest
and highest run where there are several).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.accuracy_study import read_metrics  # noqa: E402


def run_history(folder: Path) -> list[dict]:
    """``read_metrics``, but a folder without ``metrics.jsonl`` is an error here."""
    if not (folder / "metrics.jsonl").is_file():
        raise SystemExit(f"{folder / 'metrics.jsonl'}: no metrics.jsonl; pass a run folder "
                         f"written by hopfield train.")
    return read_metrics(folder)


def relative(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def plot_curves(table: dict, title: str, path: Path, ymin: float | None = None) -> None:
    """Mean test accuracy per epoch for every label; a band spans the runs where there are
    several."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    for label, t in table.items():
        rows = [r for r in t["epochs"] if r["n"]]
        epochs = [r["epoch"] for r in rows]
        line, = ax.plot(epochs, [r["mean_test_acc"] for r in rows], lw=1.6,
                        label=label + (f" ({len(t['runs'])} runs)" if len(t["runs"]) > 1 else ""))
        if len(t["runs"]) > 1:
            ax.fill_between(epochs, [min(r["values"]) for r in rows],
                            [max(r["values"]) for r in rows], color=line.get_color(), alpha=0.2,
                            lw=0)
    ax.set(xlabel="epoch", ylabel="test accuracy", title=title)
    if ymin is not None:
        ax.set_ylim(bottom=ymin)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", action="append", required=True, metavar="LABEL=FOLDER")
    ap.add_argument("--name", required=True, help="results file stem")
    ap.add_argument("--title", default="Test accuracy per epoch")
    ap.add_argument("--note", default="", help="a paragraph under the title (command, machine)")
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--plot", type=Path, help="also write the curves as this PNG")
    ap.add_argument("--ymin", type=float, default=None, help="lower end of the plot's y axis")
    args = ap.parse_args(argv)

    groups: dict[str, list[Path]] = {}
    for spec in args.run:
        label, sep, folder = spec.partition("=")
        if not sep or not label or not folder:
            raise SystemExit(f"--run {spec!r}: expected LABEL=FOLDER.")
        groups.setdefault(label, []).append(Path(folder))
    histories = {label: [run_history(f) for f in folders] for label, folders in groups.items()}
    n_epochs = max(len(h) for runs in histories.values() for h in runs)

    table = {}
    for label, runs in histories.items():
        per_epoch = []
        for e in range(n_epochs):
            accs = [h[e]["test_acc"] for h in runs if len(h) > e]
            per_epoch.append({"epoch": e + 1, "n": len(accs),
                              "mean_test_acc": statistics.fmean(accs) if accs else None,
                              "values": accs})
        times = [row["epoch_time_s"] for h in runs for row in h if "epoch_time_s" in row]
        table[label] = {"runs": [relative(f) for f in groups[label]], "epochs": per_epoch,
                        "median_epoch_s": statistics.median(times) if times else None}

    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{args.name}.json").write_text(json.dumps(table, indent=2) + "\n")
    seeds = {label: len(runs) for label, runs in histories.items()}
    lines = [f"# {args.title}", ""]
    if args.note:
        lines += [args.note, ""]
    header = " | ".join(f"{label}" + (f" (mean of {seeds[label]})" if seeds[label] > 1 else "")
                        for label in table)
    lines += [f"| epoch | {header} |", "|---|" + "---|" * len(table)]
    for e in range(n_epochs):
        cells = []
        for label, t in table.items():
            row = t["epochs"][e]
            if row["n"] == 0:
                cells.append("–")
            else:
                partial = f" ({row['n']}/{seeds[label]})" if row["n"] < seeds[label] else ""
                cells.append(f"{row['mean_test_acc']:.4f}{partial}")
        lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    lines += ["", "Median seconds per epoch: " + ", ".join(
        f"{label} {t['median_epoch_s']:.0f}" for label, t in table.items()
        if t["median_epoch_s"] is not None) + "."]
    (args.results / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    if args.plot:
        plot_curves(table, args.title, args.plot, ymin=args.ymin)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
