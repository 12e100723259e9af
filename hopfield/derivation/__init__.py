"""The derivation wing: plan a declared energy, execute the plan as a block, report on it."""

from .block import DerivedBlock, derive
from .plan import Group
from .report import LyapunovReport, describe_block, lyapunov_report

__all__ = ["DerivedBlock", "Group", "LyapunovReport", "derive", "describe_block",
           "lyapunov_report"]
