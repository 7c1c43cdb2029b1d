"""The dashboard tests' log folder, made once per session (see ``dashboard_runs``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dashboard_runs import SYNTHETIC_RUN, fit_run, write_synthetic


@pytest.fixture(scope="session")
def dashboard_logdir(tmp_path_factory) -> Path:
    """A log folder with the real short fit and the synthetic run."""
    root = tmp_path_factory.mktemp("dashboard_logs")
    fit_run(root)
    write_synthetic(root / SYNTHETIC_RUN)
    return root
