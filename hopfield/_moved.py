"""The old paths of the modules that moved into sub-packages stay importable, lazily.

``import hopfield.train`` (or ``from hopfield.train import train``) returns the module
``hopfield.training.trainer`` itself, not a copy: a name patched through the old path is patched
in the new module. Nothing here loads until an old path is used, so ``import hopfield`` does not
load the training or analysis ring.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__all__ = ["MOVED", "install"]

# old module name under ``hopfield`` -> the module that holds it now
MOVED = {
    "train": "hopfield.training.trainer",
    "data": "hopfield.training.data",
    "loader": "hopfield.training.loader",
    "checkpoint": "hopfield.training.checkpoint",
    "trainutil": "hopfield.training.trainutil",
    "energy": "hopfield.analysis.record",
    "energy_plot": "hopfield.cli.energy",
    "cli_commands": "hopfield.cli.commands",
    "cli_energy": "hopfield.cli.energy",
    "cli_energy_run": "hopfield.cli.energy_run",
    "export": "hopfield.cli.export",
}


class _OldPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds ``hopfield.<old name>`` and hands out the module at its new path."""

    def __init__(self, package: str):
        self.package = package
        self._own_spec: dict[str, object] = {}

    def _target(self, fullname: str) -> str | None:
        parent, _, name = fullname.rpartition(".")
        return MOVED.get(name) if parent == self.package else None

    def find_spec(self, fullname, path=None, target=None):
        if self._target(fullname) is None:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        module = importlib.import_module(self._target(spec.name))
        self._own_spec[module.__name__] = module.__spec__
        return module

    def exec_module(self, module):
        # the import system stamped the old path's spec on the module: give it back its own
        module.__spec__ = self._own_spec.pop(module.__name__, module.__spec__)

    def get_code(self, fullname):  # ``python -m hopfield.<old name>`` runs the new module
        source = (f"import runpy\nrunpy.run_module({self._target(fullname)!r}, "
                  f"run_name='__main__', alter_sys=True)\n")
        return compile(source, f"<{fullname}: moved to {self._target(fullname)}>", "exec")


def install(package: str) -> None:
    """Put the finder of ``package``'s old paths on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _OldPaths) and f.package == package for f in sys.meta_path):
        sys.meta_path.append(_OldPaths(package))
