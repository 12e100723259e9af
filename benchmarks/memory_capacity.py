"""Capacity of the associative memories: recall success against the number of stored random ±1
patterns, for N in {64, 128, 256} and every energy of ``hopfield.memory``.

    python benchmarks/memory_capacity.py [--quick] [--sizes 64 128 256] [--energies classical poly ...]

A recall starts from a stored pattern with 10 % of its bits flipped and succeeds when the
overlap of the recalled state (read out by its sign) with that pattern is at least 0.99. At each
load K a fresh set of K random patterns is stored (several sets when K is small) and about
``--queries`` recalls are made; the capacity is the load at which half the recalls succeed,
linearly interpolated between the two loads around the crossing. The search stops after the first
load with at most 10 % success; an energy that never drops below one half within its range
(capped for poly / exp / lse / ham) reports a lower bound ``>= K_max``.

Writes ``benchmarks/results/<name>.{md,json,png}`` (and the figure again under docs/figures/ unless
``--quick``) and prints ``RESULT memory_capacity_<energy>_N<N> <K>`` lines.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from hopfield import memory  # noqa: E402

FLIP, THRESHOLD = 0.10, 0.99
ENERGIES = ("classical", "tanh", "poly", "exp", "lse", "ham")
SETTINGS = {"classical": {}, "tanh": {"beta": 8.0}, "poly": {"n": 3}, "exp": {"beta": 1.0},
            "lse": {"beta": 1.0}, "ham": {"beta": 1.0}}


def loads(energy: str, n: int, cap: int, quick: bool) -> list[int]:
    """The grid of pattern counts K tried for ``energy`` at size ``n`` (ascending)."""
    if energy in ("classical", "tanh"):
        fractions = np.arange(0.04, 0.41, 0.04 if quick else 0.02)
    elif energy == "poly":
        fractions = 2.0 ** np.arange(-1.0, 6.01, 1.0 if quick else 0.5)
    else:  # exponential capacity: N, 2N, 4N, ... and the cap
        fractions = [*2.0 ** np.arange(0.0, 12.0, 2.0 if quick else 1.0), cap / n]
    ks = sorted({max(1, int(round(f * n))) for f in fractions})
    return [k for k in ks if k <= cap] or [min(cap, ks[0])]


def success_rate(energy: str, n: int, k: int, queries: int, seed: int) -> tuple[float, int]:
    """Fraction of successful recalls at load ``k`` (and the number of recalls made)."""
    gen = torch.Generator().manual_seed(seed)
    hits = total = 0
    while total < queries:
        xi = torch.randint(0, 2, (k, n), generator=gen).double() * 2 - 1
        batch = min(k, queries - total)
        target = xi[:batch]
        query = memory.flip_pixels(target, FLIP, generator=gen)
        mem = memory.store(energy, xi, **SETTINGS[energy])
        out = mem.recall(query.to(mem.patterns.dtype), generator=gen).output
        hits += int((memory.overlap(out.double(), target) >= THRESHOLD).sum())
        total += batch
    return hits / total, total


def crossing(ks: list[int], rates: list[float]) -> tuple[float, str]:
    """The load at which the success rate falls through 1/2: ``(K, "=" | ">=" | "<=")``."""
    for j, r in enumerate(rates):
        if r < 0.5:
            if j == 0:
                return float(ks[0]), "<="
            k0, k1, r0 = ks[j - 1], ks[j], rates[j - 1]
            return k0 + (r0 - 0.5) / (r0 - r) * (k1 - k0), "="
    return float(ks[-1]), ">="


def theory(energy: str, n: int) -> str:
    if energy in ("classical", "tanh"):
        return f"0.138 N = {0.138 * n:.1f}"
    if energy == "poly":  # Krotov & Hopfield 2016: N^(n-1) / (2 (2n-3)!! ln N), n = 3
        return f"N^2/(6 ln N) = {n * n / (6 * math.log(n)):.0f}"
    return "exp(c N)"


def checks(curves: dict) -> list[str]:
    """The study's two claims, as sentences, where the runs hold the numbers."""
    out = []
    c256 = curves.get("classical_N256")
    if c256:
        out.append(f"- classical at N = 256: K = {c256['capacity']:.1f} = "
                   f"{c256['capacity'] / (0.138 * 256):.2f} × 0.138 N.")
    c128 = curves.get("classical_N128")
    for e in ("poly", "exp", "lse", "ham"):
        c = curves.get(f"{e}_N128")
        if c and c128:
            sign = "≥ " if c["bound"] == ">=" else ""
            out.append(f"- {e} at N = 128 stores {sign}{c['capacity'] / c128['capacity']:.0f}× "
                       f"as many patterns as classical.")
    return ["", *out] if out else []


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor()) \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    return (f"{os.cpu_count()}-core CPU ({cpu}), torch {torch.__version__} "
            f"({torch.get_num_threads()} threads), Python {platform.python_version()}")


