"""Learning-curve and confusion figures (hopfield.training.trainutil): whole-epoch ticks, the
learning rate per step when the schedule is known, no invented line when it is not."""

import math

import numpy as np

from hopfield.training.trainutil import lr_per_step, write_confusion, write_curves

PNG = b"\x89PNG\r\n\x1a\n"
SCHEDULE = {"lr": 2e-3, "min_lr": 1e-5, "warmup_epochs": 1.0, "epochs": 4}


def _history(n, spe=10):
    return [{"epoch": e, "step": spe * e, "lr": 1e-3, "train_loss": 1 / e, "train_acc": 1 - 0.3 / e,
             "test_loss": 1.1 / e, "test_acc": 1 - 0.4 / e} for e in range(1, n + 1)]


def test_one_epoch_sits_on_whole_epoch_ticks(tmp_path):
    fig = write_curves(_history(1), tmp_path / "c.png", "one epoch")
    assert (tmp_path / "c.png").read_bytes().startswith(PNG)
    for ax in fig.get_axes():
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks


def test_without_schedule_lr_is_markers_only(tmp_path):
    fig = write_curves(_history(3), tmp_path / "c.png")
    ax_lr = fig.get_axes()[2]
    (line,) = ax_lr.get_lines()
    assert line.get_linestyle() == "None" and line.get_marker() == "o"
    assert "end of epoch" in ax_lr.get_ylabel()


def test_schedule_gives_warmup_and_cosine_per_step(tmp_path):
    hist = _history(4)
    xs, lrs = lr_per_step(hist, SCHEDULE)
    assert len(lrs) == 40 and xs[0] == 0 and math.isclose(xs[-1], 3.9)
    peak = int(np.argmax(lrs))
    assert peak == 9 and math.isclose(lrs[peak], 2e-3)  # linear warm-up over the first epoch
    assert np.all(np.diff(lrs[:10]) > 0) and np.all(np.diff(lrs[10:]) < 0)  # then cosine decay
    fig = write_curves(hist, tmp_path / "c.png", schedule=SCHEDULE)
    ax_lr = fig.get_axes()[2]
    per_step = [ln for ln in ax_lr.get_lines() if ln.get_label() == "per step"]
    assert len(per_step) == 1 and len(per_step[0].get_xdata()) == 40
    assert "per step" in ax_lr.get_ylabel()
    assert lr_per_step(hist, {"lr": 1e-3}) is None  # an incomplete schedule draws nothing


def test_confusion_png(tmp_path):
    write_confusion([[5, 1], [0, 4]], ["a", "b"], tmp_path / "m.png", title="t")
    assert (tmp_path / "m.png").read_bytes().startswith(PNG)
