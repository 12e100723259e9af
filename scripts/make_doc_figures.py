"""Make the figures of the documentation site (docs/figures/*.png) from the library itself.

    .venv/bin/python scripts/make_doc_figures.py            # writes docs/figures/
    .venv/bin/python scripts/make_doc_figures.py --out DIR  # somewhere else

Every curve is computed with ``hopfield``: Lagrangians and their derivatives by autograd from
``hopfield.lagrangians``, the iMixer energy with ``hopfield.analysis.record_block`` on a derived
block. Seeded and CPU-only; runs in a few seconds. Each PNG stays well under 150 KB.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

import hopfield as hf  # noqa: E402
from hopfield import lagrangians as L  # noqa: E402
from hopfield.analysis import record_block  # noqa: E402

DPI = 110
ROOT = Path(__file__).resolve().parents[1]


def _derivatives(lag: L.Lagrangian, x: torch.Tensor):
    """L(x), L'(x) and L''(x) of an elementwise Lagrangian, per point, by autograd."""
    x = x.detach().clone().requires_grad_(True)
    col = x[:, None]  # one sample per point: L returns one value per sample
    value = lag(col)
    (g,) = torch.autograd.grad(value.sum(), x, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), x)
    return value.detach().numpy(), g.detach().numpy(), h.detach().numpy()


def lagrangians_figure(path: Path) -> None:
    """Lagrangians, activations and curvatures; GELU's negative-curvature region shaded."""
    x = torch.linspace(-4, 3, 401, dtype=torch.float64)
    curves = [("identity  ½x²", L.Identity(), "C0"), ("ReLU  ½relu(x)²", L.ReLU(), "C1"),
              ("tanh  log cosh x", L.Tanh(), "C2"), ("sigmoid  softplus(x)", L.Sigmoid(), "C4"),
              ("GELU  ∫GELU", L.GELU(), "C3")]
    fig, axes = plt.subplots(1, 3, figsize=(10.5, 3.3), constrained_layout=True)
    titles = ["Lagrangian $L(x)$", "activation $g = L'(x)$", "curvature $L''(x)$"]
    for label, lag, color in curves:
        vals = _derivatives(lag, x)
        for ax, v in zip(axes, vals, strict=True):
            ax.plot(x.numpy(), v, color=color, lw=1.6, label=label)
    xs = x.numpy()
    _, _, h_gelu = _derivatives(L.GELU(), x)
    for ax, title in zip(axes, titles, strict=True):
        ax.axvspan(xs[0], xs[h_gelu < 0].max(), color="C3", alpha=0.08, lw=0)
        ax.axhline(0, color="0.6", lw=0.6)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("$x$")
    axes[0].set_ylim(-0.5, 4.5)
    axes[1].set_ylim(-1.2, 3.0)
    axes[2].set_ylim(-0.25, 1.25)
    axes[2].annotate("GELU: $L'' < 0$ for $x < -0.75$\n(non-convex)", xy=(-2.0, -0.1),
                     xytext=(-3.9, 0.55), fontsize=8, color="C3",
                     arrowprops=dict(arrowstyle="->", color="C3", lw=0.8))
    axes[1].legend(fontsize=7.5, loc="upper left", frameon=False)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def _box(ax, xy, w, h, title, body, color, dashed=False):
    ax.add_patch(FancyBboxPatch(xy, w, h, boxstyle="round,pad=0.02,rounding_size=0.06",
                                fc=color, ec="0.25", lw=1.0, ls="--" if dashed else "-"))
    cx, cy = xy[0] + w / 2, xy[1] + h / 2
    ax.text(cx, cy + 0.13, title, ha="center", va="center", fontsize=10.5, weight="bold")
    ax.text(cx, cy - 0.13, body, ha="center", va="center", fontsize=8)


def _arrow(ax, a, b, label, *, rad=0.0, color="0.2", offset=(0, 0.12)):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=11, lw=1.1, color=color,
                                 connectionstyle=f"arc3,rad={rad}"))
    mx, my = (a[0] + b[0]) / 2 + offset[0], (a[1] + b[1]) / 2 + offset[1]
    ax.text(mx, my, label, ha="center", va="center", fontsize=8.5, color=color)


