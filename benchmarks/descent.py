"""Time per energy-descent step: hopfield eager vs hopfield compiled vs HAMUX 0.2.2 (JAX, jitted).

Graph: image (784, Identity) - hidden (512, ReLU) - label (10, Softmax), dense synapses
image-hidden and hidden-label without biases, every layer free to move (tau = 1), batch 256,
leaky step alpha = 0.1 (x <- x - alpha dE/dg = x + alpha (I - x)), 100 steps.

    python benchmarks/descent.py [--repeats 7] [--steps 100] [--device cpu|cuda]

HAMUX is a benchmark-only dependency (``pip install hamux==0.2.2 fastcore jax``); without it
the script says so in its results and prints no ratio. Before timing, both implementations take
one step (and then all steps) from the same state with the same weights and the differences are
printed. Timings interleave the three paths (rotating their order), and report medians.
Writes ``benchmarks/results/<name>.md`` and ``.json`` and ends with
``RESULT descent_time_ratio_vs_hamux <compiled / hamux>``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import hopfield as hf  # noqa: E402
from hopfield import lagrangians as L  # noqa: E402

SIZES = {"image": 784, "hidden": 512, "label": 10}


def build_graph():
    return hf.EnergyGraph(
        neurons={"image": hf.NeuronLayer(784, L.Identity()),
                 "hidden": hf.NeuronLayer(512, L.ReLU()),
                 "label": hf.NeuronLayer(10, L.Softmax())},
        synapses={"W1": hf.synapses.Dense(784, 512, bias=False),
                  "W2": hf.synapses.Dense(512, 10, bias=False)},
        edges={"W1": ("image", "hidden"), "W2": ("hidden", "label")})


# ---------------------------------------------------------------------- HAMUX side
def hamux_setup(graph, xs_np, alpha, steps):
    """The same energy in HAMUX: returns (one_step, run_steps, to_numpy, xs0) or raises ImportError."""
    import equinox as eqx
    import hamux as hmx
    import jax
    import jax.numpy as jnp

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
    def run_loop(ham, xs):  # the whole loop in one XLA program (extra reference)
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


# ---------------------------------------------------------------------- timing
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--step-size", type=float, default=0.1)
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--modes", default=None,
                    help="comma-separated torch.compile modes to time (default: 'default' on CPU, "
                         "'default,reduce-overhead' on CUDA); the ratio uses the first")
    ap.add_argument("--name", default=None, help="results file stem (default descent[_cuda])")
    ap.add_argument("--out-dir", default=str(Path(__file__).resolve().parent / "results"))
    args = ap.parse_args(argv)
    name = args.name or ("descent" if args.device == "cpu" else "descent_cuda")
    dev = torch.device(args.device)
    torch.manual_seed(0)
    graph = build_graph().to(dev)
    xs = graph.init_states(args.batch, std=1.0, device=dev)
    xs_np = {k: v.cpu().numpy() for k, v in xs.items()}
    alpha, steps = args.step_size, args.steps
    results: dict = {"graph": "image(784, Identity) - hidden(512, ReLU) - label(10, Softmax), "
                              "Dense W1, W2 without bias, all layers tau=1",
                     "batch": args.batch, "step_size": alpha, "steps": steps,
                     "repeats": args.repeats, "device": args.device,
                     "machine": {"nproc": os.cpu_count(), "platform": platform.platform(),
                                 "processor": _cpu_model(),
                                 "torch": torch.__version__,
                                 "torch_threads": torch.get_num_threads(),
                                 "python": platform.python_version(),
                                 "loadavg_1min_start": _loadavg()}}
    if args.device == "cuda":
        results["machine"]["gpu"] = torch.cuda.get_device_name()

    def eager(n):
        out, _ = hf.dynamics.descend(graph, xs, steps=n, step_size=alpha, record=False)
        _sync(args.device)
        return out

    modes = (args.modes or ("default" if args.device == "cpu" else "default,reduce-overhead"))
    modes = [m.strip() for m in modes.split(",") if m.strip()]
    results["compile_modes"] = modes

    def compiled(n, mode=modes[0]):
        out, _ = hf.dynamics.descend_compiled(graph, xs, steps=n, step_size=alpha, record=False,
                                              mode=None if mode == "default" else mode)
        _sync(args.device)
        return out

    torch.set_grad_enabled(False)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for m in modes:
            compiled(1, m)
    results["compile_s"] = round(time.perf_counter() - t0, 2)
    fell_back = [str(w.message) for w in caught
                 if issubclass(w.category, hf.dynamics.CompileFallbackWarning)]
    results["compile_fallback"] = fell_back[0] if fell_back else None
    print(f"torch.compile warm-up: {results['compile_s']} s"
          + (f" (FELL BACK TO EAGER: {fell_back[0]})" if fell_back else ""))

    # ---- equivalence: one step, then all steps, from the same state with the same weights
    e1, c1 = eager(1), compiled(1)
    diffs = {"eager_vs_compiled_1step": max(float((e1[k] - c1[k]).abs().max()) for k in e1)}
    try:
        run_steps, run_fused, to_np, xh0, versions = hamux_setup(graph, xs_np, alpha, steps)
        results["hamux"] = versions
    except ImportError as err:
        run_steps = None
        results["hamux"] = None
        results["hamux_missing"] = (f"HAMUX is not installed ({err}); install it with "
                                    f"`pip install hamux==0.2.2 fastcore jax` to compare.")
        print("HAMUX MISSING:", results["hamux_missing"])
    if run_steps is not None:
        h1 = to_np(run_steps(xh0, 1))
        diffs["hamux_vs_eager_1step"] = max(float(np.abs(h1[k] - e1[k].cpu().numpy()).max())
                                            for k in h1)
        hn = to_np(run_steps(xh0, steps))
        en = eager(steps)
        diffs[f"hamux_vs_eager_{steps}steps"] = max(
            float(np.abs(hn[k] - en[k].cpu().numpy()).max()) for k in hn)
        run_fused(xh0)  # compile the fused loop
    cn = compiled(steps)
    en = eager(steps)
    diffs[f"eager_vs_compiled_{steps}steps"] = max(float((en[k] - cn[k]).abs().max()) for k in en)
    for m in modes[1:]:
        cm = compiled(steps, m)
        diffs[f"eager_vs_compiled[{m}]_{steps}steps"] = max(
            float((en[k] - cm[k]).abs().max()) for k in en)
    scale = max(float(v.abs().max()) for v in e1.values())
    diffs["state_scale_max_abs"] = scale
    results["equivalence_max_abs_diff"] = diffs
    print("equivalence (max |difference| over all layers; float32):")
    for k, v in diffs.items():
        print(f"  {k:<40} {v:.3e}")

    # ---- timing: interleaved, rotating order, medians
    paths = {"hopfield eager (descend)": lambda: eager(steps),
             "hopfield compiled (descend_compiled)": lambda: compiled(steps)}
    for m in modes[1:]:
        paths[f"hopfield compiled, mode={m}"] = lambda m=m: compiled(steps, m)
    if run_steps is not None:
        paths["HAMUX 0.2.2 jitted step (JAX)"] = lambda: run_steps(xh0, steps)
        paths["HAMUX, whole loop in one jit (extra reference)"] = lambda: run_fused(xh0)
    for f in paths.values():  # warm-up
        f()
    times: dict = {k: [] for k in paths}
    keys = list(paths)
    for r in range(args.repeats):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for k in order:
            t = time.perf_counter()
            paths[k]()
            times[k].append((time.perf_counter() - t) / steps * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    results["ms_per_step_median"] = med
    results["ms_per_step_all"] = times
    ratio = None
    if run_steps is not None:
        ratio = med["hopfield compiled (descend_compiled)"] / med["HAMUX 0.2.2 jitted step (JAX)"]
    results["descent_time_ratio_vs_hamux"] = ratio
    results["machine"]["loadavg_1min_end"] = _loadavg()

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(results, indent=2))
    (out_dir / f"{name}.md").write_text(_markdown(results, med, times, diffs, ratio, argv))
    for k in keys:
        print(f"{k:<50} {med[k]:8.3f} ms/step (median of {args.repeats})")
    print(f"wrote {out_dir / (name + '.md')} and .json")
    print(f"RESULT descent_time_ratio_vs_hamux {ratio:.3f}" if ratio is not None else
          "RESULT descent_time_ratio_vs_hamux unavailable (HAMUX not installed)")
    return 0


def _markdown(res, med, times, diffs, ratio, argv):
    m = res["machine"]
    cmd = "python benchmarks/descent.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"# Energy descent: time per step ({res['device']})", "",
             f"Command: `{cmd.strip()}`  ",
             f"Machine: nproc={m['nproc']}, {m['processor']}, {m['platform']}, torch "
             f"{m['torch']} ({m['torch_threads']} threads), Python {m['python']}"
             + (f", GPU {m['gpu']}" if "gpu" in m else "")
             + f"; 1-min load average {m['loadavg_1min_start']} at start, "
               f"{m['loadavg_1min_end']} at end  ",
             f"HAMUX: {res['hamux'] or 'NOT INSTALLED — ' + res.get('hamux_missing', '')}", "",
             f"Graph: {res['graph']}; batch {res['batch']}, step size {res['step_size']}, "
             f"{res['steps']} steps per timed run, {res['repeats']} interleaved repeats (order "
             f"rotated), medians. torch.compile warm-up {res['compile_s']} s"
             + (f"; **compiled path fell back to eager**: {res['compile_fallback']}"
                if res["compile_fallback"] else "") + ".", "",
             "| path | median ms/step | min | max |", "|---|---:|---:|---:|"]
    for k, v in med.items():
        lines.append(f"| {k} | {v:.3f} | {min(times[k]):.3f} | {max(times[k]):.3f} |")
    lines += ["", "Equivalence before timing (same weights, same start; max |difference|, float32):",
              ""]
    lines += [f"- {k}: {v:.3e}" for k, v in diffs.items()]
    lines += ["", "The ratio compares the compiled hopfield step with HAMUX's jitted step (both "
                  "a Python loop over one compiled step). The fused-loop row is for reference. "
                  "On a shared machine check the load averages above: under CPU contention "
                  "torch's OpenMP matrix products slow down far more than XLA's thread pool "
                  "(seen up to 10x on a 2-core box), so compare runs made at low load.", ""]
    lines.append(f"RESULT descent_time_ratio_vs_hamux {ratio:.3f}" if ratio is not None else
                 "RESULT descent_time_ratio_vs_hamux unavailable (HAMUX not installed)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
