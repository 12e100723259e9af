"""Every family exports and compiles, and the result equals eager (max abs diff <= 1e-5, float32):
torch.export (pt2), torch.onnx.export(dynamo=True) run by onnxruntime, torch.compile(fullgraph)
(aot_eager, and one inductor run), torch.jit.trace, torch.save(model) with spectral norms, and
the safetensors round trip of hopfield.cli.export."""

from __future__ import annotations

import importlib.util
import io
import sys

import pytest
import torch

import hopfield as hf
from hopfield import lagrangians as L
from hopfield import synapses as S
from hopfield.cli.export import ExportMismatchError, example_images, export_model
from hopfield.models import create_model

TINY = ["mixer_tiny", "mixer_tied_tiny", "imixer_tiny", "imixer_tied_tiny", "vit_tiny", "et_tiny"]
TOL = 1e-5
pytestmark = pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
_ONNX_MISSING = [m for m in ("onnx", "onnxscript", "onnxruntime")
                 if importlib.util.find_spec(m) is None]


def tiny(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, depth=1, dim=16, img_size=8, patch_size=4).eval()


def _eager(model, x):
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("name", TINY)
def test_pt2_equals_eager_with_a_dynamic_batch(name, tmp_path):
    model = tiny(name)
    report = export_model(model, tmp_path / "m.pt2")
    assert report.format == "pt2" and report.max_abs_diff <= TOL
    x = example_images(model, batch_size=3, seed=1)  # another batch size than exported
    got = torch.export.load(tmp_path / "m.pt2").module()(x)
    assert (got - _eager(model, x)).abs().max() <= TOL


@pytest.mark.skipif(bool(_ONNX_MISSING), reason=f"{', '.join(_ONNX_MISSING)} not installed: "
                    f"pip install 'hopfield[export]'")
@pytest.mark.parametrize("name", TINY)
def test_onnx_equals_eager(name, tmp_path):
    report = export_model(tiny(name), tmp_path / "m.onnx")
    assert report.format == "onnx" and report.max_abs_diff <= TOL
    assert (tmp_path / "m.onnx").stat().st_size > 1000


@pytest.mark.parametrize("name", TINY)
def test_compile_fullgraph_equals_eager(name):
    torch._dynamo.reset()
    model = tiny(name)
    x = example_images(model)
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")  # a graph break raises
    with torch.no_grad():
        assert (compiled(x) - _eager(model, x)).abs().max() <= TOL


def test_compile_inductor_equals_eager():
    torch._dynamo.reset()
    model = tiny("mixer_tiny")
    x = example_images(model)
    compiled = torch.compile(model, fullgraph=True)
    with torch.no_grad():
        assert (compiled(x) - _eager(model, x)).abs().max() <= TOL


@pytest.mark.parametrize("name", TINY)
def test_jit_trace_equals_eager(name):
    model = tiny(name)
    x = example_images(model)
    with torch.no_grad():
        traced = torch.jit.trace(model, (x,))
        assert (traced(x) - model(x)).abs().max() <= TOL


@pytest.mark.parametrize("name", TINY)
def test_torch_save_whole_model(name):
    model = tiny(name)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    x = example_images(model)
    assert (_eager(loaded, x) - _eager(model, x)).abs().max() == 0
    assert list(loaded.state_dict()) == list(model.state_dict())
    # training mode runs the power iterations on the restored buffers exactly as on the original
    loaded.train(), model.train()
    assert torch.equal(loaded(x), model(x))
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b), k


def test_torch_save_keeps_the_spectral_norm_parametrization():
    from torch.nn.utils import parametrize

    model = tiny("imixer_tiny")
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    parametrized = [m for m in loaded.modules() if parametrize.is_parametrized(m)]
    assert parametrized and all(type(m).__name__.startswith("Parametrized") for m in parametrized)
    buf2 = io.BytesIO()
    torch.save(loaded, buf2)  # and it saves again
    assert buf2.tell() > 0


