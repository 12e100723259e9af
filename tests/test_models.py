"""The model registry and timm's model API on every preset; registered block factories."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

import hopfield as hf
from hopfield.models import (
    create_model,
    list_models,
    load_factory,
    model_config,
    model_from_config,
    register_model,
)


def small(name: str) -> dict:
    """Overrides that make every preset cheap (one block, width 24: divisible by 4, 6, 12)."""
    return {"depth": 1, "dim": 24}


def images(model, batch=2):
    c, s, _ = model.pretrained_cfg["input_size"]
    return torch.randn(batch, c, s, s)


@pytest.mark.parametrize("name", list_models())
def test_timm_api_on_every_preset(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, **small(name)).eval()
    x = images(model)
    n = model.stem.num_patches + model.num_prefix
    cfg = model.pretrained_cfg
    assert cfg["architecture"] == name and cfg["num_classes"] == 3 and model.default_cfg is cfg
    assert len(cfg["mean"]) == len(cfg["std"]) == cfg["input_size"][0]
    assert model.num_features == 24 and model.get_classifier() is model.head
    feats = model.forward_features(x)
    assert feats.shape == (2, n, 24)
    pooled = model.forward_head(feats, pre_logits=True)
    assert pooled.shape == (2, 24)
    assert torch.allclose(model(x), model.head(pooled))
    model.reset_classifier(5)
    assert model(x).shape == (2, 5) and model.config["num_classes"] == 5
    model.reset_classifier(0)
    assert isinstance(model.head, nn.Identity) and torch.allclose(model(x), pooled)
    model.reset_classifier(0, global_pool="")
    assert torch.allclose(model(x), feats) and model.config["global_pool"] == ""
    model.reset_classifier(4)
    assert model(x).shape == (2, n, 4)  # no pooling: the head acts on every token
    headless = create_model(name, num_classes=0, **small(name))
    assert isinstance(headless.head, nn.Identity) and not list(headless.head.parameters())
    assert headless(x).shape == (2, 24)


@pytest.mark.parametrize("name", list_models("*tiny"))
def test_grad_checkpointing_gives_the_same_outputs_and_gradients(name):
    torch.manual_seed(0)
    plain = create_model(name, depth=2, dim=16).train()
    ckpt = copy.deepcopy(plain)
    ckpt.set_grad_checkpointing()
    assert ckpt.grad_checkpointing
    x = torch.randn(3, 1, 28, 28)
    out = [m(x) for m in (plain, ckpt)]
    for o in out:
        o.square().sum().backward()
    assert torch.allclose(out[0], out[1], atol=1e-6)
    for (k, p), q in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), k
    for (k, b), c in zip(plain.named_buffers(), ckpt.buffers(), strict=True):
        assert torch.equal(b, c), k  # spectral-norm power iterations: as one plain forward
    ckpt.set_grad_checkpointing(False)
    assert not ckpt.grad_checkpointing


def test_pretrained_true_and_files_need_the_weights_loader():
    with pytest.raises(ValueError, match="hosts no pretrained weights; pass pretrained_file="):
        create_model("mixer_tiny", pretrained=True)
    with pytest.raises(ValueError, match="hosts no pretrained weights"):
        hf.create_model("vit_tiny", pretrained=True)
    with pytest.raises(ValueError, match="load files with hf.create_model"):
        create_model("mixer_tiny", pretrained_file="x.safetensors")


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"global_pool": "max"}, "global_pool must be one of 'avg', 'token', ''"),
    ({"global_pool": "token"}, "global_pool='token' needs class_token=True"),
    ({"num_classes": -1}, "num_classes must be an integer >= 0"),
])
def test_classifier_settings_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_model("mixer_tiny", depth=1, dim=16, **kwargs)


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown model 'nope'; valid models: .*mixer_tiny"):
        create_model("nope")
    with pytest.raises(ValueError, match="unknown family 'resnet'; valid: et, imixer, mixer, vit"):
        register_model("x_resnet", "resnet")


def _tiny_block(num_tokens, dim, *, hidden=8):
    return hf.blocks.mixer_block(num_tokens, dim, hidden, hidden)


def _other_block(num_tokens, dim):
    return nn.Identity()


def test_register_refuses_to_overwrite_unless_asked():
    register_model("test_models_tiny", _tiny_block, depth=1, dim=8, overwrite=True)
    register_model("test_models_tiny", _tiny_block, depth=1, dim=8)  # the same again: a no-op
    with pytest.raises(ValueError, match="'mixer_tiny' is already registered .family mixer.; "
                                         "pass overwrite=True"):
        register_model("mixer_tiny", _tiny_block)
    with pytest.raises(ValueError, match="already registered .factory test_models:_tiny_block"):
        register_model("test_models_tiny", _other_block)
    with pytest.raises(TypeError, match="the first argument is the model's name"):
        register_model(_tiny_block)
    with pytest.raises(TypeError, match="expected a family name or a callable"):
        register_model("test_models_bad", 3)


def test_a_registered_factory_builds_and_records_its_name():
    @register_model("test_models_decorated", depth=2, dim=8, overwrite=True)
    def decorated(num_tokens, dim, *, hidden=4):
        return hf.blocks.mixer_block(num_tokens, dim, hidden, hidden)

    assert callable(decorated)  # the decorator returns the function
    preset = model_config("test_models_decorated")
    assert preset["family"] == "custom" and preset["img_size"] == 28
    model = create_model("test_models_decorated", num_classes=4, hidden=6)
    cfg = model.config
    assert cfg["factory"] == "test_models:test_a_registered_factory_builds_and_records_its_name" \
        ".<locals>.decorated"
    assert (cfg["family"], cfg["depth"], cfg["dim"], cfg["hidden"]) == ("custom", 2, 8, 6)
    assert len(model.blocks) == 2 and model(torch.randn(2, 1, 28, 28)).shape == (2, 4)
    back = model_from_config(cfg)
    back.load_state_dict(model.state_dict())
    with pytest.raises(TypeError, match="rejected its arguments"):
        create_model("test_models_decorated", wings=2)


def test_a_factory_must_return_a_module():
    register_model("test_models_notmodule", lambda num_tokens, dim: 3, overwrite=True)
    with pytest.raises(TypeError, match="returned a int; a block factory must return an nn.Module"):
        create_model("test_models_notmodule")


def test_drop_path_needs_derived_blocks():
    register_model("test_models_identity", _other_block, depth=2, overwrite=True)
    with pytest.raises(ValueError, match="has no drop_path attribute"):
        create_model("test_models_identity", drop_path_rate=0.1)


def test_rebuilding_names_the_factory_again_and_checks_it():
    register_model("test_models_rebuild", _tiny_block, depth=1, dim=8, overwrite=True)
    cfg = create_model("test_models_rebuild").config
    assert cfg["factory"] == "test_models:_tiny_block"
    assert model_from_config(cfg, factory=_tiny_block).config == cfg
    with pytest.raises(ValueError, match="factory mismatch for 'test_models_rebuild': the weights "
                                         "were built by test_models:_tiny_block, but the factory "
                                         "given is test_models:_other_block"):
        model_from_config(cfg, factory=_other_block)
    unknown = dict(cfg, name="test_models_never_registered")
    with pytest.raises(ValueError, match="loading never imports code: name it again"):
        model_from_config(unknown)
    assert model_from_config(unknown, factory=_tiny_block).config["name"] == unknown["name"]
    with pytest.raises(ValueError, match="records no factory"):
        model_from_config(create_model("mixer_tiny", depth=1).config, factory=_tiny_block)


def test_load_factory_imports_a_file_and_registers_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_energy_blocks.py").write_text(
        "import torch\nimport hopfield as hf\n\n"
        "def my_block(num_tokens, dim):\n    return hf.blocks.mixer_block(num_tokens, dim, 4, 4)\n\n"
        "NOT_CALLABLE = 3\n")
    name = load_factory("my_energy_blocks.py:my_block", depth=1, dim=8)
    assert name == "my_block" and load_factory("my_energy_blocks.py:my_block", depth=1, dim=8)
    model = create_model(name)
    assert model.config["factory"] == "my_energy_blocks:my_block"
    with pytest.raises(FileNotFoundError, match="no file 'missing.py'"):
        load_factory("missing.py:my_block")
    with pytest.raises(ValueError, match="has no attribute 'nope'; its callables: my_block"):
        load_factory("my_energy_blocks.py:nope")
    with pytest.raises(TypeError, match="'NOT_CALLABLE' is a int, not a callable block factory"):
        load_factory("my_energy_blocks.py:NOT_CALLABLE")
    (tmp_path / "broken_energy.py").write_text("def f(:\n    pass\n")
    with pytest.raises(ValueError, match="broken_energy.py has a syntax error at line 1"):
        load_factory("broken_energy.py:f")
    with pytest.raises(ValueError, match="expected 'package.module:function'"):
        load_factory("just_a_name")
    with pytest.raises(ValueError, match="cannot import module 'no_such_pkg_xyz'"):
        load_factory("no_such_pkg_xyz:f")
    assert load_factory("tests.test_models:_tiny_block", "test_models_by_module",
                        overwrite=True) == "test_models_by_module"
