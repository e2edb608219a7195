"""Failing clients (injected with faults.*): recorded, left out, and the run goes on or stops clearly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from clients.client_app import create_client_app
from fl_sim.config import RunConfig
from fl_sim.errors import ConfigError, FederationError
from fl_sim.results import read_events
from spy import Spy
from local_grid import FIRST_NODE_ID, LocalGrid
from strategies.server_app import run_federation


def _run(config: RunConfig, *plugins):
    grid = LocalGrid(create_client_app(config), config.simulation.num_clients)
    return run_federation(grid, config, plugins=lambda cfg, writer: list(plugins))


def test_a_raising_client_is_recorded_and_the_round_aggregates_the_rest(tiny_config):
    spy = Spy()
    run_dir = _run(tiny_config.with_overrides({"faults.partitions": "0", "faults.rounds": "2"}), spy)
    events = read_events(run_dir)
    failures = [e for e in events if e["event"] == "client-failure"]
    assert [(e["round"], e["node_id"]) for e in failures] == [(2, FIRST_NODE_ID)]
    assert "InjectedFault" in failures[0]["reason"] and "partition 0 fails in round 2" in failures[0]["reason"]
    assert sorted(spy.seen) == [(1, 0), (1, 1), (1, 2), (2, 1), (2, 2)]
    assert [e["clients"] for e in events if e["event"] == "round" and e["round"] > 0] == [3, 2]
    assert events[-1]["status"] == "completed"


def test_a_client_returning_nan_is_rejected_and_the_model_stays_finite(tiny_config):
    run_dir = _run(tiny_config.with_overrides({"faults.partitions": "1", "faults.mode": "nan"}))
    events = read_events(run_dir)
    rejected = [e for e in events if e["event"] == "update-rejected"]
    assert [(e["round"], e["partition_id"]) for e in rejected] == [(1, 1), (2, 1)]
    model = torch.load(run_dir / "model.pt")
    assert all(torch.isfinite(v).all() for v in model.values() if v.is_floating_point())


def test_too_few_usable_updates_stop_the_run_with_a_clear_message(tiny_config):
    config = tiny_config.with_overrides({"faults.partitions": "0,1", "faults.rounds": "2",
                                         "server.min-train-nodes": 2})
    with pytest.raises(FederationError, match=r"round 2: only 1 of 3 clients returned a usable update, fewer "
                                              r"than server.min-train-nodes=2"):
        _run(config)
    run_dir = next(Path(tiny_config.output.dir).iterdir())
    events = read_events(run_dir)
    assert [e["round"] for e in events if e["event"] == "client-failure"] == [2, 2]
    assert events[-1]["event"] == "run-end" and events[-1]["status"] == "failed"


@pytest.mark.parametrize("flat, message", [
    ({"faults.partitions": "0,x"}, "config key 'faults.partitions' must list whole numbers"),
    ({"faults.rounds": "-1"}, "config key 'faults.rounds' must list whole numbers"),
    ({"faults.partitions": "7", "simulation.num-clients": 3}, "names partition 7 but there are only 3 clients"),
])
def test_bad_fault_settings_name_the_key(flat, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_flat(flat)
