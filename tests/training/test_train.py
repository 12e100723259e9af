"""Training: one step per registered tiny model, exact resumption, crash safety, clear failures."""

import errno
import json
import os

import pytest
import torch

from hopfield.models import list_models
from hopfield.training import NonFiniteLossError, TrainConfig, Trainer, train
from hopfield.training import checkpoint as ckpt

# a depth-1, width-32 iMixer (spectral-norm buffers included) on 64 bundled images, 4 steps/epoch;
# stochastic depth, EMA, Mixup, CutMix and random erasing on, so every random stream must be
# restored on resume
TINY = dict(model="imixer_tiny", epochs=2, batch_size=16, max_train_samples=64,
            max_eval_samples=32, drop_path=0.2, ema=0.9, mixup=0.2, cutmix=1.0,
            random_erasing=0.5, quiet=True,
            plot=False, model_kwargs={"depth": 1, "dim": 32})


def metrics(history):
    return [{k: v for k, v in r.items() if k not in ("images_per_s", "epoch_time_s")}
            for r in history]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted two-epoch run."""
    return train(TINY, out=str(tmp_path_factory.mktemp("reference")))


@pytest.mark.parametrize("name", list_models("*tiny"))
def test_every_tiny_model_takes_a_finite_step_on_bundled_data(name, tmp_path):
    trainer = Trainer(TrainConfig(model=name, batch_size=2, max_train_samples=2,
                                  max_eval_samples=2, out=str(tmp_path), quiet=True))
    before = [p.detach().clone() for p in trainer.model.parameters()]
    x, y = next(iter(trainer.train_loader))
    assert x.shape == (2, 1, 28, 28)
    loss = trainer.train_step(x, y)
    assert torch.isfinite(loss)
    after = trainer.model.parameters()
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_run_writes_metrics_curves_checkpoint_and_weights(reference):
    out = reference.out_dir
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows == reference.history
    assert {"train_loss", "train_acc", "test_loss", "test_acc", "ema_test_acc", "lr",
            "images_per_s"} <= set(rows[-1])
    tensors, meta = ckpt.load_safetensors(out / "model.safetensors")
    assert meta["model_config"]["name"] == "imixer_tiny" and meta["dataset"] == "bundled"
    for k, v in reference.model.state_dict().items():
        assert torch.equal(tensors[k], v)
    state = ckpt.load_checkpoint(out / "last.pt")
    assert state["loader"] == {"epoch": 2, "position": 0} and state["global_step"] == 8
    assert (out / "model_ema.safetensors").exists()


@pytest.mark.parametrize("save_every", [0, 3], ids=["from-epoch-end", "from-mid-epoch"])
def test_resumed_run_matches_uninterrupted_run_bitwise(reference, tmp_path, monkeypatch,
                                                       save_every):
    monkeypatch.setenv(ckpt.FAULT_ENV, "step@7:raise")  # crash during epoch 2
    with pytest.raises(ckpt.FaultInjected):
        train(TINY, out=str(tmp_path), save_every=save_every)
    monkeypatch.delenv(ckpt.FAULT_ENV)
    torch.manual_seed(1234)  # the resumed run must not depend on the caller's RNG
    resumed = train(TINY, out=str(tmp_path), save_every=save_every, resume="auto")
    assert metrics(resumed.history) == metrics(reference.history)
    expected = reference.model.state_dict()
    for k, v in resumed.model.state_dict().items():
        assert torch.equal(v, expected[k]), k


def test_crash_mid_checkpoint_write_keeps_previous_checkpoint(reference, tmp_path, monkeypatch):
    monkeypatch.setenv(ckpt.FAULT_ENV, "write:last.pt@2:raise")  # torn write at the end of epoch 2
    with pytest.raises(ckpt.FaultInjected):
        train(TINY, out=str(tmp_path))
    monkeypatch.delenv(ckpt.FAULT_ENV)
    assert list(tmp_path.glob(".last.pt.tmp-*"))  # the torn temporary file...
    state = ckpt.load_checkpoint(tmp_path / "last.pt")  # ...never replaced the good checkpoint
    assert len(state["history"]) == 1
    resumed = train(TINY, out=str(tmp_path), resume="auto")
    assert metrics(resumed.history) == metrics(reference.history)


def test_corrupt_checkpoint_is_named(reference, tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes((reference.out_dir / "last.pt").read_bytes()[:5000])
    with pytest.raises(ckpt.CheckpointError, match=rf"checkpoint {bad} is unreadable.*corrupt"):
        train(TINY, out=str(tmp_path), resume="auto")
    bad.write_bytes(b"")
    with pytest.raises(ckpt.CheckpointError, match=r"is empty \(0 bytes\)"):
        ckpt.load_checkpoint(bad)
    torch.save({"weights": torch.zeros(2)}, bad)
    with pytest.raises(ckpt.CheckpointError, match=r"not a hopfield training checkpoint"):
        ckpt.load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match=r"nope.pt does not exist"):
        train(TINY, out=str(tmp_path), resume=str(tmp_path / "nope.pt"))


def test_resume_refuses_changed_settings(reference):
    with pytest.raises(ValueError, match=r"different settings \(lr: checkpoint 0.001 vs now 0.5"):
        train(TINY, out=str(reference.out_dir), resume="auto", lr=0.5)


def test_checkpoint_from_before_a_new_setting_resumes_with_its_default(reference, tmp_path):
    """A checkpoint written before a setting existed holds no key for it: it means the default."""
    state = ckpt.load_checkpoint(reference.out_dir / "last.pt")
    del state["config"]["random_erasing"]
    ckpt.save_checkpoint(tmp_path / "last.pt", state)
    with pytest.raises(ValueError, match=r"random_erasing: checkpoint 0.0 vs now 0.5"):
        train(TINY, out=str(tmp_path), resume="auto")
    done = train({**TINY, "random_erasing": 0.0}, out=str(tmp_path), resume="auto")
    assert metrics(done.history) == metrics(reference.history)  # resumed at its end: nothing new


def test_nan_loss_stops_cleanly_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setenv(ckpt.FAULT_ENV, "loss@6:nan")  # second step of epoch 2
    with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 2, step 6.*"
                                                 r"last good checkpoint .*last.pt \(epoch 1\)"):
        train(TINY, out=str(tmp_path))
    state = ckpt.load_checkpoint(tmp_path / "last.pt")
    assert len(state["history"]) == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1


def test_unwritable_output_folder(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match=r"output folder .*file exists and is a file"):
        train(TINY, out=str(tmp_path / "file"))
    with pytest.raises(OSError, match=r"output folder .*file/sub is not writable"):
        train(TINY, out=str(tmp_path / "file" / "sub"))
    real_write = os.write

    def full_disk(fd, data):
        if len(data) > 10000:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    (tmp_path / "last.pt").write_bytes(b"previous")
    monkeypatch.setattr(ckpt.os, "write", full_disk)
    with pytest.raises(OSError, match=r"could not write .*last.pt \(No space left on device\); "
                                      r"the previous version of the file is intact"):
        ckpt.save_checkpoint(tmp_path / "last.pt", {"x": torch.zeros(10000)})
    assert (tmp_path / "last.pt").read_bytes() == b"previous"
    assert not list(tmp_path.glob(".last.pt.tmp-*"))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permissions")
def test_read_only_output_folder(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(PermissionError, match=r"is not writable"):
            train(TINY, out=str(tmp_path / "run"))
    finally:
        tmp_path.chmod(0o700)


@pytest.mark.parametrize("bad,match", [
    (dict(lr=0), r"lr must be > 0"), (dict(amp="fp8"), r"amp must be one of"),
    (dict(ema=1.0), r"ema must be in \[0, 1\)"), (dict(drop_path=1.5), r"drop_path must be"),
    (dict(device="tpu:x"), r"--device 'tpu:x' is not a device"),
    (dict(amp="fp16", device="cpu"), r"--amp fp16 needs a CUDA device"),
])
def test_invalid_settings_are_named(bad, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        train(TINY, out=str(tmp_path), **bad)


def test_unknown_setting_lists_valid_ones(tmp_path):
    with pytest.raises(TypeError, match=r"unknown training settings \['epoch'\]; valid: model"):
        train(TINY, epoch=3)


@pytest.mark.parametrize("model", ["mixer_tiny", "imixer_tiny"])
def test_bf16_autocast_step_on_cpu(model, tmp_path):
    trainer = Trainer(TrainConfig(model=model, amp="bf16", batch_size=4, max_train_samples=4,
                                  max_eval_samples=4, out=str(tmp_path), quiet=True,
                                  model_kwargs={"depth": 1, "dim": 32}))
    assert trainer.amp_dtype == torch.bfloat16 and not trainer.scaler.is_enabled()
    x, y = next(iter(trainer.train_loader))
    assert torch.isfinite(trainer.train_step(x, y))


@pytest.mark.parametrize(("native", "amp", "hinted"),
                         [(True, "auto", True), (True, "off", False), (False, "auto", False)])
def test_cpu_bf16_hint_only_where_it_helps(native, amp, hinted, tmp_path, monkeypatch, capsys):
    import hopfield.training.trainer as train_module

    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: native)
    Trainer(TrainConfig(model="mixer_tiny", amp=amp, device="cpu", batch_size=4,
                        max_train_samples=4, max_eval_samples=4, out=str(tmp_path),
                        model_kwargs={"depth": 1, "dim": 32}))
    assert ("--amp bf16" in capsys.readouterr().out) == hinted


@pytest.mark.parametrize(("native", "amp", "warned"),
                         [(False, "bf16", True), (True, "bf16", False), (False, "auto", False)])
def test_explicit_cpu_bf16_without_native_bf16_warns_once(native, amp, warned, tmp_path,
                                                          monkeypatch):
    import warnings

    import hopfield.training.precision as precision
    import hopfield.training.trainer as train_module

    monkeypatch.setattr(train_module, "cpu_has_native_bf16", lambda: native)
    monkeypatch.setattr(precision, "cpu_capability", lambda: "AVX2")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Trainer(TrainConfig(model="mixer_tiny", amp=amp, device="cpu", batch_size=4, quiet=True,
                            max_train_samples=4, max_eval_samples=4, out=str(tmp_path),
                            model_kwargs={"depth": 1, "dim": 32}))
    slow = [str(w.message) for w in caught if "without native bf16" in str(w.message)]
    assert len(slow) == warned
    if warned:  # the measured cost, the fix and the capability found
        assert all(s in slow[0] for s in ("13.5x", "--amp auto", "capability AVX2", "AMX"))


def test_compile_runs_the_training_forward_compiled_and_saves_plain_weights(tmp_path,
                                                                             monkeypatch):
    real, calls = torch.compile, []

    def eager_compile(model, **kwargs):  # the default backend would take minutes here
        calls.append(model)
        return real(model, backend="eager")

    monkeypatch.setattr(torch, "compile", eager_compile)
    result = train(model="mixer_tiny", compile=True, device="cpu", epochs=1, batch_size=8,
                   max_train_samples=16, max_eval_samples=8, out=str(tmp_path), quiet=True,
                   plot=False, model_kwargs={"depth": 1, "dim": 32})
    assert calls == [result.model]  # compiled once, after the model is built and on its device
    assert all(p.device.type == "cpu" for p in calls[0].parameters())
    state = ckpt.load_checkpoint(tmp_path / "last.pt")
    assert state["config"]["compile"] and not any("_orig_mod" in k for k in state["model"])
    assert result.final["step"] == 2 and result.weights.is_file()


def test_cpu_capability_probe_answers_a_string():
    from hopfield.training.precision import cpu_capability

    assert isinstance(cpu_capability(), str) and cpu_capability()


def test_cpu_bf16_probe_answers_a_bool():
    from hopfield.training.trainutil import cpu_has_native_bf16

    assert isinstance(cpu_has_native_bf16(), bool)


# ---------------------------------------------------------------------------- GPU
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("amp", ["bf16", "fp16", "off"])
@pytest.mark.parametrize("model", ["mixer_tiny", "imixer_tiny"])
def test_gpu_step_under_autocast(model, amp, tmp_path):
    trainer = Trainer(TrainConfig(model=model, amp=amp, batch_size=8, max_train_samples=8,
                                  max_eval_samples=8, out=str(tmp_path), quiet=True))
    assert trainer.device.type == "cuda"
    assert trainer.train_loader.dataset.images.is_cuda and next(trainer.model.parameters()).is_cuda
    x, y = next(iter(trainer.train_loader))
    assert x.is_cuda and x.dtype == torch.float32
    assert torch.isfinite(trainer.train_step(x, y))
    assert trainer.scaler.is_enabled() == (amp == "fp16")


@pytest.mark.gpu
@cuda
def test_gpu_short_run_and_resume(tmp_path):
    cfg = dict(TINY, amp="bf16", device="cuda", out=str(tmp_path))
    result = train(cfg)
    assert result.final["test_acc"] >= 0 and (tmp_path / "model.safetensors").exists()
    state = ckpt.load_checkpoint(tmp_path / "last.pt", map_location="cuda")
    assert state["model"]["head.weight"].is_cuda


@pytest.mark.gpu
@cuda
def test_gpu_crashed_run_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    """Resuming a CUDA run: the checkpoint's RNG states are host tensors wherever the run was."""
    cfg = dict(TINY, device="cuda", amp="off", deterministic=True)
    reference = train(cfg, out=str(tmp_path / "reference"))
    monkeypatch.setenv(ckpt.FAULT_ENV, "step@7:raise")  # crash during epoch 2
    with pytest.raises(ckpt.FaultInjected):
        train(cfg, out=str(tmp_path / "run"), save_every=3)
    monkeypatch.delenv(ckpt.FAULT_ENV)
    resumed = train(cfg, out=str(tmp_path / "run"), save_every=3, resume="auto")
    for a, b in zip(metrics(resumed.history), metrics(reference.history), strict=True):
        assert a.keys() == b.keys()
        assert all(a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-6) for k in a)
    expected = reference.model.state_dict()
    for k, v in resumed.model.state_dict().items():
        torch.testing.assert_close(v, expected[k], rtol=1e-4, atol=1e-5, msg=k)


@pytest.mark.gpu
@cuda
def test_checkpoint_moves_between_cpu_and_cuda(tmp_path, monkeypatch):
    monkeypatch.setenv(ckpt.FAULT_ENV, "step@5:raise")  # crash during epoch 2, on the CPU
    with pytest.raises(ckpt.FaultInjected):
        train(TINY, out=str(tmp_path), device="cpu")
    monkeypatch.delenv(ckpt.FAULT_ENV)
    resumed = train(TINY, out=str(tmp_path), device="cuda", resume="auto")
    assert len(resumed.history) == 2 and next(resumed.model.parameters()).is_cuda
