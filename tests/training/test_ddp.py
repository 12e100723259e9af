"""DistributedDataParallel on CPU: two Gloo processes launched by ``torchrun`` stay in lockstep."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[2]

WORKER = '''
import sys, torch
from hopfield.training import TrainConfig, Trainer
out = sys.argv[1]
trainer = Trainer(TrainConfig(model="imixer_tiny", epochs=1, batch_size=8, max_train_samples=64,
                              max_eval_samples=16, drop_path=0.2, quiet=True, plot=False, out=out,
                              model_kwargs={"depth": 1, "dim": 32}))
first = next(iter(trainer.train_loader))[1]  # this rank's first labels
trainer.train_loader.set_epoch(0)
result = trainer.fit()
torch.save({"state": trainer.model.state_dict(), "labels": first, "history": result.history,
            "world_size": trainer.world_size}, f"{out}/rank{trainer.rank}.pt")
torch.distributed.barrier()
torch.distributed.destroy_process_group()
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs Gloo")
def test_two_gloo_ranks_keep_identical_parameters(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", "2",
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()), str(script),
           str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world_size"] == r1["world_size"] == 2
    assert not torch.equal(r0["labels"], r1["labels"])  # each rank saw its own shard...
    for k, v in r0["state"].items():  # ...yet the replicas agree after the optimiser steps
        assert torch.equal(v, r1["state"][k]), k
    timing = ("images_per_s", "epoch_time_s")
    h0, h1 = ([{k: v for k, v in r.items() if k not in timing} for r in h]
              for h in (r0["history"], r1["history"]))
    assert h0 == h1  # metrics are reduced over both ranks
    assert r0["history"][0]["step"] == 4  # 64 images / 2 ranks / batch 8
    assert (tmp_path / "last.pt").exists() and (tmp_path / "model.safetensors").exists()
