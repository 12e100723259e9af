"""Time per energy-descent step: hopfield (eager; compiled in chunks of steps) vs HAMUX 0.2.2 (JAX).

Graph: image (784, Identity) - hidden (512, ReLU) - label (10, Softmax), dense synapses
image-hidden and hidden-label without biases, every layer free to move (tau = 1), batch 256,
leaky step alpha = 0.1 (x <- x - alpha dE/dg = x + alpha (I - x)), 100 steps per timed run.

    python benchmarks/descent.py [--threads 1,2] [--chunks 1,2,4] [--repeats 7] [--device cpu]

Paths timed side by side (interleaved, order rotated, medians):

* ``eager``: ``hf.dynamics.descend`` (record off);
* ``chunk=c``: ``hf.dynamics.descend_compiled(chunk=c, record=False)``, one compiled graph per
  ``c`` steps (``chunk=1`` is the per-step compiled descent);
* ``chunk=c +stats``: the default chunk with ``record=True`` (energies, per-term energies and
  gradient norms of every step, computed inside the graph);
* ``HAMUX step``: HAMUX's jitted step in a Python loop; ``HAMUX loop``: the whole loop in one
  ``jax.lax.fori_loop`` under ``jit``.

Each thread count t runs in a fresh process pinned to t cores (``os.sched_setaffinity``: XLA's
CPU client ignores its thread flags, so pinning is what limits both libraries; torch threads = t)
with an empty inductor cache, so the reported warm-up is a cold compile. HAMUX is a benchmark-only dependency (``pip install hamux==0.2.2 fastcore jax``);
without it the script says so and prints no HAMUX ratio. Before timing, every path runs one step
and all steps from the same state with the same weights and the differences are recorded.

Writes ``benchmarks/results/<name>.md`` and ``.json`` and ends with the ``RESULT`` lines:
``descent_fused_ratio_vs_hamux_loop`` (default chunk with stats / HAMUX loop, most threads),
``descent_fused_nostats_ratio_vs_hamux_loop``, ``descent_step_ratio_vs_hamux_<t>t`` (default
chunk without stats / HAMUX jitted step, per thread count), ``descent_warmup_s`` (compile of the
default call, stats on, empty cache), ``descent_warmup_nostats_s`` and
``torch_compile_first_call_s`` (the one-time set-up of the first ``torch.compile`` in a process).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import hopfield as hf  # noqa: E402
from hopfield import lagrangians as L  # noqa: E402

DEFAULT_CHUNK = 2  # the default of hf.dynamics.descend_compiled
GRAPH = ("image(784, Identity) - hidden(512, ReLU) - label(10, Softmax), Dense W1, W2 without "
         "bias, all layers tau=1")


def build_graph():
    return hf.EnergyGraph(
        neurons={"image": hf.NeuronLayer(784, L.Identity()),
                 "hidden": hf.NeuronLayer(512, L.ReLU()),
                 "label": hf.NeuronLayer(10, L.Softmax())},
        synapses={"W1": hf.synapses.Dense(784, 512, bias=False),
                  "W2": hf.synapses.Dense(512, 10, bias=False)},
        edges={"W1": ("image", "hidden"), "W2": ("hidden", "label")})


# ---------------------------------------------------------------------- HAMUX side
def hamux_setup(graph, xs_np, alpha, steps, device="cpu"):
    """The same energy in HAMUX: ``(run_steps, run_fused, to_np, xs0, versions)``; ImportError
    without HAMUX, or when JAX has no device of the kind torch runs on (no CPU-vs-GPU ratios)."""
    import equinox as eqx
    import hamux as hmx
    import jax
    import jax.numpy as jnp

    platform_ = jax.devices()[0].platform
    if (device == "cuda") != (platform_ == "gpu"):
        raise ImportError(f"JAX runs on {platform_!r} here, torch on {device!r}")

    # same arithmetic as torch's float32 matmuls (no TF32 on GPUs)
    jax.config.update("jax_default_matmul_precision", "highest")

    # HAMUX's LinearSynapse is E = -sum_cd g1_c g2_d W_cd, i.e. W_hamux = W_ours^T (ours: out x in)
    w1 = jnp.asarray(graph.synapses["W1"].weight.detach().cpu().numpy().T)
    w2 = jnp.asarray(graph.synapses["W2"].weight.detach().cpu().numpy().T)
    ham = hmx.HAM(
        neurons={"image": hmx.NeuronLayer(hmx.lagr_identity, (784,)),
                 "hidden": hmx.NeuronLayer(hmx.lagr_relu, (512,)),
                 "label": hmx.NeuronLayer(hmx.lagr_softmax, (10,))},
        hypersynapses={"W1": hmx.LinearSynapse(W=w1), "W2": hmx.LinearSynapse(W=w2)},
        connections=[(("image", "hidden"), "W1"), (("hidden", "label"), "W2")],
    ).vectorize()

    @eqx.filter_jit
    def step(ham, xs):
        # HAMUX's descent: dE/dg of every layer by autodiff (Legendre shortcut), then
        # x <- x - alpha * dE/dg (= leaky Euler with tau = 1)
        grads = ham.dEdact(ham.activations(xs), xs)
        return {k: xs[k] - alpha * grads[k] for k in xs}

    @eqx.filter_jit
    def run_loop(ham, xs):
        return jax.lax.fori_loop(0, steps, lambda _, s: step(ham, s), xs)

    xs0 = {k: jnp.asarray(v) for k, v in xs_np.items()}

    def run_steps(xs, n):
        for _ in range(n):
            xs = step(ham, xs)
        return jax.block_until_ready(xs)

    def run_fused(xs):
        return jax.block_until_ready(run_loop(ham, xs))

    def to_np(xs):
        return {k: np.asarray(v) for k, v in xs.items()}

    return run_steps, run_fused, to_np, xs0, {"jax": jax.__version__, "hamux": hmx.__version__,
                                              "jax_devices": [str(d) for d in jax.devices()]}


# ---------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _loadavg() -> str | None:
    try:
        return open("/proc/loadavg").read().split()[0]
    except OSError:
        return None


def _sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def _maxdiff(a, b):
    return max(float(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max()) for k in a)


def _np(xs):
    return {k: v.detach().cpu().numpy() for k, v in xs.items()}


# ---------------------------------------------------------------------- one thread count
def worker(args) -> dict:
    """Time every path at this process's thread count; returns the record."""
    t = args.worker_threads
    pinned = None
    if hasattr(os, "sched_setaffinity") and t < len(os.sched_getaffinity(0)):
        # XLA's CPU client ignores thread flags: pin the whole process (torch and JAX) to t cores
        pinned = sorted(os.sched_getaffinity(0))[:t]
        os.sched_setaffinity(0, pinned)
    torch.set_num_threads(t)
    dev = torch.device(args.device)
    torch.manual_seed(0)
    graph = build_graph().to(dev)
    xs = graph.init_states(args.batch, std=1.0, device=dev)
    alpha, steps = args.step_size, args.steps
    chunks = [int(c) for c in args.chunks.split(",")]
    if DEFAULT_CHUNK not in chunks:
        chunks.append(DEFAULT_CHUNK)
    rec: dict = {"threads": torch.get_num_threads(), "pinned_cpus": pinned,
                 "loadavg_1min_start": _loadavg(),
                 "warmup_s": {}, "compile_fallback": None}
    torch.set_grad_enabled(False)
    # the first torch.compile of a process pays a one-time set-up (inductor's imports, its C++
    # toolchain checks and headers: cold here, with an empty cache), whatever it compiles
    t0 = time.perf_counter()
    torch.compile(lambda t: torch.relu(t) * 2.0, fullgraph=True)(torch.randn(8, device=dev))
    rec["first_compile_any_s"] = round(time.perf_counter() - t0, 2)
    print(f"[{rec['threads']} threads] first torch.compile of the process (a one-line function): "
          f"{rec['first_compile_any_s']} s", flush=True)

    def eager(n):
        out, _ = hf.dynamics.descend(graph, xs, steps=n, step_size=alpha, record=False)
        _sync(args.device)
        return out

    def compiled(n, chunk, record=False):
        out, _ = hf.dynamics.descend_compiled(graph, xs, steps=n, step_size=alpha, chunk=chunk,
                                              record=record)
        _sync(args.device)
        return out

    paths = {"eager": lambda: eager(steps)}
    stats_key = f"chunk={DEFAULT_CHUNK} +stats"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # the default call first (stats on): its warm-up is the first compile of the process
        for key, chunk, record in ([(stats_key, DEFAULT_CHUNK, True)]
                                   + [(f"chunk={c}", c, False) for c in chunks]):
            t0 = time.perf_counter()
            compiled(chunk, chunk, record)
            rec["warmup_s"][key] = round(time.perf_counter() - t0, 2)
            paths[key] = lambda c=chunk, r=record: compiled(steps, c, r)
            print(f"[{rec['threads']} threads] warm-up {key}: {rec['warmup_s'][key]} s",
                  flush=True)
    fell = [str(w.message) for w in caught
            if issubclass(w.category, hf.dynamics.CompileFallbackWarning)]
    rec["compile_fallback"] = fell[0] if fell else None

    # ---- equivalence: one step, then all steps, from the same state with the same weights
    e1, en = _np(eager(1)), _np(eager(steps))
    diffs = {}
    for c in chunks:
        diffs[f"eager_vs_chunk={c}_{steps}steps"] = _maxdiff(en, _np(compiled(steps, c)))
    diffs[f"eager_vs_{stats_key}_{steps}steps"] = _maxdiff(en, _np(compiled(steps, DEFAULT_CHUNK,
                                                                             True)))
    try:
        run_steps, run_fused, to_np, xh0, versions = hamux_setup(graph, _np(xs), alpha, steps,
                                                                  args.device)
        rec["hamux"] = versions
    except ImportError as err:
        run_steps = None
        rec["hamux"] = None
        rec["hamux_missing"] = (f"HAMUX not compared ({err}); it needs `pip install "
                                f"hamux==0.2.2 fastcore jax` (with a CUDA jaxlib for --device "
                                f"cuda).")
        print("HAMUX MISSING:", rec["hamux_missing"])
    if run_steps is not None:
        diffs["hamux_vs_eager_1step"] = _maxdiff(to_np(run_steps(xh0, 1)), e1)
        diffs[f"hamux_step_vs_eager_{steps}steps"] = _maxdiff(to_np(run_steps(xh0, steps)), en)
        diffs[f"hamux_loop_vs_eager_{steps}steps"] = _maxdiff(to_np(run_fused(xh0)), en)
        paths["HAMUX step"] = lambda: run_steps(xh0, steps)
        paths["HAMUX loop"] = lambda: run_fused(xh0)
    diffs["state_scale_max_abs"] = max(float(np.abs(v).max()) for v in e1.values())
    rec["equivalence_max_abs_diff"] = diffs

    # ---- timing: interleaved, rotating order, medians
    for f in paths.values():
        f()
    keys = list(paths)
    times: dict = {k: [] for k in keys}
    for r in range(args.repeats):
        for k in keys[r % len(keys):] + keys[:r % len(keys)]:
            t = time.perf_counter()
            paths[k]()
            times[k].append((time.perf_counter() - t) / steps * 1e3)
    rec["ms_per_step_median"] = {k: statistics.median(v) for k, v in times.items()}
    rec["ms_per_step_all"] = times
    rec["loadavg_1min_end"] = _loadavg()
    return rec


