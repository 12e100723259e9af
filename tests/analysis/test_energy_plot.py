"""Plots of recorded energy (hopfield.analysis.plot) and the ``energy`` command-line function."""

import json

import matplotlib
import pytest
import torch

import hopfield as hf
from hopfield.analysis.plot import plot_record
from hopfield.analysis.record import record_block, record_descent, record_model
from hopfield.cli.energy import cli_main

matplotlib.use("Agg")
PNG = b"\x89PNG\r\n\x1a\n"


def _texts(fig):
    out = [t.get_text() for t in fig.texts]
    for sub in getattr(fig, "subfigs", []):
        out += [t.get_text() for t in sub.texts]
        out += [t.get_text() for leg in sub.legends for t in leg.get_texts()]
    for ax in fig.get_axes():
        out.append(ax.get_title())
        if ax.get_legend() is not None:
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    out += [t.get_text() for leg in fig.legends for t in leg.get_texts()]
    return "\n".join(out)


def test_single_block_plot_written(tmp_path):
    blk = hf.blocks.tied_imixer_block(8, 8, max_iter=4)
    rec = record_block(blk, torch.randn(6, 8, 8), name="tied iMixer")
    fig = plot_record(rec, tmp_path / "e.png")
    data = (tmp_path / "e.png").read_bytes()
    assert data.startswith(PNG) and len(data) > 20_000
    text = _texts(fig)
    assert "tied: Lyapunov energy" in text and "residual (log scale)" in text
    assert any(ax.get_yscale() == "log" for ax in fig.get_axes())
    assert all(ax.get_xlabel() for ax in fig.get_axes())
    matplotlib.pyplot.close(fig)


def test_untied_model_grid_labelled_untied(tmp_path):
    model = hf.models.create_model("imixer_tiny", depth=3, dim=16)
    rec = record_model(model, torch.randn(3, 1, 28, 28))
    fig = plot_record(rec, tmp_path / "grid.png")
    assert (tmp_path / "grid.png").read_bytes().startswith(PNG)
    text = _texts(fig)
    assert "untied: residual + surrogate energy" in fig._suptitle.get_text()
    assert "untied" in text and "tied: Lyapunov" not in text
    assert len([ax for ax in fig.get_axes() if ax.get_visible()]) >= 5  # 3 blocks + 2 summaries
    matplotlib.pyplot.close(fig)


def test_descent_plot(tmp_path):
    g = hf.EnergyGraph({"v": hf.NeuronLayer(5, hf.lagrangians.Identity()),
                        "h": hf.NeuronLayer(4, hf.lagrangians.ReLU())},
                       {"W": hf.synapses.Dense(5, 4)}, {"W": ("v", "h")})
    rec = record_descent(g, g.init_states(8, std=1.0), steps=30)
    fig = plot_record(rec, tmp_path / "d.png", title="descent")
    assert (tmp_path / "d.png").stat().st_size > 10_000
    matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match="empty"):
        plot_record(type(rec)())


@pytest.mark.parametrize("argv, msg", [
    ([], "--model NAME or --checkpoint"),
    (["--model", "imixer_tiny", "--batch-size", "0"], "an integer >= 1"),
    (["--model", "imixer_tiny", "--n-iter", "-1"], "integer >= 0"),
    (["--model", "imixer_tiny", "--tol", "nan"], "a finite number > 0"),
    (["--model", "imixer_tiny", "--solver", "newton"], "invalid choice"),
    (["--model", "imixer_tiny", "--bogus"], "unrecognized arguments"),
    (["--model", "no_such_model", "--dataset", "random"], "Unknown model"),
    (["--checkpoint", "/nonexistent/ckpt.pt"], "does not exist"),
])
def test_cli_bad_flags(argv, msg, capsys, tmp_path):
    code = cli_main(argv + ["--out", str(tmp_path / "e.png")])
    err = capsys.readouterr().err
    assert code != 0 and msg in err and "Traceback" not in err
    assert not (tmp_path / "e.png").exists()


def test_cli_help(capsys):
    assert cli_main(["--help"]) == 0
    assert "--checkpoint" in capsys.readouterr().out


def test_cli_writes_png_csv_json(tmp_path, capsys):
    out = tmp_path / "run" / "energy.png"
    code = cli_main(["--model", "et_tiny", "--dataset", "random", "--batch-size", "2",
                     "--n-iter", "2", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    for suffix in (".png", ".csv", ".json"):
        assert out.with_suffix(suffix).stat().st_size > 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert len(doc["blocks"]) == 4 and {r["step"] for r in doc["rows"]} == {0, 1, 2}
    assert "wrote" in capsys.readouterr().out


def test_cli_checkpoint_and_bundled_data(tmp_path, capsys):
    model = hf.models.create_model("imixer_tied_tiny", depth=1, dim=16)
    ckpt = tmp_path / "m.pt"
    torch.save({"model": model.state_dict(), "config": model.config}, ckpt)
    out = tmp_path / "e.png"
    code = cli_main(["--checkpoint", str(ckpt), "--batch-size", "4", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert out.exists() and out.with_suffix(".csv").read_text().count("\n") > 4
    assert "tied: Lyapunov energy" in captured.out
    # a plain state dict needs the model's name (and here its non-default sizes)
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    assert cli_main(["--checkpoint", str(tmp_path / "plain.pt"), "--out", str(out)]) == 2
    assert "--model NAME" in capsys.readouterr().err
