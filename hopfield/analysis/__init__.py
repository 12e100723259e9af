"""The analysis ring: energy recorded during inference (:mod:`~hopfield.analysis.record`) and its
figures (:mod:`~hopfield.analysis.plot`).

It reads the core, the derivation and the models, never the training ring; ``import hopfield``
does not load it (``hf.analysis`` does, on first use). The ``hopfield energy`` command is
:mod:`hopfield.cli.energy`. Theory: ``docs/concepts/dynamics.md#energy-descent-during-inference``.
"""

from .plot import plot_energy, plot_record, plot_residual, plot_terms
from .record import (
    LABEL_LYAPUNOV,
    LABEL_UNTIED,
    EnergyRecord,
    make_label,
    record_block,
    record_descent,
    record_energy,
    record_model,
)

__all__ = ["EnergyRecord", "record_block", "record_model", "record_descent", "record_energy",
           "make_label", "LABEL_LYAPUNOV", "LABEL_UNTIED", "plot_record", "plot_energy",
           "plot_terms", "plot_residual"]
