"""Real architectures (timm, torchvision, Hugging Face transformers) against reference implementations.

Every test here carries the ``real_models`` marker. A test needing a library that is not installed is skipped
(``pytest.importorskip``): the main test venv runs the transformers tests, the second CI venv (torch 2.14.1,
torchvision, timm, grad-cam) runs them all with ``python -m pytest -m real_models tests/real_models``.
"""

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    """A test in this folder without the marker would escape ``-m real_models``: refuse it."""
    unmarked = [
        i.nodeid
        for i in items
        if i.nodeid.startswith("tests/real_models/") and i.get_closest_marker("real_models") is None
    ]
    if unmarked:
        raise pytest.UsageError(f"tests/real_models tests must be marked real_models: {unmarked}")


@pytest.fixture(autouse=True)
def seeded():
    """The same random weights and inputs whatever ran before."""
    torch.manual_seed(0)
    yield