@pytest.mark.parametrize("name", ["mixer_tiny", "imixer_tied_tiny"])
def test_safetensors_round_trip(name, tmp_path):
    report = export_model(tiny(name), tmp_path / "m.safetensors", metadata={"dataset": "x"})
    assert report.max_abs_diff == 0 and "max |export - eager| = 0" in str(report)


def test_errors(tmp_path, monkeypatch):
    model = tiny("mixer_tiny")
    with pytest.raises(ValueError, match="unknown format '.txt'.*pt2"):
        export_model(model, tmp_path / "m.txt")
    with pytest.raises(ExportMismatchError, match="differs from the eager model"):
        export_model(model, tmp_path / "m.pt2", tolerance=-1.0)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ModuleNotFoundError, match=r"hopfield\[export\]"):
        export_model(model, tmp_path / "m.onnx")


def test_eager_still_refuses_non_finite_images():
    model = tiny("mixer_tiny")
    x = example_images(model)
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        model(x)


def _user_block():
    """A declaration outside the catalogue: a token-axis chain whose two fast layers feed back
    on each other, iterated with the token axis last."""
    graph = hf.EnergyGraph(
        {"x": hf.NeuronLayer((4, 3), L.LayerNorm(3)), "a": hf.NeuronLayer((5, 3), L.Tanh(), tau=0),
         "b": hf.NeuronLayer((6, 3), L.GELU(), tau=0)},
        {"xa": S.Dense(4, 5, axis=-2), "ab": S.Dense(5, 6, axis=-2, tied=False)},
        {"xa": ("x", "a"), "ab": ("a", "b")})
    return hf.derive(graph, "x", max_iter=3)


BLOCKS = {"mixer": lambda: hf.blocks.mixer_block(4, 3),
          "imixer": lambda: hf.blocks.imixer_block(4, 3, max_iter=2),
          "vit": lambda: hf.blocks.vit_block(4, 4, 2),
          "user": _user_block}


@pytest.mark.parametrize("name", sorted(BLOCKS))
def test_a_bare_block_exports_through_exportable(name):
    """fx.GraphModule reserves the name ``graph``: a bare block goes through exportable(), and
    the program (dynamic batch) equals eager; its state dict keys are the block's, prefixed."""
    torch.manual_seed(0)
    blk = BLOCKS[name]().eval()
    if name == "user":
        assert [c.frame for c in blk.plans[0].components] == [0]
    shape = blk.graph.neurons["x"].shape
    x = torch.randn(3, *shape)
    batch = torch.export.Dim("batch", min=1)
    wrapped = blk.exportable()
    assert list(wrapped.state_dict()) == [f"block.{k}" for k in blk.state_dict()]
    program = torch.export.export(wrapped, (x,), dynamic_shapes=(({0: batch},),))
    x5 = torch.randn(5, *shape)
    assert (program.module()(x5) - _eager(blk, x5)).abs().max() <= TOL
    buf = io.BytesIO()
    torch.export.save(program, buf)
    buf.seek(0)
    assert (torch.export.load(buf).module()(x) - _eager(blk, x)).abs().max() <= TOL


@pytest.mark.skipif(bool(_ONNX_MISSING), reason=f"{', '.join(_ONNX_MISSING)} not installed: "
                    f"pip install 'hopfield[export]'")
def test_a_bare_block_exports_to_onnx_through_exportable(tmp_path):
    import onnxruntime

    torch.manual_seed(0)
    blk = _user_block().eval()
    x = torch.randn(3, 4, 3)
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(blk.exportable(), (x,), dynamo=True, verbose=False,
                                dynamic_shapes=(({0: batch},),))
    program.save(str(tmp_path / "b.onnx"))
    session = onnxruntime.InferenceSession(str(tmp_path / "b.onnx"),
                                           providers=["CPUExecutionProvider"])
    x5 = torch.randn(5, 4, 3)
    (out,) = session.run(None, {session.get_inputs()[0].name: x5.numpy()})
    assert (torch.from_numpy(out) - _eager(blk, x5)).abs().max() <= TOL
