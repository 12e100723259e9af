"""Fill the benchmark numbers quoted in README.md and docs/results.md from benchmarks/results/*.json.

    .venv/bin/python scripts/gen_results.py           # rewrite the marked regions in place
    .venv/bin/python scripts/gen_results.py --check   # exit 1 (and show a diff) if any differs
    .venv/bin/python scripts/gen_results.py --list    # the marker names and what they hold

Every generated region sits between ``<!-- results:NAME -->`` and ``<!-- /results:NAME -->``.
A marker on a line of its own holds a block (a table, with blank lines around it); a marker
inside a line holds a phrase. Text outside the markers is never touched, so prose stays
hand-written and only the numbers come from the JSON files the benchmarks write. An unknown
marker name is an error. ``tests/test_results_docs.py`` runs the check.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOCS = ("README.md", "docs/results.md")
MARKER = re.compile(r"<!-- results:(?P<name>[\w-]+) -->(?P<body>.*?)<!-- /results:(?P=name) -->",
                    re.DOTALL)


def load(name: str) -> dict:
    return json.loads((RESULTS / f"{name}.json").read_text())


def sci(x: float) -> str:
    """1.49e-08 -> '1.5e-8'; 0 -> '0'."""
    if x == 0:
        return "0"
    mant, exp = f"{x:.1e}".split("e")
    return f"{mant}e{int(exp)}"


def span(values, fmt="{:.2f}", sep=" – ") -> str:
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}{sep}{hi}"


# ----------------------------------------------------------------------------- numbers
def overhead_span() -> str:
    return span([r["ratio"] for r in load("overhead")["rows"]])


def timm_max() -> str:
    return f"max logit diff {sci(max(r['max_abs_diff'] for r in load('timm_interop')['rows']))}"


def solver_cells() -> tuple[str, str]:
    ev = load("solvers")["evals"]

    def med(regime, key="ratio"):
        return statistics.median(e[key] for e in ev if e["regime"] == regime)

    label = (f"Anderson / plain function evaluations to residual 1e-5, iMixer group: near-critical "
             f"weights; trained checkpoints (plain needs only {med('trained', 'plain_nfev'):.0f})")
    cells = f"{med('flat'):.2f}; {med('trained'):.2f}"
    if all("safeguarded_nfev" in e for e in ev):  # plain, switching to Anderson when it stalls
        label += ". Safeguarded solver: same ratio; extra evaluations vs plain on trained"
        cells += (f". Safeguarded: {med('flat', 'safeguarded_ratio'):.2f}; "
                  f"+{med('trained', 'safeguarded_extra'):.0f} evaluations")
    return label, cells


def memory_cells() -> tuple[str, str]:
    d = load("solvers")
    unrolled = span(d["unrolled_memory_ratio_k16_k1"].values(), sep="–")
    return (f"implicit-gradient backward memory, k = 16 vs k = 1 (unrolled: {unrolled}×)",
            f"{d['implicit_memory_ratio_k16_k1']:.2f}")


def descent_runs() -> list[dict]:
    """Every ``descent*.json``, one row per thread count: compiled hopfield descent / HAMUX.

    Runs of the chunked benchmark (a ``runs`` entry per thread count) report the default chunk;
    earlier runs timed a compiled step per Python iteration (``chunk`` 1) and no HAMUX loop.
    """
    out = []
    for path in sorted(RESULTS.glob("descent*.json")):
        d = json.loads(path.read_text())
        m = d["machine"]
        if "runs" in d:
            chunk = d["default_chunk"]
            for t, run in d["runs"].items():
                ms = run["ms_per_step_median"]
                if "HAMUX step" not in ms:
                    continue
                out.append({"file": path.name, "cores": m["nproc"], "threads": int(t),
                            "processor": m["processor"], "torch": m["torch"],
                            "jax": run["hamux"]["jax"], "chunk": chunk,
                            "compiled": ms[f"chunk={chunk}"],
                            "stats": ms[f"chunk={chunk} +stats"], "eager": ms["eager"],
                            "hamux": ms["HAMUX step"], "loop": ms["HAMUX loop"],
                            "warmup": run["warmup_s"][f"chunk={chunk} +stats"]})
            continue
        ms = d["ms_per_step_median"]
        out.append({"file": path.name, "cores": m["nproc"], "threads": m["torch_threads"],
                    "processor": m["processor"], "torch": m["torch"],
                    "jax": d["hamux"]["jax"], "chunk": 1,
                    "compiled": ms["hopfield compiled (descend_compiled)"], "stats": None,
                    "eager": ms["hopfield eager (descend)"],
                    "hamux": ms["HAMUX 0.2.2 jitted step (JAX)"],
                    "loop": ms.get("HAMUX, whole loop in one jit (extra reference)"),
                    "warmup": d.get("compile_s")})
    for r in out:
        r["ratio"] = r["compiled"] / r["hamux"]
    return sorted(out, key=lambda r: (r["cores"], r["threads"], r["torch"], r["file"]))


def _bold_above(v: float, limit: float) -> str:
    return f"**{v:.2f}**" if v > limit else f"{v:.2f}"


def descent_cell() -> str:
    return "; ".join(f"{_bold_above(r['ratio'], 1.0)} ({r['cores']} cores, {r['threads']} "
                     f"thread{'s' if r['threads'] != 1 else ''}, chunk {r['chunk']})"
                     for r in descent_runs())


def descent_loop_cell() -> str:
    rows = [r for r in descent_runs() if r["stats"] is not None]
    return "; ".join(f"{_bold_above(r['stats'] / r['loop'], 1.0)} with stats, "
                     f"{_bold_above(r['compiled'] / r['loop'], 1.0)} without ({r['cores']} cores, "
                     f"{r['threads']} thread{'s' if r['threads'] != 1 else ''})" for r in rows)


def throughput_cell() -> str:
    rows = load("throughput").values()
    cpu = [r["pipeline_throughput_ratio"] for r in rows if r["device"].startswith("cpu")]
    gpu = [r["pipeline_throughput_ratio"] for r in rows if r["device"].startswith("cuda")]
    return f"{span(cpu)}; {span(gpu)}"


def cpu_amp_cell() -> str:
    rows = load("cpu_amp")["rows"]
    mlp = [r["speedup_median"] for r in rows if not r["model"].startswith("vit")]
    vit = [r["speedup_median"] for r in rows if r["model"].startswith("vit")]
    return f"{span(mlp, '{:.1f}')}; {span(vit, '{:.1f}')}"


# ----------------------------------------------------------------------------- regions
def headline() -> str:
    solver_label, solver = solver_cells()
    memory_label, memory = memory_cells()
    rows = [
        ("derived block fwd+bwd time / hand-written reference (Mixer, ViT, iMixer k=1,2,4; "
         "small and S/16 sizes, CPU)", overhead_span(), "≤ 1.05"),
        ("derived blocks vs reference blocks, float64, forward and every gradient (a test "
         "tolerance, `tests/reference/`)", "exact to 1e-6 (iMixer loop: bitwise)", "1e-6"),
        ("timm `MlpMixer` / `VisionTransformer` converted by `hf.interop.convert` (H100, timm "
         f"{load('timm_interop')['timm']})", timm_max(), "1e-5"),
        (solver_label, solver, "≤ 0.5"),
        (memory_label, memory, "≤ 1.1"),
        ("energy-descent step, compiled, / HAMUX 0.2.2 jitted step (784–512–10 graph, batch 256, "
         "CPU; every run in `benchmarks/results/descent*.json`)", descent_cell(), "≤ 1.0"),
        ("energy descent compiled in chunks (`descend_compiled`, default chunk) / HAMUX's whole "
         "loop in one jit", descent_loop_cell(), "≤ 1.0"),
        ("`hopfield train` throughput / minimal PyTorch loop (CPU; H100 bf16)", throughput_cell(),
         "≥ 0.95"),
        ("training step, float32 / bf16 autocast on this AVX512-BF16 CPU (Mixer, iMixer; ViT)",
         cpu_amp_cell(), "—"),
    ]
    lines = ["| what | number | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    return "\n".join(lines)


def descent_hosts() -> str:
    lines = ["| run | CPU | cores | torch threads | torch / jax | chunk | eager ms | compiled ms "
             "| + stats ms | HAMUX step ms | HAMUX loop ms | compiled / HAMUX step | warm-up s |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def f(v, fmt="{:.2f}"):
        return "—" if v is None else fmt.format(v)

    for r in descent_runs():
        lines.append(f"| `{r['file']}` | {r['processor']} | {r['cores']} | {r['threads']} | "
                     f"{r['torch']} / {r['jax']} | {r['chunk']} | {r['eager']:.2f} | "
                     f"{r['compiled']:.2f} | {f(r['stats'])} | {r['hamux']:.2f} | "
                     f"{f(r['loop'])} | {r['ratio']:.2f} | {f(r['warmup'], '{:.1f}')} |")
    return "\n".join(lines)


def _re60() -> tuple[dict, float]:
    run = load("fashion_mnist_cpu_re")["erasing 0.25, 60 epochs"]
    last = [e for e in run["epochs"] if e["n"]][-1]
    return last, run["median_epoch_s"]


def re60_acc() -> str:
    return f"{100 * _re60()[0]['mean_test_acc']:.2f} %"


def re60_time() -> str:
    last, med = _re60()
    return (f"{last['epoch']} epochs at a median {med:.0f} s each (≈ {last['epoch'] * med / 60:.0f} "
            f"min of training)")


def gpu30() -> str:
    d = load("fashion_mnist_gpu_30ep")
    s, p = d["summary"], d["paired"]["imixer_tiny - mixer_tiny"]

    def acc(m):
        return f"{100 * s[m]['mean']:.2f} ± {100 * s[m]['ci95_half_width']:.2f} %"

    return (f"Mixer {acc('mixer_tiny')}, iMixer (k=1) {acc('imixer_tiny')} (paired "
            f"{100 * p['mean_diff']:+.2f} %, {p['wins']}/{p['n']} seeds, p = {p['p_value']:.2f})")


REGIONS = {
    "headline": (headline, "the results table of README.md (and of docs/results.md)"),
    "descent-hosts": (descent_hosts, "every energy-descent timing run side by side"),
    "re60-acc": (re60_acc, "final test accuracy of the 60-epoch random-erasing Mixer"),
    "re60-time": (re60_time, "its epochs and median seconds per epoch"),
    "gpu30": (gpu30, "30-epoch H200 Mixer vs iMixer, mean ± 95 % CI and paired test"),
}


def fill(text: str, where: str = "") -> str:
    def sub(m):
        name = m["name"]
        if name not in REGIONS:
            raise SystemExit(f"{where}: unknown results marker {name!r}; known: "
                             f"{', '.join(REGIONS)}")
        body = REGIONS[name][0]()
        if m["body"].startswith("\n"):  # a block marker: the region is a table of its own
            body = f"\n\n{body}\n\n"
        return f"<!-- results:{name} -->{body}<!-- /results:{name} -->"

    return MARKER.sub(sub, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a change")
    parser.add_argument("--list", action="store_true", help="print the marker names")
    args = parser.parse_args(argv)
    if args.list:
        for name, (_, what) in REGIONS.items():
            print(f"{name}: {what}")
        return 0
    stale = []
    for rel in DOCS:
        path = ROOT / rel
        old = path.read_text()
        new = fill(old, rel)
        if new == old:
            continue
        stale.append(rel)
        if args.check:
            sys.stdout.writelines(difflib.unified_diff(old.splitlines(True), new.splitlines(True),
                                                       f"{rel} (committed)", f"{rel} (generated)"))
        else:
            path.write_text(new)
            print(f"updated {rel}")
    if args.check and stale:
        print(f"\nstale: {', '.join(stale)}; run .venv/bin/python scripts/gen_results.py")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
