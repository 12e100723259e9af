"""``import hopfield`` loads neither the training nor the analysis ring; both, and the old module
paths from before they moved (``hopfield.train``, ``hopfield.energy``, ...), load on first use
and give the moved modules themselves."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

import hopfield as hf
from hopfield._moved import MOVED

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args] if args else [sys.executable, "-c", code],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_import_hopfield_loads_no_outer_ring():
    proc = _run("import sys, hopfield as hf\n"
                "outer = ('hopfield.training', 'hopfield.analysis', 'hopfield.cli')\n"
                "print(sorted(m for m in sys.modules if m.startswith(outer)))\n"
                "hf.training.TrainConfig, hf.analysis.record_block\n"
                "print(sorted(m for m in sys.modules if m.startswith(outer))[:1])\n")
    assert proc.returncode == 0, proc.stderr
    before, after = proc.stdout.splitlines()
    assert before == "[]" and after == "['hopfield.analysis']"


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_old_path_gives_the_moved_module(old, new):
    module = importlib.import_module(f"hopfield.{old}")
    assert module is importlib.import_module(new)
    assert module.__name__ == new and module.__spec__.name == new  # its own spec, kept
    assert getattr(hf, old) is module


@pytest.mark.parametrize(("old", "new"), [
    ("hopfield.cli_commands", "hopfield.cli.commands"),
    ("hopfield.cli_energy", "hopfield.cli.energy"),
    ("hopfield.cli_energy_run", "hopfield.cli.energy_run"),
    ("hopfield.export", "hopfield.cli.export"),
])
def test_flat_cli_paths_give_the_cli_package_modules(old, new):
    """The command line's modules before they moved into ``hopfield.cli``."""
    assert importlib.import_module(old) is importlib.import_module(new)


def test_old_names_import_from_old_paths(monkeypatch):
    from hopfield.checkpoint import load_checkpoint
    from hopfield.cli_commands import load_for_cli
    from hopfield.cli_energy import cli_main as energy_cli_main
    from hopfield.cli_energy_run import energy_report
    from hopfield.data import load_dataset
    from hopfield.energy import record_block
    from hopfield.energy_plot import cli_main, load_model, plot_record
    from hopfield.export import export_model
    from hopfield.loader import BatchLoader
    from hopfield.train import TrainConfig, train
    from hopfield.trainutil import evaluate, write_curves

    import hopfield.training as training
    from hopfield.analysis import plot

    assert (TrainConfig, train, load_dataset, BatchLoader) == (
        training.TrainConfig, training.train, training.load_dataset, training.BatchLoader)
    assert plot_record is plot.plot_record
    from hopfield.cli import commands, energy, energy_run, export

    assert (load_for_cli, energy_cli_main, energy_report, export_model) == (
        commands.load_for_cli, energy.cli_main, energy_run.energy_report, export.export_model)
    assert all(callable(f) for f in (load_checkpoint, record_block, cli_main, load_model,
                                     evaluate, write_curves))
    import hopfield.train

    monkeypatch.setattr(hopfield.train, "cpu_has_native_bf16", lambda: "patched")
    assert importlib.import_module("hopfield.training.trainer").cpu_has_native_bf16() == "patched"


def test_unknown_attribute_still_raises():
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        hf.nonexistent  # noqa: B018
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("hopfield.nonexistent")


def test_python_dash_m_of_an_old_path_runs_the_new_module():
    proc = _run("", "-m", "hopfield.energy_plot", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "python -m hopfield energy" in proc.stdout
