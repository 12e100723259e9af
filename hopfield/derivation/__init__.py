"""The derivation wing: plan a declared energy, execute the plan as a block, report on it."""

from .block import DerivedBlock
from .builder import derive
from .exportable import ExportableBlock, exportable
from .plan import Component, Group, Plan
from .report import LyapunovReport, describe_block, lyapunov_report
from .trace import SolveTrace, StepTrace, Trace

__all__ = ["Component", "DerivedBlock", "ExportableBlock", "Group", "LyapunovReport", "Plan",
           "SolveTrace", "StepTrace", "Trace", "derive", "describe_block", "exportable",
           "lyapunov_report"]
