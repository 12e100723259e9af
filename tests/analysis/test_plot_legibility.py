"""Figures keep the data visible: own y-scales per block, term changes instead of stacked levels,
and no legend entry for a series that cannot be seen or that duplicates another."""

import matplotlib
import numpy as np
import torch

import hopfield as hf
from hopfield.analysis.plot import plot_record, term_changes
from hopfield.analysis.record import record_block, record_model

matplotlib.use("Agg")


def _legend_labels(fig):
    out = []
    for leg in [ax.get_legend() for ax in fig.get_axes()] + list(fig.legends) + [
            leg for sub in getattr(fig, "subfigs", []) for leg in sub.legends]:
        if leg is not None:
            out += [t.get_text() for t in leg.get_texts()]
    return out


def _assert_every_legend_entry_visible(fig):
    """Each legend handle draws something: a line with finite, non-constant-zero data or a
    bar/patch; and no two lines of one axes carry the same data."""
    for ax in fig.get_axes():
        lines = [ln for ln in ax.get_lines() if not ln.get_label().startswith("_")]
        for ln in lines:
            y = np.asarray(ln.get_ydata(), float)
            assert np.isfinite(y).any(), ln.get_label()
        for i, a in enumerate(lines):
            for b in lines[i + 1:]:
                ya, yb = np.asarray(a.get_ydata(), float), np.asarray(b.get_ydata(), float)
                same = ya.shape == yb.shape and np.allclose(ya, yb, equal_nan=True)
                assert not same, (a.get_label(), b.get_label())


def _tied_record():
    torch.manual_seed(0)
    blk = hf.blocks.tied_imixer_block(8, 8, max_iter=6)
    return record_block(blk, torch.randn(6, 8, 8), name="tied iMixer")


def test_single_block_legend_has_no_invisible_or_identical_series(tmp_path):
    rec = _tied_record()
    s = rec.series(0, "token mixing (iMLP)")
    assert np.allclose(np.nanmean(s["grad_norm"], 1), np.nanmean(s["residual"], 1))
    fig = plot_record(rec, tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 20_000
    labels = _legend_labels(fig)
    assert not any(lab.endswith(": ‖∂E/∂g‖") for lab in labels)  # identical to the residual
    assert any("= ‖∂E/∂g‖" in lab for lab in labels)
    assert "x" not in labels  # the clamped visible layer's term never changes
    terms_ax = next(ax for ax in fig.get_axes() if ax.get_title().startswith("per-term"))
    assert "unchanged, not drawn: x" in terms_ax.get_title()
    _assert_every_legend_entry_visible(fig)
    matplotlib.pyplot.close(fig)


def test_term_changes_sum_to_the_energy_change():
    rec = _tied_record()
    _, d, total = term_changes(rec, 0)
    assert np.allclose(sum(d.values()), total, atol=1e-6 * max(1.0, np.abs(total).max()))


def test_grid_panels_have_their_own_scale_and_the_short_step_its_own_row(tmp_path):
    torch.manual_seed(0)
    model = hf.models.create_model("imixer_tied_tiny", depth=2, dim=16)
    rec = record_model(model, torch.randn(4, 1, 28, 28), n_iter=6)
    fig = plot_record(rec, tmp_path / "grid.png")
    for b in range(2):
        main = next(ax for ax in fig.get_axes() if ax.get_title() == f"blocks.{b}: token mixing "
                    "(iMLP)")
        step = rec.series(b, "channel mixing")
        solve = rec.series(b, "token mixing (iMLP)")
        lo, hi = main.get_ylim()
        d_solve = np.nanmean(solve["energy"] - solve["energy"][:1], 1)
        assert lo <= d_solve.min() and (hi - lo) < 3 * (np.ptp(d_solve) + 1e-12) + 1e-9
        assert any(ax.get_title() == f"blocks.{b}: channel mixing" for ax in fig.get_axes())
        assert len(step["step"]) == 2
    assert "x" not in _legend_labels(fig)
    _assert_every_legend_entry_visible(fig)
    matplotlib.pyplot.close(fig)
