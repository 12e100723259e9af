"""Per-step logs (steps.jsonl), their exact resumption, TensorBoard, and `train --config`."""

import json

import pytest

from hopfield.cli import main
from hopfield.training import checkpoint as ckpt
from hopfield.training import train
from hopfield.training.steplog import read_steps

# 32 bundled images in batches of 8: 4 steps per epoch, a depth-1 width-16 model
TINY = dict(model="mixer_tiny", epochs=2, batch_size=8, max_train_samples=32,
            max_eval_samples=16, log_every=1, quiet=True, plot=False,
            model_kwargs={"depth": 1, "dim": 16})


def epoch_rows(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_steps_jsonl_every_log_every_beside_unchanged_metrics(tmp_path):
    result = train({**TINY, "epochs": 1, "log_every": 2}, out=str(tmp_path))
    steps = read_steps(tmp_path)
    assert [r["step"] for r in steps] == [2, 4] and {r["epoch"] for r in steps} == {1}
    assert all(set(r) == {"step", "epoch", "loss", "lr"} for r in steps)
    assert all(r["loss"] > 0 and 0 < r["lr"] <= 1e-3 for r in steps)
    rows = epoch_rows(tmp_path)  # metrics.jsonl: still one row per epoch, as its readers expect
    assert len(rows) == len(result.history) == 1
    assert rows[0]["epoch"] == 1 and rows[0]["step"] == 4 and "test_acc" in rows[0]


def test_resumed_run_logs_every_step_once_and_bitwise(tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    train(TINY, out=str(reference))
    run = tmp_path / "run"
    monkeypatch.setenv(ckpt.FAULT_ENV, "step@6:raise")  # epoch 2, after the epoch-1 checkpoint
    with pytest.raises(ckpt.FaultInjected):
        train(TINY, out=str(run))
    assert [r["step"] for r in read_steps(run)] == [1, 2, 3, 4, 5, 6]
    monkeypatch.delenv(ckpt.FAULT_ENV)
    train(TINY, out=str(run), resume="auto")
    assert [r["step"] for r in read_steps(run)] == list(range(1, 9))  # 5 and 6 logged once
    assert read_steps(run) == read_steps(reference)  # same losses and rates, to the bit


def test_overwrite_moves_the_step_log_into_the_backup(tmp_path):
    train({**TINY, "epochs": 1}, out=str(tmp_path))
    result = train({**TINY, "epochs": 1, "log_every": 4}, out=str(tmp_path), overwrite=True)
    assert len(read_steps(result.backup)) == 4 and len(read_steps(tmp_path)) == 1


def test_tensorboard_scalars_or_a_clear_error(tmp_path):
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"pip install hopfield\[tensorboard\]"):
            train({**TINY, "epochs": 1}, out=str(tmp_path), tensorboard=True)
        assert not (tmp_path / "steps.jsonl").exists()  # refused before any work
        return
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train({**TINY, "epochs": 1}, out=str(tmp_path), tensorboard=True)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert {"train/loss", "train/lr", "epoch/test_acc", "epoch/train_acc"} <= set(tags)
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2, 3, 4]


def test_cli_tensorboard_flag_and_config_file_end_to_end(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text('model = "mixer_tiny"\nepochs = 1\nbatch-size = 8\nmax_train_samples = 16\n'
                      'max_eval_samples = 8\nlog_every = 1\nplot = false\nquiet = true\n'
                      '[model_kwargs]\ndepth = 1\ndim = 16\n')
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--out", str(run)]) == 0
    assert [r["step"] for r in read_steps(run)] == [1, 2]
    saved = ckpt.load_checkpoint(run / "last.pt", map_location="cpu")
    assert saved["config"]["batch_size"] == 8 and saved["model_config"]["dim"] == 16
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        status = main(["train", "--config", str(config), "--out", str(tmp_path / "tb"),
                       "--tensorboard"])
        assert status == 1 and "pip install hopfield[tensorboard]" in capsys.readouterr().err
