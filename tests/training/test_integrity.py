"""Nothing lost, nothing silent: run folders, labels, checksums, hostile files, numbers, NaN."""

import gzip
import io
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from test_data import write_cifar10, write_idx, write_idx_set  # the same directory

from hopfield.cli import main
from hopfield.integrity import (
    ChecksumMismatchError,
    NoChecksumWarning,
    NonFiniteWeightsError,
    json_safe,
    weights_checksum,
)
from hopfield.training import NonFiniteLossError, TrainConfig, Trainer, train
from hopfield.training import checkpoint as ckpt
from hopfield.training.data import DatasetFormatError, load_dataset, read_cifar
from hopfield.training.safety import RunExistsError

ONE = dict(model="mixer_tiny", epochs=1, batch_size=8, max_train_samples=16, max_eval_samples=8,
           quiet=True, plot=False, model_kwargs={"depth": 1, "dim": 32})


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A finished one-epoch run."""
    return train(ONE, out=str(tmp_path_factory.mktemp("run")))


def small_trainer(tmp_path, model="mixer_tiny"):
    return Trainer(TrainConfig(**{**ONE, "model": model, "max_train_samples": 4,
                                  "batch_size": 4}, out=str(tmp_path)))


# ---------------------------------------------------------------------------- data loss
def test_second_run_into_a_finished_run_is_refused_and_names_the_ways_out(run):
    before = (run.out_dir / "last.pt").read_bytes()
    with pytest.raises(RunExistsError, match=r"already holds a run \(last.pt, model.safetensors"
                                             r".*--resume.*another --out.*--overwrite"):
        train(ONE, out=str(run.out_dir))
    assert (run.out_dir / "last.pt").read_bytes() == before


def test_overwrite_moves_the_old_run_into_a_backup(run, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    for name in ("last.pt", "model.safetensors", "metrics.jsonl"):
        (out / name).write_bytes((run.out_dir / name).read_bytes())
    result = train(ONE, out=str(out), overwrite=True)
    assert result.backup is not None and result.backup.parent == out
    assert result.backup.name.startswith("backup-")
    for name in ("last.pt", "model.safetensors", "metrics.jsonl"):
        assert (result.backup / name).read_bytes() == (run.out_dir / name).read_bytes()
    assert ckpt.load_checkpoint(out / "last.pt")["format"] == ckpt.FORMAT


def test_cli_overwrite_flag_and_refusal_exit_status(run, capsys):
    argv = ["train", "--model", "mixer_tiny", "--depth", "1", "--dim", "32", "--epochs", "1",
            "--max-train-samples", "8", "--max-eval-samples", "8", "--quiet", "--no-plot",
            "--out", str(run.out_dir)]
    assert main(argv) == 2
    assert "--overwrite" in capsys.readouterr().err


# ---------------------------------------------------------------------------- labels
def test_out_of_range_train_label_names_the_file(tmp_path, monkeypatch):
    write_idx_set(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.r_[np.arange(11) % 10, 10].astype(np.uint8))
    with pytest.raises(DatasetFormatError, match=r"train-labels-idx1-ubyte: 1 label\(s\) "
                                                 r"outside 0..9 \(found 0..10\)"):
        load_dataset("mnist", "train", tmp_path)


def test_out_of_range_test_label_stops_before_the_first_step(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    write_idx_set(tmp_path / "data")
    write_idx(tmp_path / "data" / "t10k-labels-idx1-ubyte", np.array([0, 1, 2, 3, 4, 99], np.uint8))
    with pytest.raises(DatasetFormatError, match=r"t10k-labels-idx1-ubyte: 1 label"):
        Trainer(TrainConfig(**{**ONE, "dataset": "mnist"}, data_dir=str(tmp_path / "data"),
                            out=str(tmp_path / "run")))
    assert not (tmp_path / "run" / "last.pt").exists()


def test_cifar_label_errors_name_the_file_and_missing_names_are_refused(tmp_path):
    write_cifar10(tmp_path)
    d = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 12]}
    pickle.dump(d, open(tmp_path / "test_batch", "wb"))
    with pytest.raises(DatasetFormatError, match=r"test_batch: 1 label\(s\) outside 0..9"):
        read_cifar(tmp_path, "test")
    pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]},
                open(tmp_path / "test_batch", "wb"))
    pickle.dump({b"num_cases_per_batch": 4}, open(tmp_path / "batches.meta", "wb"))
    with pytest.raises(DatasetFormatError, match=r"batches.meta: expected 'label_names' with 10"):
        read_cifar(tmp_path, "test")


@pytest.mark.parametrize("protocol", [2, 5])
def test_cifar_pickles_of_every_protocol_load(tmp_path, protocol):
    write_cifar10(tmp_path)
    data = np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072)
    pickle.dump({b"data": data, b"labels": [np.int64(3), 4]}, open(tmp_path / "test_batch", "wb"),
                protocol=protocol)
    images, labels, _ = read_cifar(tmp_path, "test")
    assert np.array_equal(images.reshape(2, -1), data) and list(labels) == [3, 4]


def test_gzip_with_a_corrupt_deflate_stream_names_the_file(tmp_path):
    raw = bytearray(gzip.compress(bytes(4 + 4 + 100), compresslevel=1))
    raw[12:20] = b"\xff" * 8
    (tmp_path / "x.gz").write_bytes(bytes(raw))
    from hopfield.training.data import read_idx

    with pytest.raises(DatasetFormatError, match=r"x.gz: cannot read the file"):
        read_idx(tmp_path / "x.gz")


# ---------------------------------------------------------------------------- weights
def _flip_inside(path, tensor):
    """Flip one bit inside ``tensor``'s bytes as stored in ``path``."""
    raw, needle = bytearray(path.read_bytes()), tensor.contiguous().numpy().tobytes()[:64]
    at = bytes(raw).index(needle)
    raw[at + 3] ^= 0x10
    path.write_bytes(bytes(raw))