def _ratios(run) -> dict:
    med = run["ms_per_step_median"]
    if "HAMUX loop" not in med:
        return {}
    return {"fused_vs_hamux_loop": med[f"chunk={DEFAULT_CHUNK} +stats"] / med["HAMUX loop"],
            "fused_nostats_vs_hamux_loop": med[f"chunk={DEFAULT_CHUNK}"] / med["HAMUX loop"],
            "fused_nostats_vs_hamux_step": med[f"chunk={DEFAULT_CHUNK}"] / med["HAMUX step"],
            "per_step_compiled_vs_hamux_step": med["chunk=1"] / med["HAMUX step"]
            if "chunk=1" in med else None}


# ---------------------------------------------------------------------- driver
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--step-size", type=float, default=0.1)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--threads", default=None,
                    help="comma-separated torch thread counts, each in its own process "
                         "(default on CPU: 1 and all cores; on CUDA: one run)")
    ap.add_argument("--chunks", default="1,2,4", help="chunk lengths to time (default 1,2,4)")
    ap.add_argument("--name", default=None, help="results file stem (default descent[_cuda])")
    ap.add_argument("--out-dir", default=str(Path(__file__).resolve().parent / "results"))
    ap.add_argument("--worker-threads", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker_threads is not None:
        Path(args.worker_out).write_text(json.dumps(worker(args)))
        return 0
    name = args.name or ("descent" if args.device == "cpu" else "descent_cuda")
    cores = os.cpu_count() or 1
    if args.threads:
        threads = [int(t) for t in args.threads.split(",")]
    else:
        threads = sorted({1, cores}) if args.device == "cpu" else [cores]
    results: dict = {"graph": GRAPH, "batch": args.batch, "step_size": args.step_size,
                     "steps": args.steps, "repeats": args.repeats, "device": args.device,
                     "default_chunk": DEFAULT_CHUNK, "chunks": args.chunks,
                     "machine": {"nproc": cores, "platform": platform.platform(),
                                 "processor": _cpu_model(), "torch": torch.__version__,
                                 "python": platform.python_version()},
                     "runs": {}}
    if args.device == "cuda":
        results["machine"]["gpu"] = torch.cuda.get_device_name()
    for t in threads:
        with tempfile.TemporaryDirectory() as tmp:
            env = dict(os.environ, OMP_NUM_THREADS=str(t), TORCHINDUCTOR_CACHE_DIR=tmp,
                       TORCHINDUCTOR_FX_GRAPH_CACHE="0", TORCHINDUCTOR_AUTOGRAD_CACHE="0")
            out = Path(tmp) / "run.json"
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker-threads", str(t),
                   "--worker-out", str(out), "--repeats", str(args.repeats), "--steps",
                   str(args.steps), "--batch", str(args.batch), "--step-size",
                   str(args.step_size), "--device", args.device, "--chunks", args.chunks]
            subprocess.run(cmd, env=env, check=True)
            run = json.loads(out.read_text())
        run["ratios"] = _ratios(run)
        results["runs"][str(t)] = run
        for k, v in run["ms_per_step_median"].items():
            print(f"[{t} threads] {k:<22} {v:8.3f} ms/step")
    results["hamux"] = next(iter(results["runs"].values())).get("hamux")
    headline = _headline(results)
    results["results"] = headline
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(results, indent=2))
    (out_dir / f"{name}.md").write_text(_markdown(results, argv))
    print(f"wrote {out_dir / (name + '.md')} and .json")
    for k, v in headline.items():
        print(f"RESULT {k} {v:.3f}" if v is not None else f"RESULT {k} unavailable")
    return 0


