"""Shared test settings: deterministic seeds, float64 helpers, the ``gpu`` marker's skip."""

import os

import pytest
import torch
from hypothesis import settings

# property tests draw the same cases on every run: a red CI is reproducible, never a dice roll
settings.register_profile("hopfield", derandomize=True, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "hopfield"))

os.environ.setdefault("MPLBACKEND", "Agg")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (run on a GPU machine: pytest -m gpu)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture
def f64():
    """Run the test with float64 as the default dtype."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


@pytest.fixture(scope="session")
def needs_compile():
    """Skip, saying why, where ``torch.compile`` cannot compile (no C compiler, say)."""
    try:
        torch.compile(lambda t: torch.relu(t) * 2.0, fullgraph=True)(torch.randn(3))
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"torch.compile does not work here: {type(err).__name__}: {err}"[:200])
