"""The one loader: safetensors, checkpoints, run folders, timm / official iMixer files."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

import hopfield as hf
from hopfield import weights
from hopfield.models import create_model, register_model

FAMILIES = {"mixer_tiny": {}, "imixer_tiny": {}, "vit_tiny": {}, "et_tiny": {},
            "mixer_tied_tiny": {}}
SMALL = {"depth": 1, "dim": 16}


def _x():
    return torch.randn(2, 1, 28, 28)


def _export(model, path, **meta):
    """What `hopfield train` writes: tensors plus a JSON header with the model's config."""
    tensors = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"hopfield": json.dumps(
        {"model_config": model.config, **meta})})


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_pretrained_file_round_trip_for_every_family(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, **SMALL).eval()
    path = tmp_path / "m.safetensors"
    _export(model, path, mean=[0.3], std=[0.4], classes=list("abcdefghij"))
    back = hf.create_model(name, pretrained_file=path, **SMALL).eval()
    x = _x()
    assert torch.equal(back(x), model(x))
    assert back.pretrained_cfg["file"] == str(path) and back.pretrained_cfg["mean"] == (0.3,)
    loaded = weights.load_model(path)  # the file's own configuration
    assert torch.equal(loaded(x), model(x)) and not loaded.training
    bare = tmp_path / "bare.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(bare))
    assert torch.equal(hf.create_model(name, pretrained_file=bare, **SMALL).eval()(x), model(x))
    assert torch.equal(weights.load_model(bare, name=name, **SMALL)(x), model(x))


def test_a_file_head_of_another_size_stays_fresh(tmp_path):
    model = create_model("mixer_tiny", **SMALL)
    path = tmp_path / "m.safetensors"
    _export(model, path)
    with pytest.warns(UserWarning, match="the head keeps its fresh initialisation"):
        headless = hf.create_model("mixer_tiny", num_classes=0, pretrained_file=path, **SMALL)
    assert torch.equal(headless.stem.proj.weight, model.stem.proj.weight)
    with pytest.raises(ValueError, match="does not fit the model mixer_tiny"):
        hf.create_model("mixer_tiny", pretrained_file=path, depth=2, dim=16)


@pytest.mark.parametrize(("name", "target", "kw"), [
    ("mixer_tiny", "timm_mixer", {}),
    ("imixer_tiny", "imixer", {}),
    ("vit_tiny", "timm_vit", {"class_token": True, "pos_embed": True, "global_pool": "token"}),
])
def test_timm_and_official_imixer_files_load(name, target, kw, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, **SMALL, **kw).eval()
    path = tmp_path / "foreign.pth"
    torch.save({"state_dict": hf.interop.export(model, target=target)}, path)
    back = hf.create_model(name, pretrained_file=path, **SMALL, **kw).eval()
    x = _x()
    assert torch.allclose(back(x), model(x), atol=1e-6)
    opts = {"num_heads": 4} if target == "timm_vit" else {}
    if target == "imixer":
        opts = {"n_iter": 1, "spectral_schedule": "forward"}
    converted = weights.load_model(path, **opts)
    assert torch.allclose(converted(x), model(x), atol=1e-5)


def _block(num_tokens, dim):
    return hf.blocks.mixer_block(num_tokens, dim, 4, 4)


def _impostor(num_tokens, dim):
    return hf.blocks.mixer_block(num_tokens, dim, 4, 4)


def test_a_factory_model_trains_saves_and_reloads(tmp_path):
    register_model("test_weights_custom", _block, depth=1, dim=8, overwrite=True)
    torch.manual_seed(0)
    model = create_model("test_weights_custom", num_classes=3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = _x(), torch.tensor([0, 2])
    before = model.head.weight.detach().clone()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    assert not torch.equal(before, model.head.weight)
    path = tmp_path / "custom.safetensors"
    _export(model.eval(), path)
    back = weights.load_model(path)  # registered: found by name, its factory name checked
    assert torch.equal(back(x), model(x))
    assert torch.equal(weights.load_model(path, factory=_block)(x), model(x))
    with pytest.raises(ValueError, match="factory mismatch for 'test_weights_custom'"):
        weights.load_model(path, factory=_impostor)
    register_model("test_weights_custom", _impostor, depth=1, dim=8, overwrite=True)
    with pytest.raises(ValueError, match="built by test_weights:_block, but the factory given is "
                                         "test_weights:_impostor"):
        weights.load_model(path)


def test_run_folders_and_checkpoints(tmp_path):
    model = create_model("mixer_tiny", **SMALL).eval()
    run = tmp_path / "run"
    run.mkdir()
    state = {"format": "hopfield-checkpoint-v2", "model": model.state_dict(), "ema": None,
             "model_config": model.config, "config": {"dataset": "bundled"},
             "classes": list("abcdefghij"), "normalize": {"mean": [0.2], "std": [0.3]}}
    torch.save(state, run / "last.pt")
    x = _x()
    back = weights.load_model(run)  # no model.safetensors yet: last.pt
    assert torch.equal(back(x), model(x))
    assert back.pretrained_cfg["dataset"] == "bundled" and back.pretrained_cfg["std"] == (0.3,)
    with pytest.raises(ValueError, match="holds no EMA weights"):
        weights.load_model(run / "last.pt", ema=True)
    _export(model, run / "model.safetensors")
    assert weights.resolve_path(run).name == "model.safetensors"
    with pytest.raises(FileNotFoundError, match="no weights file or run folder"):
        weights.load_model(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="holds neither model_ema.safetensors"):
        weights.load_model(tmp_path, ema=True)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="is unreadable"):
        weights.load_model(bad)
    plain = tmp_path / "plain.pt"
    torch.save({"a.weight": torch.zeros(2)}, plain)
    with pytest.raises(ValueError, match="neither timm's nor the official iMixer's"):
        weights.load_model(plain)


def test_the_one_loader_verifies_checksums_and_refuses_nan(tmp_path):
    from safetensors.torch import load_file, save_file

    from hopfield.integrity import ChecksumMismatchError, NonFiniteWeightsError
    from hopfield.training.checkpoint import export_safetensors

    model = hf.models.create_model("mixer_tiny", depth=1, dim=16)
    path = tmp_path / "model.safetensors"
    export_safetensors(model, path, {"model_config": model.config})
    assert hf.weights.load_model(path) is not None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    name = next(iter(tensors))
    tensors[name] = tensors[name].clone()
    tensors[name].view(-1)[0] += 1.0  # a flipped value
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ChecksumMismatchError, match="do not match the checksum"):
        hf.weights.load_model(path)
    tensors[name].view(-1)[0] = float("nan")
    meta2 = dict(meta)
    save_file(tensors, str(path), metadata=meta2)
    with pytest.raises((ChecksumMismatchError, NonFiniteWeightsError)):
        hf.weights.load_model(path)
