"""The ``hopfield energy`` command from Python, and the names that used to live here.

:func:`cli_main` is ``hopfield energy`` with a list of arguments (the one parser and error
boundary of :mod:`hopfield.cli`); what the command does is :mod:`hopfield.cli.energy_run`
(:func:`~hopfield.cli.energy_run.energy_report` for a model and batch you already have).
:func:`load_model` rebuilds a model from a checkpoint or ``.safetensors`` export.

This module was ``hopfield.energy_plot`` together with the figures; that path still imports and
gives this module, whose plotting names (``plot_record``, ...) come from
:mod:`hopfield.analysis.plot`.

Example:
    >>> from hopfield.cli.energy import cli_main
    >>> cli_main(["--model", "imixer_tiny", "--dataset", "random", "--batch-size", "4",
    ...           "--out", "energy.png"])  # doctest: +SKIP
    0
"""

from __future__ import annotations

import os
import sys

# the plotting names are re-exported: ``hopfield.energy_plot`` (the old path) gives this module
from ..analysis.plot import plot_energy, plot_record, plot_residual, plot_terms
from . import main
from .commands import load_for_cli

__all__ = ["load_model", "cli_main", "plot_record", "plot_energy", "plot_terms", "plot_residual"]


def load_model(path: str | os.PathLike, name: str | None = None, **overrides):
    """Rebuild a model from saved weights (read with ``weights_only``): a run folder, a training
    checkpoint (``{"model": state_dict, "model_config" or "config": model.config, ...}``), a
    ``.safetensors`` export, or a plain state dict together with ``name`` (a registered model or
    a block-factory spec). Returns ``(model, info)``; ``info`` holds ``config`` and, when the
    file records it, ``normalize`` (per-channel mean/std). ``overrides`` change the recorded
    settings (``model_from_config``) before the weights load."""
    model, meta = load_for_cli(path, model=name, **overrides)
    info = {"config": model.config}
    if meta.get("normalize"):
        info["normalize"] = dict(meta["normalize"])
    return model, info


def cli_main(argv: list[str]) -> int:
    """``hopfield energy ARGV...``: returns the exit status (0 ok, 2 bad input, 1 failed)."""
    return main(["energy", *argv], prog="python -m hopfield")


if __name__ == "__main__":  # python -m hopfield.cli.energy ...
    sys.exit(cli_main(sys.argv[1:]))
