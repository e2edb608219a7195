"""Run a federation on Flower's Simulation Engine (Ray backend) from a :class:`RunConfig`."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flwr.simulation import run_simulation

from clients.client_app import create_client_app
from fl_sim.config import RunConfig
from fl_sim.data import load_client_data
from fl_sim.errors import ConfigError
from fl_sim.results import resolve_run_dir
from strategies.server_app import PluginFactory, create_server_app


def preflight(config: RunConfig) -> RunConfig:
    """Check what a user can get wrong before any process starts; return the config with its run dir fixed.

    Loads the data set and the first client's partition (so a missing data root or an
    impossible split fails here, in one line) and refuses an existing results directory.
    """
    config = resolve_run_dir(config)
    load_client_data(config.data, 0, config.simulation.num_clients, config.seed)
    run_dir = Path(config.output.dir) / config.output.run_id
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"results directory '{run_dir}' already exists and is not empty; "
                          f"choose another output.run-id or remove it")
    return config


class _DropRunSimulationDeprecation(logging.Filter):
    """Hide Flower's notice that ``run_simulation`` is deprecated: it is the programmatic API we mean to use."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "`run_simulation` function is deprecated" not in record.getMessage()


def simulate(config: RunConfig, plugins: PluginFactory | None = None, verbose: bool = False) -> Path:
    """Run the configured federation in simulation and return its results directory."""
    config = preflight(config)
    sim = config.simulation
    backend_config = {
        "client_resources": {"num_cpus": sim.client_cpus, "num_gpus": sim.client_gpus},
        "init_args": {"include_dashboard": False, "logging_level": logging.WARNING},
    }
    flwr_logger = logging.getLogger("flwr")
    flwr_logger.setLevel(logging.DEBUG if verbose else logging.WARNING)
    flwr_logger.addFilter(_DropRunSimulationDeprecation())
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    run_simulation(
        server_app=create_server_app(config, plugins),
        client_app=create_client_app(config),
        num_supernodes=sim.num_clients,
        backend_config=backend_config,
        verbose_logging=verbose,
    )
    return Path(config.output.dir) / config.output.run_id
