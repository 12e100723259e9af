"""Derive the iMixer block from a hierarchical Hopfield energy (Ota & Taki, arXiv 2304.13061).

1. declare the three-layer token hierarchy x1 -> x2 -> x3 (plus the channel layer),
2. derive the block and print its update rules: x2 = (1 - F)^-1(y), solved by iteration,
3. check it against the published iMLP loop, written out by hand, forward and gradients,
4. check the inverse: applying (1 - F) to the solution gives back y,
5. run the tied version and plot its energy falling over the fixed-point iterations.

Run: ``python examples/derive_imixer.py [--smoke] [--out runs/derive_imixer]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch.nn import functional as F

import hopfield as hf
from hopfield import lagrangians as L
from hopfield import synapses as S
from hopfield.analysis import plot_record, record_block


def declare_imixer(tokens: int, dim: int, k: int) -> hf.DerivedBlock:
    """The hierarchical energy of one iMixer block, and the block derived from it."""
    # token width D/2 and feedback width 2 * D/2 (docs/concepts/fast_layers.md#imixer-published)
    di, dh = dim // 2, dim
    feedback = S.Dense(di, dh, axis=-2, tied=False)  # x2 <-> x3, on the token axis
    hf.dynamics.spectral_norm(feedback, "weight", coeff=0.9, n_power_iterations=8)
    hf.dynamics.spectral_norm(feedback, "weight_back", coeff=0.9, n_power_iterations=8)
    graph = hf.EnergyGraph(
        neurons={"x1": hf.NeuronLayer((tokens, dim), L.LayerNorm(dim)),  # visible, slow
                 "x2": hf.NeuronLayer((di, dim), L.GELU(), tau=0),  # fast
                 "x3": hf.NeuronLayer((dh, dim), L.GELU(), tau=0),  # fast, feeds back on x2
                 "h": hf.NeuronLayer((tokens, 4 * dim), L.GELU(), tau=0)},  # channel layer
        synapses={"token_in": S.Dense(tokens, di, axis=-2, tied=False),
                  "token_feedback": feedback,
                  "channel_mlp": S.Dense(dim, 4 * dim, tied=False)},
        edges={"token_in": ("x1", "x2"), "token_feedback": ("x2", "x3"),
               "channel_mlp": ("x1", "h")})
    groups = [hf.Group(["token_in", "token_feedback"], name="token mixing"),
              hf.Group(["channel_mlp"], name="channel mixing", lagrangian=L.LayerNorm(dim))]
    return hf.derive(graph, visible="x1", groups=groups, max_iter=k)


def published_token_update(block, x, k):
    """The published iMLP token update, written out by hand with the block's weights."""
    g = block.graph
    tin, tfb, ln = g.synapses["token_in"], g.synapses["token_feedback"], g.neurons["x1"].lagrangian
    with torch.nn.utils.parametrize.cached():
        t = F.layer_norm(x, (x.shape[-1],), ln.weight, ln.bias, ln.eps).transpose(1, 2)
        y = F.linear(t, tin.weight, tin.bias)  # fc1
        z = y
        for _ in range(k):  # z <- y + fc_sn2(act(fc_sn1(act(z))))
            z = F.linear(F.gelu(F.linear(F.gelu(z), tfb.weight, tfb.bias)),
                         tfb.weight_back, tfb.bias_back) + y
        return x + F.linear(F.gelu(z), tin.weight_back, tin.bias_back).transpose(1, 2)  # fc2


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Derive iMixer from its energy and plot energy descent.")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (a few seconds on CPU)")
    ap.add_argument("--k", type=int, default=4, help="fixed-point iterations (the paper's k)")
    ap.add_argument("--out", default="runs/derive_imixer", help="folder for the PNG/CSV")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    tokens, dim, batch = (16, 32, 4) if args.smoke else (49, 128, 16)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    block = declare_imixer(tokens, dim, args.k).double().eval()
    print(block.describe(), "\n")

    x = torch.randn(batch, tokens, dim, dtype=torch.float64, requires_grad=True)
    plan = block.plans[0]
    ours = block.group_step(plan, x, {})
    ref = published_token_update(block, x, args.k)
    (g_ours,) = torch.autograd.grad(ours.square().sum(), x)
    (g_ref,) = torch.autograd.grad(ref.square().sum(), x)
    fwd_err, grad_err = (ours - ref).abs().max().item(), (g_ours - g_ref).abs().max().item()
    print(f"derived token update vs published iMLP loop (k={args.k}, float64): "
          f"max |Δ| forward {fwd_err:.2e}, gradient {grad_err:.2e}")
    if fwd_err > 1e-10 or grad_err > 1e-10:
        raise SystemExit("mismatch with the published loop")

    solved = declare_imixer(tokens, dim, 200).double().eval()
    solved.load_state_dict(block.state_dict())
    solved.set_solve(solver="anderson", tol=1e-10)
    with torch.no_grad():
        z, y, stats = solved.solve_implicit(x)
        back = solved.residual_map(z, x)
    print(f"inverse: solved x2 = (1 - F)^-1(y) in {stats.nfev} evaluations (Anderson); "
          f"max |(1 - F)(x2) - y| = {(back - y).abs().max().item():.2e}\n")

    tied = hf.blocks.tied_imixer_block(tokens, dim, max_iter=args.k + 8).double().eval()
    with torch.no_grad():  # a strong, tied feedback so the iterations have work to do
        fb = tied.graph.synapses["token_feedback"]
        fb.parametrizations.weight.original.mul_(4.0)
        tied.graph.synapses["token_in"].bias.normal_()
    rec = record_block(tied, x.detach(), name="tied iMixer block")
    print(hf.lyapunov_report(tied))
    rise = rec.max_increase()
    print(f"tied block: largest energy increase between iterations {rise:.2e} (must be <= 0)")
    png = out / "energy_descent.png"
    plot_record(rec, png)
    rec.to_csv(out / "energy_descent.csv")
    print(f"wrote {png} and {out / 'energy_descent.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
