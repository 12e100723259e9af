"""The recall figure: per query a row of images (query, states on the way, recalled, stored) and,
beside it, that query's energy curve."""

from __future__ import annotations

from pathlib import Path

import torch

from .images import IMAGE_SIDE

__all__ = ["recall_figure"]


def _frames(records: int, between: int) -> list[int]:
    """``between`` record indices spread strictly between the first and the last record."""
    inner = list(range(1, records - 1))
    if len(inner) <= between:
        return inner
    return [inner[round(j * (len(inner) - 1) / (between - 1))] for j in range(between)] \
        if between > 1 else [inner[len(inner) // 2]]


def recall_figure(path: str | Path, queries: torch.Tensor, history: torch.Tensor,
                  energy: torch.Tensor, targets: torch.Tensor, *, title: str = "",
                  step_label: str = "step", records_per_step: int = 1, between: int = 3) -> None:
    """Write the figure to ``path``.

    Args:
        queries: ``(rows, 784)`` start images; ``targets``: the stored images they came from.
        history: ``(records, rows, 784)`` visible activations (``keep_history=True``).
        energy: ``(records, rows)`` energies from the same recall.
        step_label: what one unit of the energy axis is (``"sweep"`` or ``"step"``);
            ``records_per_step``: records per unit.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, records = queries.shape[0], history.shape[0]
    frames = _frames(records, between)
    cols = 3 + len(frames)
    fig = plt.figure(figsize=(1.25 * cols + 3.2, 1.35 * rows + 0.6))
    grid = fig.add_gridspec(rows, cols + 1, width_ratios=[1] * cols + [2.6], wspace=0.08,
                            hspace=0.25)
    side = IMAGE_SIDE
    x_axis = torch.arange(records, dtype=torch.float64) / records_per_step
    for r in range(rows):
        images = [("query", queries[r])]
        images += [(f"{step_label} {x_axis[f]:.3g}", history[f, r]) for f in frames]
        images += [("recalled", history[-1, r]), ("stored", targets[r])]
        for c, (label, img) in enumerate(images):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(img.reshape(side, side).float().numpy(), cmap="gray", vmin=-1, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=7)
        ax = fig.add_subplot(grid[r, cols])
        ax.plot(x_axis.numpy(), energy[:, r].double().numpy(), marker=".", ms=3)
        ax.tick_params(labelsize=6)
        ax.yaxis.set_label_position("right")
        ax.yaxis.tick_right()
        if r == 0:
            ax.set_title("energy", fontsize=7)
        if r == rows - 1:
            ax.set_xlabel(step_label + "s", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