def plot(curves: dict, sizes: list[int], path: Path) -> None:
    """Success curves at each of ``sizes``, then the capacity against N (every size run)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    energies = list(dict.fromkeys(c["energy"] for c in curves.values()))
    colour = {e: f"C{i}" for i, e in enumerate(energies)}
    fig, axes = plt.subplots(1, len(sizes) + 1, figsize=(4.0 * (len(sizes) + 1), 3.4),
                             squeeze=False)
    for ax, n in zip(axes[0], sizes, strict=False):
        for c in (c for c in curves.values() if c["N"] == n):
            ax.plot(c["loads"], c["success"], marker="o", ms=3, color=colour[c["energy"]],
                    label=c["energy"], alpha=0.85)
        ax.axvline(0.138 * n, color="grey", ls=":", lw=1)
        ax.axhline(0.5, color="grey", lw=0.5)
        ax.set(xscale="log", xlabel="stored patterns K", title=f"N = {n}", ylim=(-0.03, 1.03))
    axes[0][0].set_ylabel(f"recall success (overlap >= {THRESHOLD})")
    axes[0][0].legend(fontsize=7, loc="lower left")
    ax = axes[0][-1]
    for e in energies:
        pts = sorted((c["N"], c["capacity"], c["bound"]) for c in curves.values()
                     if c["energy"] == e)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], color=colour[e], lw=1, label=e)
        for n, k, bound in pts:
            ax.plot(n, k, marker="^" if bound == ">=" else "o", ms=5, color=colour[e],
                    mfc="none" if bound == ">=" else colour[e])
    ns = np.array(sorted({c["N"] for c in curves.values()}), dtype=float)
    ax.plot(ns, 0.138 * ns, "k:", lw=1, label="0.138 N")
    ax.set(xscale="log", yscale="log", xlabel="N", ylabel="capacity K (open ^: lower bound)",
           title="capacity against N")
    ax.set_xticks(ns, [f"{n:g}" for n in ns], fontsize=7)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.legend(fontsize=7)
    fig.suptitle(f"Recall from {FLIP:.0%} flipped bits (dotted: 0.138 N)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke test: N = 32, 48, few loads")
    ap.add_argument("--sizes", type=int, nargs="+")
    ap.add_argument("--energies", nargs="+", choices=ENERGIES, default=list(ENERGIES))
    ap.add_argument("--growth", type=int, nargs="*",
                    help="extra small sizes for exp and lse, whose capacity the cap hides at "
                         "N >= 64 (default 12 16 20; none with --quick)")
    ap.add_argument("--queries", type=int, help="recalls per load (default 100; quick 24)")
    ap.add_argument("--cap", type=int, default=4096, help="largest load tried (poly/exp/lse/ham)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--name", default=None, help="file stem (default memory_capacity[_quick])")
    ap.add_argument("--docs-figure", default=str(ROOT / "docs" / "figures" / "memory_capacity.png"),
                    help="copy of the figure for the docs (not --quick; '' for none)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (the sweeps are many small operations: 1 is fastest)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sizes = args.sizes or ([32, 48] if args.quick else [64, 128, 256])
    queries = args.queries or (24 if args.quick else 100)
    cap = min(args.cap, 256) if args.quick else args.cap
    name = args.name or ("memory_capacity_quick" if args.quick else "memory_capacity")
    args.results.mkdir(parents=True, exist_ok=True)
    started, curves, rows = time.perf_counter(), {}, []
    growth = args.growth if args.growth is not None else ([] if args.quick else [12, 16, 20])
    runs = [(e, n) for e in args.energies for n in sizes]
    runs += [(e, n) for e in ("exp", "lse") if e in args.energies for n in growth]
    for energy, n in runs:
        t0, ks, rates = time.perf_counter(), [], []
        for k in loads(energy, n, cap, args.quick):
            rate, _ = success_rate(energy, n, k, queries, args.seed + 7919 * k + n)
            ks.append(k)
            rates.append(rate)
            if rate <= 0.1:
                break
        value, rel = crossing(ks, rates)
        secs = time.perf_counter() - t0
        curves[f"{energy}_N{n}"] = {"energy": energy, "N": n, "loads": ks, "success": rates,
                                    "capacity": value, "bound": rel, "seconds": secs}
        rows.append((energy, n, value, rel, secs))
        print(f"RESULT memory_capacity_{energy}_N{n} {value:.1f}", flush=True)
    total = time.perf_counter() - started
    cmd = "python benchmarks/memory_capacity.py" + (" --quick" if args.quick else "")
    md = [f"# Associative memory capacity ({'quick smoke run' if args.quick else 'full study'})",
          "", f"Command: `{cmd}`  ", f"Machine: {machine()}; total {total:.0f} s", "",
          f"Random ±1 patterns; each recall starts from a stored pattern with {FLIP:.0%} of its "
          f"bits flipped and succeeds at overlap >= {THRESHOLD}; {queries} recalls per load; "
          f"capacity = load at 50 % success (linear interpolation; `>=`: lower bound, every "
          f"load up to the cap succeeded). Settings: "
          + ", ".join(f"{e} {SETTINGS[e] or 'Hebb'}" for e in args.energies) + ".", "",
          "| energy | N | capacity K | K / N | theory | time (s) |",
          "|---|---:|---:|---:|---|---:|"]
    for energy, n, value, rel, secs in sorted(rows, key=lambda r: (ENERGIES.index(r[0]), r[1])):
        shown = f"{'≥ ' if rel == '>=' else '≤ ' if rel == '<=' else ''}{value:.1f}"
        md.append(f"| {energy} | {n} | {shown} | {value / n:.3f} | {theory(energy, n)} | "
                  f"{secs:.1f} |")
    md += checks(curves)
    (args.results / f"{name}.md").write_text("\n".join(md) + "\n")
    (args.results / f"{name}.json").write_text(json.dumps(
        {"command": cmd, "machine": machine(), "seconds": total, "flip": FLIP,
         "threshold": THRESHOLD, "queries_per_load": queries, "settings": SETTINGS,
         "curves": curves}, indent=1) + "\n")
    plot(curves, sizes, args.results / f"{name}.png")
    if not args.quick and args.docs_figure:
        plot(curves, sizes, Path(args.docs_figure))
    print(f"wrote {args.results / name}.md/.json/.png in {total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
