"""hopfield.interop: checkpoints in timm's MlpMixer / VisionTransformer and the official iMixer
layouts (produced here by the reference models in ``tests/reference``) convert to derived models
with the same logits, export back, and fail loudly when they do not fit."""

import pytest
import torch
from reference import IMixer, MlpMixer, VisionTransformer

import hopfield as hf
from hopfield import interop

IMG = torch.Generator().manual_seed(1)


def _images(in_chans=1, size=28, dtype=torch.float32):
    return torch.randn(3, in_chans, size, size, generator=IMG).to(dtype)


def _randomise(model, std=0.3):
    """Non-trivial values everywhere (reference inits leave biases/norms at 0/1)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(std * torch.randn_like(p))
    return model


def _mixer(**kw):
    return _randomise(MlpMixer(**{"num_blocks": 2, "embed_dim": 16, **kw})).eval()


def _vit(**kw):
    return _randomise(VisionTransformer(**{"depth": 2, "embed_dim": 16, "num_heads": 4, **kw})).eval()


def _imixer(**kw):
    return _randomise(IMixer(**{"num_blocks": 2, "embed_dim": 16, **kw})).eval()


def _same_logits(model, ref, x, atol=1e-5):
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref(x), atol=atol, rtol=atol)


# ----------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("kw", [{}, dict(in_chans=3, img_size=32, patch_size=8, num_classes=7,
                                         num_blocks=3, embed_dim=24)], ids=["tiny", "rgb"])
def test_timm_mixer(kw):
    ref = _mixer(**kw)
    model = interop.convert(ref.state_dict(), source="timm_mixer")
    assert not model.training and model.head.weight.device.type == "cpu"
    assert model.head.weight.dtype == torch.float32
    _same_logits(model, ref, _images(kw.get("in_chans", 1), kw.get("img_size", 28)))
    cfg = model.config
    assert (cfg["depth"], cfg["dim"], cfg["img_size"], cfg["num_classes"]) == (
        kw.get("num_blocks", 2), kw.get("embed_dim", 16), kw.get("img_size", 28),
        kw.get("num_classes", 10))


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_timm_vit(qkv_bias):
    ref = _vit(qkv_bias=qkv_bias, num_classes=5)
    model = interop.convert(ref.state_dict(), source="timm_vit", num_heads=4)
    assert model.global_pool == "token" and model.cls_token is not None
    _same_logits(model, ref, _images())


@pytest.mark.parametrize("k", [1, 4])
def test_imixer(k):
    ref = _imixer(n_repeat=k)
    ref.train()  # a few training-mode forwards move the power-iteration vectors u, v
    for _ in range(2):
        ref(_images())
    ref.eval()
    model = interop.convert(ref.state_dict(), source="imixer", **({} if k == 4 else {"n_iter": k}))
    assert model.config["feedback_dim"] == model.config["token_dim"] == 8  # official width ratio
    _same_logits(model, ref, _images())


def test_imixer_spectral_schedule_defaults_to_the_official_one():
    """Converted iMixers refresh their spectral norms at every fixed-point iteration, as the
    official hook does (training equality: ``tests/derivation/test_faithful.py``); the setting
    is recorded in the config and can be overridden."""
    sd = _imixer(n_repeat=2).state_dict()
    model = interop.convert(sd, source="imixer", n_iter=2)
    assert model.config["spectral_schedule"] == "iteration"
    assert {b.spectral_schedule for b in model.blocks} == {"iteration"}
    assert (model.config["eps"], model.config["coeff"], model.config["n_power_iterations"]) == (
        1e-6, 0.9, 8)
    forward = interop.convert(sd, source="imixer", n_iter=2, spectral_schedule="forward")
    assert {b.spectral_schedule for b in forward.blocks} == {"forward"}
    x = _images()
    with torch.no_grad():  # eval mode: no power iteration, the schedules agree exactly
        assert torch.equal(model(x), forward(x))
    with pytest.raises(ValueError, match="spectral_schedule must be one of 'forward', "
                                         "'iteration', got 'always'"):
        interop.convert(sd, source="imixer", spectral_schedule="always")


def test_imixer_without_spectral_norm_parametrization():
    """A checkpoint whose fc_sn* hold plain (already rescaled) weights loads with coeff=None."""
    ref = _imixer(n_repeat=2)
    x = _images()
    with torch.no_grad():
        expected = ref(x)  # also sets fc_sn*.weight to the rescaled weight
    sd = {k: v for k, v in ref.state_dict().items() if not k.endswith(("_u", "_v", "_sigma"))}
    for blk in ref.blocks:
        for fc in ("fc_sn1", "fc_sn2"):
            lin = getattr(blk.mlp_tokens, fc)
            i = list(ref.blocks).index(blk)
            sd.pop(f"blocks.{i}.mlp_tokens.{fc}.weight_orig")
            sd[f"blocks.{i}.mlp_tokens.{fc}.weight"] = lin.weight.detach()
    model = interop.convert(sd, source="imixer", n_iter=2)
    assert model.config["spectral_norm"] is False
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="no spectral norm to configure"):
        interop.convert(sd, source="imixer", n_iter=2, coeff=0.5)


def test_float64_checkpoints_stay_float64_and_match_exactly():
    ref = _mixer().double()
    model = interop.convert(ref.state_dict(), source="timm_mixer")
    assert model.head.weight.dtype == torch.float64
    _same_logits(model, ref, _images(dtype=torch.float64), atol=1e-12)


def test_public_names():
    assert "interop" in hf.__all__ and hf.interop is interop
    assert set(interop.__all__) == {"SOURCES", "convert", "export", "infer_config", "read_checkpoint"}


def test_infer_config():
    cfg = interop.infer_config(_vit(depth=3).state_dict(), "timm_vit")
    assert cfg == dict(depth=3, dim=16, in_chans=1, patch_size=4, num_classes=10, mlp_dim=64,
                       qkv_bias=True, num_patches=49, img_size=28)


# ----------------------------------------------------------------------------- containers
def test_wrappers_prefixes_and_files(tmp_path):
    from safetensors.torch import save_file

    ref = _mixer()
    sd, x = ref.state_dict(), _images()
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "ckpt.pth")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "ckpt.safetensors"))
    sources = [{"model": sd}, {"state_dict": {"model": sd}}, {f"module.{k}": v for k, v in sd.items()},
               ref, tmp_path / "ckpt.pth", str(tmp_path / "ckpt.safetensors")]
    for src in sources:
        _same_logits(interop.convert(src, source="timm_mixer"), ref, x)


def test_read_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        interop.read_checkpoint(tmp_path / "nope.pth")
    with pytest.raises(TypeError, match="expected a state dict"):
        interop.read_checkpoint([1, 2])
    with pytest.raises(ValueError, match=r"\['epoch'\] are not tensors"):
        interop.read_checkpoint({"head.weight": torch.zeros(2), "epoch": 3})


# ----------------------------------------------------------------------------- export
@pytest.mark.parametrize("source,make,kw", [("timm_mixer", _mixer, {}),
                                            ("timm_vit", _vit, {"num_heads": 4}),
                                            ("imixer", _imixer, {})])
def test_export_inverts_convert(source, make, kw):
    sd = make().state_dict()
    out = interop.export(interop.convert(sd, source=source, **kw))
    assert list(out) == list(sd)  # same keys, same order as the source modules
    for k in sd:
        torch.testing.assert_close(out[k], sd[k], atol=0, rtol=0, msg=k)


@pytest.mark.parametrize("name,kw", [("mixer_tiny", {}), ("imixer_k2_tiny", {"n_iter": 2}),
                                     ("vit_s16_224", {"num_heads": 2})])
def test_export_of_native_models(name, kw):
    small = dict(depth=1, dim=16, img_size=28, in_chans=1, patch_size=7)
    if name.startswith("vit"):
        small.update(num_heads=2)
    model = hf.models.create_model(name, **small).eval()
    source = {"mixer": "timm_mixer", "imixer": "imixer", "vit": "timm_vit"}[model.config["family"]]
    back = interop.convert(interop.export(model), source=source, **kw)
    _same_logits(back, model, _images())


def test_export_errors():
    with pytest.raises(ValueError, match="tied=False"):
        interop.export(hf.models.create_model("mixer_tied_tiny", depth=1, dim=16))
    with pytest.raises(ValueError, match="expected target='timm_mixer'"):
        interop.export(hf.models.create_model("mixer_tiny", depth=1, dim=16), target="timm_vit")
    with pytest.raises(ValueError, match="expected class_token=True"):
        interop.export(hf.models.create_model("vit_tiny", depth=1, dim=16))
    with pytest.raises(TypeError, match="expected a HopfieldClassifier"):
        interop.export(torch.nn.Linear(2, 2))


# ----------------------------------------------------------------------------- errors
def test_unknown_missing_and_misshaped_keys():
    sd = _mixer().state_dict()
    bad = dict(sd)
    bad["blocks.0.ls1.gamma"] = torch.ones(16)
    del bad["blocks.1.norm2.bias"]
    bad["blocks.0.mlp_channels.fc2.weight"] = torch.zeros(16, 32)
    with pytest.raises(ValueError, match=r"unknown keys: \['blocks.0.ls1.gamma'\]") as err:
        interop.convert(bad, source="timm_mixer")
    msg = str(err.value)
    assert "missing keys: ['blocks.1.norm2.bias']" in msg
    assert "blocks.0.mlp_channels.fc2.weight: expected (16, 64), got (16, 32)" in msg
    assert "LayerScale" in msg and "expected the timm_mixer layout: stem.proj.{weight,bias}" in msg


def test_missing_block_is_reported():
    sd = {k: v for k, v in _mixer(num_blocks=3).state_dict().items() if not k.startswith("blocks.1.")}
    with pytest.raises(ValueError, match=r"missing keys: \['blocks.1.norm1.weight'"):
        interop.convert(sd, source="timm_mixer")


def test_wrong_source_and_missing_anchors():
    sd = _vit().state_dict()
    with pytest.raises(ValueError, match="cannot read the architecture.*look like source='timm_vit'"):
        interop.convert(sd, source="timm_mixer")
    with pytest.raises(ValueError, match=r"missing key\(s\) \['head.weight'\]"):
        interop.convert({k: v for k, v in sd.items() if k != "head.weight"}, source="timm_vit",
                        num_heads=4)
    with pytest.raises(ValueError, match="look like source='imixer'"):
        interop.convert(_imixer().state_dict(), source="timm_mixer")


def test_option_errors():
    sd = _vit().state_dict()
    with pytest.raises(ValueError, match="num_heads is required"):
        interop.convert(sd, source="timm_vit")
    with pytest.raises(ValueError, match="positive divisor of dim=16, got 5"):
        interop.convert(sd, source="timm_vit", num_heads=5)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['n_iter'\]"):
        interop.convert(sd, source="timm_vit", num_heads=4, n_iter=3)
    with pytest.raises(ValueError, match="dtype must be a floating torch.dtype"):
        interop.convert(sd, source="timm_vit", num_heads=4, dtype="float64")
    with pytest.raises(ValueError, match="unknown source 'timm_resnet'; valid: timm_mixer"):
        interop.convert(sd, source="timm_resnet")


def test_non_square_token_grid():
    sd = _vit().state_dict()
    sd["pos_embed"] = sd["pos_embed"][:, :-1]  # e.g. timm's no_embed_class layout
    with pytest.raises(ValueError, match="48 patch tokens, not a square number"):
        interop.convert(sd, source="timm_vit", num_heads=4)
