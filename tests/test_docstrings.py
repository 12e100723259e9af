"""Every example in a docstring of the package runs and shows what it prints (doctest)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import hopfield

MODULES = sorted(m.name for m in pkgutil.walk_packages(hopfield.__path__, "hopfield.")
                 if not m.name.endswith("__main__"))


def test_the_package_has_examples():
    finder = doctest.DocTestFinder()
    count = sum(len(t.examples) for name in MODULES
                for t in finder.find(importlib.import_module(name), name))
    assert count >= 30


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder().find(module, name):
        if test.examples:
            runner.run(test)
    assert runner.failures == 0, f"{runner.failures} docstring example(s) of {name} failed " \
                                 f"(report above)"
