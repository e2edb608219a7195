"""Shared fixtures: tiny, fast configurations of the real pipeline."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import images
import pytest

from fl_sim.config import RunConfig

# Flower writes an id to $FLWR_HOME/source (~/.flwr) on its first telemetry event (run_simulation makes one), even
# with telemetry off: the tests, and the Flower processes they start, send nothing and keep a Flower home of their own.
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ["FLWR_HOME"] = tempfile.mkdtemp(prefix="fl-sim-tests-flwr-home-")

#: A run small enough for unit tests: 16x16 digits, 3 clients, 2 rounds of 2 local steps, no attack.
TINY = {
    "num-server-rounds": 2,
    "data.image-size": 16,
    "simulation.num-clients": 3,
    "train.local-steps": 2,
    "train.batch-size": 8,
    "output.report": False,  # the report has its own tests
    "attack.enabled": False,  # the attack tests switch it on
    "attack.deep-budget-seconds": 0,  # undecided updates are kept, not attacked on (the deep pass has its tests)
}


@pytest.fixture
def tiny_config(tmp_path) -> RunConfig:
    """The TINY run, writing its results under the test's temporary directory."""
    return RunConfig.from_flat({**TINY, "output.dir": str(tmp_path / "results")})


def _flower_home_listing() -> dict[str, int]:
    """Every entry of the user's ``~/.flwr`` down to three levels, with its modification time."""
    home = Path(os.path.expanduser("~")) / ".flwr"
    listing = {}
    for top, dirs, files in os.walk(home):
        depth = len(Path(top).relative_to(home).parts) if Path(top) != home else 0
        if depth >= 2:
            dirs.clear()
        for name in dirs + files:
            path = Path(top) / name
            listing[str(path.relative_to(home))] = path.lstat().st_mtime_ns
    return listing


@pytest.fixture(scope="session", autouse=True)
def leaves_the_users_flower_home_alone():
    """The tests run Flower's CLI, SuperLinks and SuperNodes: none of them may write to the user's ``~/.flwr``."""
    before = _flower_home_listing()
    yield
    after = _flower_home_listing()
    changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    assert not changed, f"the tests changed ~/.flwr: {changed[:10]}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The container tests run last, their images built in the background from now on, while the others run."""
    containers = [item for item in items if "container_images" in getattr(item, "fixturenames", ())]
    if not containers or images.compose_command() is None or not images.docker_answers():
        return
    items[:] = [item for item in items if item not in containers] + containers
    images.start_build()


def pytest_sessionfinish() -> None:
    """A build still running when the tests end (none of its tests ran, or they were cut short) is stopped."""
    images.stop_build()
