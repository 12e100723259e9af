"""The command line: subcommands, usage errors without tracebacks, the error boundary."""

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from hopfield.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model", "mixer_tiny", "--depth", "1", "--dim", "32", "--epochs", "1",
        "--batch-size", "16", "--max-train-samples", "32", "--max-eval-samples", "16", "--quiet",
        "--no-plot"]


@pytest.mark.parametrize("argv", [
    ["train", "--epochs", "x"], ["train", "--bogus"], ["train", "--amp", "fp8"],
    ["train", "--solver", "newton"], ["train", "--model-arg", "depth"], ["eval"],
    ["models", "a", "b"], ["describe"], ["describe", "mixer_tiny", "--block", "x"], ["nope"], [],
])
def test_bad_flags_give_usage_and_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: hopfield" in err and "Traceback" not in err


@pytest.mark.parametrize("argv,match", [
    (["train", "--model", "nope"] + TINY[2:], "Unknown model 'nope'; valid models:"),
    (["train", "--dataset", "nope"] + TINY, "unknown dataset 'nope'"),
    (["train", "--lr", "-1"] + TINY, "lr must be > 0"),
    (["train", "--model-arg", "wings=2"] + TINY, "create_model('mixer_tiny')"),
    (["eval", "does/not/exist.safetensors"], "does/not/exist.safetensors does not exist"),
    (["describe", "vit_tiny", "--block", "7"], "--block 7: vit_tiny has blocks 0..3"),
    (["models", "zzz*"], "no model matches 'zzz*'"),
])
def test_library_errors_become_one_line_and_exit_2(argv, match, capsys, tmp_path):
    argv = [a.replace("OUT", str(tmp_path)) for a in argv]
    if argv[0] == "train":
        argv += ["--out", str(tmp_path / "run")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and match in err and "Traceback" not in err


def test_unwritable_out_exits_1(tmp_path, capsys):
    (tmp_path / "f").write_text("")
    assert main(["train", *TINY, "--out", str(tmp_path / "f" / "run")]) == 1
    assert "is not writable" in capsys.readouterr().err


def test_models_and_describe(capsys):
    assert main(["models", "imixer*tiny"]) == 0
    out = capsys.readouterr().out.split()
    assert "imixer_tiny" in out and "mixer_tiny" not in out
    assert main(["describe", "imixer_tiny", "--n-iter", "3", "--dim", "32"]) == 0
    assert "IMPLICIT fast group" in capsys.readouterr().out


def test_train_then_eval(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(run)]) == 0
    assert {"last.pt", "metrics.jsonl", "model.safetensors"} <= {p.name for p in run.iterdir()}
    capsys.readouterr()
    assert main(["eval", str(run), "--max-eval-samples", "16"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["dataset"] == "bundled" and result["images"] == 16 and 0 <= result["acc"] <= 1
    assert main(["eval", str(run / "last.pt"), "--split", "train", "--max-eval-samples", "8"]) == 0
    capsys.readouterr()
    png = tmp_path / "confusion.png"
    assert main(["eval", str(run), "--per-class", "--confusion", str(png)]) == 0
    detail = json.loads(capsys.readouterr().out)
    matrix = detail["confusion"]
    assert len(matrix) == 10 and all(len(row) == 10 for row in matrix)
    assert sum(map(sum, matrix)) == detail["images"]
    assert sum(matrix[i][i] for i in range(10)) == round(detail["acc"] * detail["images"])
    per_class = detail["per_class_acc"]
    assert list(per_class) == detail["classes"] and detail["classes"][0] == "T-shirt/top"
    for i, name in enumerate(detail["classes"]):
        assert per_class[name] == pytest.approx(matrix[i][i] / sum(matrix[i]))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_refuses_a_dataset_with_another_number_of_classes(tmp_path, capsys):
    from hopfield.models import create_model
    from hopfield.training import checkpoint as ckpt

    model = create_model("mixer_tiny", num_classes=3, depth=1, dim=16)
    meta = {"model_config": model.config, "dataset": "bundled", "classes": ["a", "b", "c"],
            "mean": [0.3], "std": [0.3], "metrics": {}}
    ckpt.export_safetensors(model, tmp_path / "model.safetensors", meta)
    assert main(["eval", str(tmp_path), "--max-eval-samples", "4"]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors has 3 output classes but bundled has 10" in err
    assert "--dataset" in err


def test_energy_dispatches_lazily(monkeypatch, capsys):
    seen = {}
    fake = types.ModuleType("hopfield.cli_energy")
    fake.cli_main = lambda argv: seen.setdefault("argv", argv) and 0
    monkeypatch.setitem(sys.modules, "hopfield.cli_energy", fake)
    assert main(["energy", "--model", "imixer_tiny", "--x"]) == 0
    assert seen["argv"] == ["--model", "imixer_tiny", "--x"]
    monkeypatch.setitem(sys.modules, "hopfield.cli_energy", None)  # import fails
    assert main(["energy"]) == 2
    assert "needs the module hopfield.cli_energy" in capsys.readouterr().err


def test_python_dash_m_bad_flag_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "hopfield", "train", "--epochs", "many"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert "invalid int value: 'many'" in proc.stderr and "Traceback" not in proc.stderr