def test_a_flipped_bit_is_refused_in_checkpoints_and_exports(run, tmp_path):
    state = ckpt.load_checkpoint(run.out_dir / "last.pt")
    assert state["checksums"]["model"] == weights_checksum(state["model"])
    weight = state["model"]["head.weight"]
    for name, loader in (("last.pt", ckpt.load_checkpoint), ("model.safetensors",
                                                              ckpt.load_safetensors)):
        copy = tmp_path / name
        copy.write_bytes((run.out_dir / name).read_bytes())
        _flip_inside(copy, weight)
        with pytest.raises(ChecksumMismatchError, match=rf"{name}.*do not match the checksum"):
            loader(copy)


def test_nan_weights_are_refused_unless_asked_for(run, tmp_path):
    state = ckpt.load_checkpoint(run.out_dir / "last.pt")
    state["model"]["head.weight"][0, 0] = float("nan")
    ckpt.save_checkpoint(tmp_path / "last.pt", state)
    with pytest.raises(NonFiniteWeightsError, match=r"head.weight.*allow_nonfinite=True"):
        ckpt.load_checkpoint(tmp_path / "last.pt")
    assert ckpt.load_checkpoint(tmp_path / "last.pt", allow_nonfinite=True)["global_step"] == 2
    with pytest.raises(NonFiniteWeightsError):  # resuming it is refused too
        train(ONE, out=str(tmp_path), resume="auto")
    model = torch.nn.Linear(2, 2)
    with torch.no_grad():
        model.weight.fill_(float("inf"))
    with pytest.raises(NonFiniteWeightsError, match=r"not exporting"):
        ckpt.export_safetensors(model, tmp_path / "x.safetensors", {})
    assert not (tmp_path / "x.safetensors").exists()


def test_old_format_loads_with_a_warning(run, tmp_path):
    state = torch.load(run.out_dir / "last.pt", weights_only=True)
    state.update(format="hopfield-checkpoint-v1")
    del state["checksums"], state["num_threads"]
    torch.save(state, tmp_path / "old.pt")
    with pytest.warns(NoChecksumWarning, match=r"old.pt \(model\) has no weights checksum"):
        assert ckpt.load_checkpoint(tmp_path / "old.pt")["global_step"] == 2