def hierarchy_figure(path: Path) -> None:
    """The iMixer token group: visible x1, fast x2, fast x3; the implicit fast group boxed."""
    fig, ax = plt.subplots(figsize=(9.0, 3.4))
    ax.set_xlim(0, 9.0)
    ax.set_ylim(0, 3.4)
    ax.axis("off")
    ax.add_patch(FancyBboxPatch((3.15, 0.95), 5.6, 1.75, boxstyle="round,pad=0.02,rounding_size=0.1",
                                fc="#fff4e0", ec="#d08a00", lw=1.0, ls="--"))
    ax.text(5.95, 2.95, "implicit fast group (τ = 0): x₂ = (1 − F)⁻¹(y)", ha="center",
            fontsize=9.5, color="#a06000")
    _box(ax, (0.25, 1.15), 2.2, 1.35, "x₁  visible", "N × D, layer norm\nslow (τ > 0)", "#dde8f7")
    _box(ax, (3.55, 1.15), 2.0, 1.35, "x₂  fast", "Dᵢ × D, σ\n(token axis)", "#fde3c8")
    _box(ax, (6.45, 1.15), 2.0, 1.35, "x₃  fast", "D_h × D, σ\n(token axis)", "#fde3c8")
    _arrow(ax, (2.45, 2.1), (3.55, 2.1), "W₂₁ (y)", offset=(0, 0.14))
    _arrow(ax, (3.55, 1.55), (2.45, 1.55), "W₁₂ (current)", offset=(0, -0.16))
    _arrow(ax, (5.55, 2.1), (6.45, 2.1), "W₃₂", offset=(0, 0.14))
    _arrow(ax, (6.45, 1.55), (5.55, 1.55), "W₂₃", offset=(0, -0.16))
    ax.text(7.45, 0.62, "F(z) = W₂₃ σ(W₃₂ σ(z) + b₃₂) + b₂₃\nspectral norm c = 0.9 on W₃₂, W₂₃",
            ha="center", fontsize=8, color="0.25")
    ax.text(1.35, 0.62, "one residual step:\nx₁ ← x₁ + W₁₂ σ(x₂) + b₁₂", ha="center", fontsize=8,
            color="0.25")
    ax.text(4.55, 0.42, "k plain iterations from x₂ = y   (k = 0: the MLP-Mixer token MLP)",
            ha="center", fontsize=8, color="0.25")
    fig.savefig(path, dpi=DPI, bbox_inches="tight", pad_inches=0.05)
    plt.close(fig)


def tied_imixer(num_tokens=16, dim=8, max_iter=15, seed=0):
    """A tied ReLU iMixer block whose feedback sits at the spectral-norm cap (a slow contraction)."""
    torch.manual_seed(seed)
    block = hf.blocks.tied_imixer_block(num_tokens=num_tokens, dim=dim, max_iter=max_iter).double()
    with torch.no_grad():
        for name, p in block.named_parameters():
            if "bias" in name:
                p.add_(0.5 * torch.randn_like(p))
        # a large raw weight: the soft spectral norm rescales it to sigma_max = c = 0.9
        block.graph.synapses["token_feedback"].parametrizations.weight.original.mul_(10.0)
    x = torch.randn(4, num_tokens, dim, dtype=torch.float64)
    block.train()
    with torch.no_grad():
        block(x)  # power iteration: estimate sigma_max before switching to eval mode
    return block.eval(), x


def energy_figure(path: Path) -> None:
    """Energy of a tied iMixer token group over fixed-point iterations (never rises)."""
    block, x = tied_imixer()
    rec = record_block(block, x)
    group = rec.groups(0)[0]
    s = rec.series(0, group)
    assert rec.max_increase(0, group) <= 1e-9, "tied convex group energy rose"
    e, r, k = s["energy"], s["residual"], s["step"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(9.0, 3.2), constrained_layout=True)
    for i in range(e.shape[1]):
        a1.plot(k, e[:, i] - e[0, i], "o-", ms=3, lw=1.2, label=f"sample {i}")
        a2.semilogy(k, r[:, i], "o-", ms=3, lw=1.2)
    a1.set_title("token-group energy $E_k - E_0$ (tied, ReLU)", fontsize=10)
    a1.set_xlabel("fixed-point iteration $k$")
    a1.legend(fontsize=7.5, frameon=False)
    lip = 0.81
    a2.semilogy(k, r[0].max() * lip ** k, "k--", lw=0.8, label=r"$0.81^k$ (bound on Lip $F$)")
    a2.set_title(r"residual $\Vert x_2 - (y + F(x_2))\Vert$", fontsize=10)
    a2.set_xlabel("fixed-point iteration $k$")
    a2.legend(fontsize=7.5, frameon=False)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def k_figure(path: Path) -> None:
    """Distance of the k-iteration block from the solved (Anderson, tol 1e-10) block, vs k."""
    torch.manual_seed(1)
    n, d = 16, 8
    solved = hf.blocks.imixer_block(n, d, solver="anderson", tol=1e-10, max_iter=200).double()
    x = torch.randn(8, n, d, dtype=torch.float64)
    solved.train()
    with torch.no_grad():
        solved(x)
    solved.eval()
    with torch.no_grad():
        ref = solved(x)
        ks = list(range(0, 9))
        err = []
        for k in ks:
            blk = hf.blocks.imixer_block(n, d, max_iter=k).double()
            blk.load_state_dict(solved.state_dict())
            blk.eval()
            err.append(float((blk(x) - ref).norm() / (ref - x).norm()))
    fig, ax = plt.subplots(figsize=(4.8, 3.1), constrained_layout=True)
    ax.semilogy(ks, err, "o-", color="C3", lw=1.4, ms=4)
    ax.annotate("k = 0: MLP-Mixer", xy=(0, err[0]), xytext=(1.2, err[0]), fontsize=8.5,
                va="center", arrowprops=dict(arrowstyle="->", lw=0.8))
    ax.set_xlabel("plain iterations $k$")
    ax.set_ylabel("relative error of the block update")
    ax.set_title("iMixer block (GELU, untied) vs its solved fixed point", fontsize=9.5)
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


FIGURES = {"lagrangians.png": lagrangians_figure, "imixer_hierarchy.png": hierarchy_figure,
           "imixer_energy.png": energy_figure, "imixer_k.png": k_figure}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "figures")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in FIGURES.items():
        path = args.out / name
        make(path)
        print(f"{path}  {path.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