def _headline(results) -> dict:
    runs = results["runs"]
    most = runs[max(runs, key=int)]
    out = {"descent_fused_ratio_vs_hamux_loop": most["ratios"].get("fused_vs_hamux_loop"),
           "descent_fused_nostats_ratio_vs_hamux_loop":
               most["ratios"].get("fused_nostats_vs_hamux_loop")}
    for t, run in sorted(runs.items(), key=lambda kv: int(kv[0])):
        out[f"descent_step_ratio_vs_hamux_{t}t"] = run["ratios"].get("fused_nostats_vs_hamux_step")
    out["descent_warmup_s"] = most["warmup_s"][f"chunk={DEFAULT_CHUNK} +stats"]
    out["descent_warmup_nostats_s"] = most["warmup_s"][f"chunk={DEFAULT_CHUNK}"]
    out["torch_compile_first_call_s"] = most["first_compile_any_s"]
    return out


def _markdown(res, argv):
    m = res["machine"]
    args = list(argv if argv is not None else sys.argv[1:])
    if "--out-dir" in args:  # a folder of this machine: not part of the record
        i = args.index("--out-dir")
        del args[i:i + 2]
    cmd = "python benchmarks/descent.py " + " ".join(a for a in args
                                                     if not a.startswith("--out-dir="))
    lines = [f"# Energy descent: time per step ({res['device']})", "",
             f"Command: `{cmd.strip()}`  ",
             f"Machine: nproc={m['nproc']}, {m['processor']}, {m['platform']}, torch "
             f"{m['torch']}, Python {m['python']}" + (f", GPU {m['gpu']}" if "gpu" in m else "")
             + "  ",
             f"HAMUX: {res['hamux'] or 'NOT INSTALLED'}", "",
             f"Graph: {res['graph']}; batch {res['batch']}, step size {res['step_size']}, "
             f"{res['steps']} steps per timed run, {res['repeats']} interleaved repeats (order "
             f"rotated), medians in ms per step. `chunk=c`: `descend_compiled(chunk=c, "
             f"record=False)`; `+stats`: with `record=True` (every step's energy, per-term "
             f"energies and gradient norm, computed inside the compiled graph); default chunk "
             f"{res['default_chunk']}. Each thread count t ran in a fresh process pinned to t cores "
             f"(torch and JAX alike) with an empty inductor cache (warm-ups are cold "
             f"compiles).", ""]
    runs = res["runs"]
    keys = list(next(iter(runs.values()))["ms_per_step_median"])
    lines += ["| path | " + " | ".join(f"{t} thread{'s' if t != '1' else ''}" for t in runs)
              + " |", "|---|" + "---:|" * len(runs)]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(f"{r['ms_per_step_median'][k]:.3f}"
                                              for r in runs.values()) + " |")
    lines += ["", "| ratio | " + " | ".join(runs) + " |", "|---|" + "---:|" * len(runs)]
    for k in next(iter(runs.values()))["ratios"]:
        lines.append(f"| {k} | " + " | ".join(
            "—" if r["ratios"].get(k) is None else f"{r['ratios'][k]:.3f}"
            for r in runs.values()) + " |")
    lines += ["", "Warm-up (compile of each path's graphs, empty inductor cache), seconds: "
              + "; ".join(f"{t} threads: " + ", ".join(f"{k} {v}" for k, v in
                                                        r["warmup_s"].items())
                          for t, r in runs.items())
              + ". Before these, the first `torch.compile` of each process (a one-line "
                "function: inductor's one-time set-up, cold) took " + ", ".join(
                  f"{r['first_compile_any_s']} s ({t} threads)" for t, r in runs.items())
              + "; any use of `torch.compile` in a process pays it once.", "",
        "1-min load average at start / end: " + "; ".join(
            f"{t} threads {r['loadavg_1min_start']} / {r['loadavg_1min_end']}"
            for t, r in runs.items()), "",
        "Equivalence before timing (same weights, same start; max |difference|, float32):", ""]
    for t, r in runs.items():
        lines.append(f"- {t} threads: " + ", ".join(
            f"{k} {v:.2e}" for k, v in r["equivalence_max_abs_diff"].items()))
    fell = [r["compile_fallback"] for r in runs.values() if r["compile_fallback"]]
    if fell:
        lines += ["", f"**The compiled path fell back to eager**: {fell[0]}"]
    lines.append("")
    for k, v in res["results"].items():
        lines.append(f"RESULT {k} {v:.3f}" if v is not None else f"RESULT {k} unavailable")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
