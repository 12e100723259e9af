"""Real process deaths: SIGKILL mid-epoch and mid-checkpoint-write, then ``--resume``.

Each run is ``python -m hopfield train`` in a subprocess on 64 bundled images with a depth-1,
width-32 iMixer (4 steps per epoch, 2 epochs). The fail point ``HOPFIELD_FAULT`` stops the
child at an exact step, so the test is deterministic, and the parent kills it with SIGKILL.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hopfield.training import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[2]
ARGS = ["--model", "imixer_tiny", "--depth", "1", "--dim", "32", "--epochs", "2",
        "--batch-size", "16", "--max-train-samples", "64", "--max-eval-samples", "32",
        "--drop-path", "0.2", "--ema", "0.9", "--mixup", "0.2", "--save-every", "2", "--quiet",
        "--no-plot"]

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals")


def hopfield(out, *extra, fault=None, marker=None, wait=True):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    env.pop(ckpt.FAULT_ENV, None)
    if fault:
        env[ckpt.FAULT_ENV] = fault
        env["HOPFIELD_FAULT_MARKER"] = str(marker)
    cmd = [sys.executable, "-m", "hopfield", "train", *ARGS, "--out", str(out), *extra]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    if wait:
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr
    return proc


def metrics(out):
    rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("images_per_s", "epoch_time_s")}
            for r in rows]


def wait_for(marker: Path, proc, timeout=300):
    start = time.monotonic()
    while not marker.exists():
        if proc.poll() is not None:
            pytest.fail(f"child exited early ({proc.returncode}): {proc.stderr.read()}")
        if time.monotonic() - start > timeout:
            proc.kill()
            pytest.fail("child never reached the fail point")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    hopfield(out)
    return metrics(out)


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted_run(reference, tmp_path):
    out, marker = tmp_path / "run", tmp_path / "paused"
    proc = hopfield(out, fault="step@7:pause", marker=marker, wait=False)  # epoch 2, 3rd step
    wait_for(marker, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    state = ckpt.load_checkpoint(out / "last.pt")
    assert state["loader"] == {"epoch": 1, "position": 2}  # the step-6 checkpoint, mid-epoch
    hopfield(out, "--resume")
    assert metrics(out) == reference


@pytest.mark.slow  # test_train.py covers the same torn write in-process, with a raised fault
def test_sigkill_during_checkpoint_write_leaves_previous_checkpoint(reference, tmp_path):
    out = tmp_path / "run"
    proc = hopfield(out, fault="write:last.pt@3:kill", wait=False)  # 3rd write: after step 6
    proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL
    assert list(out.glob(".last.pt.tmp-*")), "the kill should leave a torn temporary file"
    state = ckpt.load_checkpoint(out / "last.pt")  # still the intact step-4 checkpoint
    assert state["global_step"] == 4 and len(state["history"]) == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    hopfield(out, "--resume")
    assert metrics(out) == reference
