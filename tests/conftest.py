"""Shared fixtures: tiny, fast configurations of the real pipeline."""

from __future__ import annotations

import pytest

from fl_sim.config import RunConfig

#: A run small enough for unit tests: 16x16 digits, 3 clients, 2 rounds of 2 local steps.
TINY = {
    "num-server-rounds": 2,
    "data.image-size": 16,
    "simulation.num-clients": 3,
    "train.local-steps": 2,
    "train.batch-size": 8,
    "output.report": False,  # the report has its own tests
}


@pytest.fixture
def tiny_config(tmp_path) -> RunConfig:
    """The TINY run, writing its results under the test's temporary directory."""
    return RunConfig.from_flat({**TINY, "output.dir": str(tmp_path / "results")})
