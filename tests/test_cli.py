"""The command line: subcommands, usage errors without tracebacks, the error boundary."""

import json
import subprocess
import sys
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
    ["train", "--lr", "-1"], ["export", "run"], ["energy", "--n-iter", "-1"],
])
def test_bad_flags_give_usage_and_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "usage: hopfield" in err and "Traceback" not in err


@pytest.mark.parametrize("argv,match", [
    (["train", "--model", "nope"] + TINY[2:], "Unknown model 'nope'; valid models:"),
    (["train", "--dataset", "nope"] + TINY, "unknown dataset 'nope'"),
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


def test_energy_is_a_subcommand_of_the_one_parser(tmp_path, capsys):
    assert main(["energy", "--batch-size", "0"]) == 2
    err = capsys.readouterr().err
    assert "usage: hopfield energy" in err and "an integer >= 1" in err
    assert main(["energy", "--dataset", "random"]) == 2  # neither --model nor --checkpoint
    assert capsys.readouterr().err.startswith("error: give --model NAME or --checkpoint")
    out = tmp_path / "e.png"
    assert main(["energy", "--model", "et_tiny", "--dataset", "random", "--batch-size", "2",
                 "--n-iter", "1", "--out", str(out)]) == 0
    assert out.exists() and out.with_suffix(".json").exists()
    from hopfield.cli.energy import cli_main  # the same command from Python

    assert cli_main(["--bogus"]) == 2
    assert "usage: python -m hopfield energy" in capsys.readouterr().err


def _export_run(tmp_path):
    from hopfield.models import create_model
    from hopfield.training import checkpoint as ckpt

    model = create_model("imixer_tiny", depth=1, dim=16)
    meta = {"model_config": model.config, "dataset": "bundled", "classes": list("abcdefghij"),
            "mean": [0.3], "std": [0.3], "metrics": {}}
    ckpt.export_safetensors(model, tmp_path / "model.safetensors", meta)
    return tmp_path


@pytest.mark.parametrize("fmt", ["pt2", "safetensors"])
def test_export_writes_and_verifies(fmt, tmp_path, capsys):
    run = _export_run(tmp_path)
    out = tmp_path / "out" / f"m.{fmt}"
    assert main(["export", str(run), "--format", fmt, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.exists() and f"wrote {out} ({fmt}): max |export - eager| = " in printed
    assert float(printed.split("= ")[1].split()[0]) <= 1e-5
    assert main(["export", str(run), "--format", "zip"]) == 2
    assert "invalid choice: 'zip'" in capsys.readouterr().err


def test_export_default_name_and_missing_onnxruntime(tmp_path, capsys, monkeypatch):
    run = _export_run(tmp_path)
    assert main(["export", str(run / "model.safetensors"), "--format", "pt2"]) == 0
    assert (run / "model-export.pt2").exists()
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # not installed: run-time error
    assert main(["export", str(run), "--format", "onnx"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ONNX export needs") and "hopfield[export]" in err


def test_model_spec_names_a_block_factory(tmp_path, capsys):
    (tmp_path / "my_blocks.py").write_text(
        "from hopfield.blocks import mixer_block\n\n"
        "def cli_spec_block(num_tokens, dim):\n    return mixer_block(num_tokens, dim)\n")
    spec = f"{tmp_path / 'my_blocks.py'}:cli_spec_block"
    assert main(["describe", spec, "--dim", "16", "--depth", "1"]) == 0
    assert "token" in capsys.readouterr().out.lower()
    assert main(["describe", f"{tmp_path / 'nope.py'}:f"]) == 2
    assert "nope.py" in capsys.readouterr().err


def _subparsers():
    import argparse

    from hopfield.cli import build_parser

    ap = build_parser()
    return next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_every_flag_shows_its_default_once(monkeypatch):
    from hopfield.training.config import TrainConfig

    monkeypatch.setenv("COLUMNS", "200")  # one line per flag
    parsers = _subparsers()
    assert set(parsers) == {"train", "eval", "models", "describe", "energy", "recall", "export"}
    for name, parser in parsers.items():
        text = parser.format_help()
        assert "(default: None)" not in text and "(default: True)" not in text, name
        assert "(default: False)" not in text and "[]" not in text, name
        for line in text.splitlines():
            assert line.count("default") <= 1, f"{name}: {line}"
    train = parsers["train"].format_help()
    defaults = TrainConfig()
    for flag, field in [("--epochs", "epochs"), ("--weight-decay", "weight_decay"),
                        ("--seed", "seed"), ("--lr", "lr")]:
        lines = train.splitlines()
        i = next(i for i, x in enumerate(lines) if x.strip().startswith(flag + " "))
        text = lines[i] + lines[i + 1]  # a long flag puts its help on the next line
        assert f"(default: {getattr(defaults, field)})" in text, text
    assert "--num-workers" not in train


def test_removed_and_debug(monkeypatch, capsys):
    assert main(["train", "--num-workers", "2"]) == 2
    assert "unrecognized arguments: --num-workers" in capsys.readouterr().err
    monkeypatch.setenv("HOPFIELD_DEBUG", "1")
    with pytest.raises(ValueError, match="no model matches"):
        main(["models", "zzz*"])


def test_compile_flag_reaches_torch_compile(tmp_path, capsys, monkeypatch):
    import torch

    seen = []
    monkeypatch.setattr(torch, "compile", lambda m, **kw: seen.append(type(m).__name__) or m)
    run = tmp_path / "run"
    assert main(["train", *TINY, "--compile", "--out", str(run)]) == 0
    assert main(["eval", str(run), "--compile", "--max-eval-samples", "8"]) == 0
    assert seen == ["HopfieldClassifier", "HopfieldClassifier"]


def test_cli_docs_are_generated_from_the_parser(monkeypatch):
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_cli_docs", ROOT / "scripts" /
                                                  "gen_cli_docs.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    page = gen.PAGE.read_text()
    for name, parser in _subparsers().items():  # every subcommand and flag, on any Python
        assert f"## `hopfield {name}`" in page, name
        for action in parser._actions:
            for flag in action.option_strings:
                assert flag in page, f"{name} {flag} is missing: run scripts/gen_cli_docs.py"
    python = ".".join(map(str, sys.version_info[:2]))
    if f"(Python {python})" not in page:
        pytest.skip(f"docs/api/cli.md was generated with another Python than {python}; argparse "
                    f"formats help differently across versions")
    monkeypatch.setenv("COLUMNS", gen.WIDTH)
    assert gen.render() == page, "docs/api/cli.md drifted: run python scripts/gen_cli_docs.py"


def test_python_dash_m_bad_flag_has_no_traceback():
    proc = subprocess.run([sys.executable, "-m", "hopfield", "train", "--epochs", "many"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert "expected an integer >= 1, got 'many'" in proc.stderr and "Traceback" not in proc.stderr


def _captured_train(monkeypatch):
    """Replace the trainer by a recorder of the settings `hopfield train` passes it."""
    import hopfield.training.trainer as trainer

    seen = {}

    def fake_train(config, **overrides):
        seen.update(config, **overrides)
        raise KeyboardInterrupt  # stop here: nothing is trained (exit status 130)

    monkeypatch.setattr(trainer, "train", fake_train)
    return seen


def test_config_file_sets_what_the_flags_do_not(tmp_path, monkeypatch, capsys):
    config = tmp_path / "run.toml"
    config.write_text('epochs = 3\nbatch-size = 8\nlr = 0.01\nclip_grad = 0\nhflip = false\n'
                      'tensorboard = false\n[model_kwargs]\ndepth = 1\ndim = 16\n')
    seen = _captured_train(monkeypatch)
    # --lr given with its default value still wins over the file
    assert main(["train", "--config", str(config), "--batch-size", "16", "--lr", "0.001",
                 "--depth", "2"]) == 130
    assert seen["epochs"] == 3 and seen["batch_size"] == 16 and seen["lr"] == 0.001
    assert seen["clip_grad"] is None and seen["hflip"] is False
    assert seen["model_kwargs"] == {"depth": 2, "dim": 16}
    assert seen["weight_decay"] == 0.05  # neither in the file nor given: the default


@pytest.mark.parametrize("text, match", [
    ("epoch = 3\n", "unknown key 'epoch'"),
    ("epochs = 2.5\n", "epochs must be an integer"),
    ("lr = 'fast'\n", "lr must be a number"),
    ("plot = 1\n", "plot must be true or false"),
    ("lr = -1.0\n", "lr must be > 0"),
    ("epochs = \n", "not valid TOML"),
    (None, "cannot read the config file"),
])
def test_config_file_errors_name_the_file_and_exit_2(text, match, tmp_path, monkeypatch, capsys):
    config = tmp_path / "run.toml"
    if text is not None:
        config.write_text(text)
    _captured_train(monkeypatch)
    assert main(["train", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {config}") and match in err and len(err.splitlines()) == 1