def test_hostile_and_garbage_files_give_clear_errors(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    buf = io.BytesIO()
    torch.save({"format": ckpt.FORMAT, "model": Evil()}, buf)
    (tmp_path / "evil.pt").write_bytes(buf.getvalue())
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.load_checkpoint(tmp_path / "evil.pt")
    text = str(info.value)
    assert "refused" in text and "system" in text and "Nothing in it was executed" in text
    assert "weights_only=False" not in text and "corrupt" not in text and not marker.exists()
    (tmp_path / "junk.pt").write_bytes(b"garbage" * 50)
    with pytest.raises(ckpt.CheckpointError, match=r"junk.pt is unreadable: it is not a PyTorch"):
        ckpt.load_checkpoint(tmp_path / "junk.pt")


def test_resume_accepts_a_run_folder(run, tmp_path):
    assert ckpt.resolve_checkpoint(run.out_dir) == run.out_dir / "last.pt"
    done = train(ONE, out=str(tmp_path), resume=str(run.out_dir))
    assert done.history == run.history  # resumed at its end: nothing new to train
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match=r"empty is a folder without a checkpoint"):
        ckpt.resolve_checkpoint(tmp_path / "empty")


def test_resume_under_another_thread_count_warns(run, tmp_path):
    state = ckpt.load_checkpoint(run.out_dir / "last.pt")
    assert state["num_threads"] == torch.get_num_threads()
    ckpt.save_checkpoint(tmp_path / "last.pt", {**state, "num_threads": 999})
    with pytest.warns(RuntimeWarning, match=r"written with 999 CPU threads"):
        train(ONE, out=str(tmp_path), resume="auto")


def test_json_output_never_holds_a_bare_nan():
    value, bad = json_safe({"loss": float("nan"), "rows": [1.0, float("inf")], "acc": 0.5})
    assert json.loads(json.dumps(value, allow_nan=False)) == {"loss": None, "rows": [1.0, None],
                                                               "acc": 0.5}
    assert bad == ["loss", "rows[1]"]


# ---------------------------------------------------------------------------- numbers, files
@pytest.mark.parametrize("flag,value", [("--lr", "inf"), ("--min-lr", "inf"),
                                        ("--weight-decay", "nan"), ("--ema", "1"),
                                        ("--epochs", "0"), ("--random-erasing", "2")])
def test_numeric_flags_are_checked_when_parsed(flag, value, capsys):
    assert main(["train", flag, value]) == 2
    assert f"argument {flag}" in capsys.readouterr().err


@pytest.mark.parametrize("bad", [dict(min_lr=float("inf")), dict(lr=float("nan")),
                                 dict(weight_decay=float("inf")), dict(min_lr=1.0, lr=0.1)])
def test_train_config_refuses_non_finite_numbers(bad):
    with pytest.raises(ValueError, match=r"must"):
        TrainConfig(**bad)


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs /proc")
def test_out_under_proc_exits_1(capsys):
    argv = ["train", "--model", "mixer_tiny", "--depth", "1", "--max-train-samples", "8",
            "--out", "/proc/hopfield-cannot-write-here"]
    assert main(argv) == 1
    assert "is not writable" in capsys.readouterr().err


def test_temp_files_of_killed_writes_are_cleaned_when_a_run_starts(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [tmp_path / f".last.pt.tmp-{dead.pid}", tmp_path / f".metrics.jsonl.tmp-{dead.pid}"]
    for p in stale:
        p.write_bytes(b"torn")
    live = tmp_path / f".last.pt.tmp-{os.getppid()}"  # a running process's write is left alone
    live.write_bytes(b"in progress")
    train(ONE, out=str(tmp_path), resume="auto")
    assert not any(p.exists() for p in stale) and live.exists()


# ---------------------------------------------------------------------------- non-finite values
def test_huge_inputs_stop_at_the_first_step_naming_the_block(tmp_path):
    trainer = small_trainer(tmp_path)
    x, y = next(iter(trainer.train_loader))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    with pytest.raises(NonFiniteLossError, match=r"step 1; the first module whose output went "
                                                 r"non-finite is 'blocks.0'"):
        trainer.train_step(x * 1e30, y)
    assert all(torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True))


def test_nan_weights_are_named_when_the_loss_goes_nan(tmp_path):
    trainer = small_trainer(tmp_path)
    x, y = next(iter(trainer.train_loader))
    with torch.no_grad():
        trainer.model.head.weight[0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match=r"the weights hold NaN/Inf \(head.weight\)"):
        trainer.train_step(x, y)


def test_uint8_images_are_converted_then_normalised(tmp_path):
    trainer = small_trainer(tmp_path)
    raw = trainer.train_loader.dataset.images[:4]
    labels = trainer.train_loader.dataset.labels[:4]
    from hopfield.training.loader import Transform

    assert torch.equal(trainer.prepare(raw), Transform(trainer.mean, trainer.std)(raw))
    assert torch.isfinite(trainer.train_step(raw, labels))
