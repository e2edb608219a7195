"""Failing clients (injected with faults.*): recorded, left out, and the run goes on or stops clearly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from clients.client_app import create_client_app
from fl_sim.config import RunConfig
from fl_sim.errors import ConfigError, EngineStopped, FederationError
from fl_sim.results import read_events
from lab.simulation import simulate
from strategies.run_recorder import failure_cause

from local_grid import FIRST_NODE_ID, LocalGrid, run_locally
from spy import Spy


def test_a_raising_client_is_recorded_and_the_round_aggregates_the_rest(tiny_config):
    spy = Spy()
    run_dir = run_locally(tiny_config.with_overrides({"faults.partitions": "0", "faults.rounds": "2"}), spy)
    events = read_events(run_dir)
    failures = [e for e in events if e["event"] == "client-failure"]
    assert [(e["round"], e["node_id"]) for e in failures] == [(2, FIRST_NODE_ID)]
    assert "InjectedFault" in failures[0]["reason"] and "partition 0 fails in round 2" in failures[0]["reason"]
    assert sorted(spy.seen) == [(1, 0), (1, 1), (1, 2), (2, 1), (2, 2)]
    assert [e["clients"] for e in events if e["event"] == "round" and e["round"] > 0] == [3, 2]
    assert events[-1]["status"] == "completed"


def test_a_client_that_misses_the_round_timeout_is_recorded_as_no_reply(tiny_config):
    spy = Spy()
    config = tiny_config.with_overrides({"faults.partitions": "2", "faults.rounds": "1", "faults.mode": "timeout",
                                         "faults.delay-seconds": 1.5, "server.round-timeout": 1.0})
    run_dir = run_locally(config, spy)
    events = read_events(run_dir)
    failures = [e for e in events if e["event"] == "client-failure"]
    assert [(e["round"], e["node_id"]) for e in failures] == [(1, FIRST_NODE_ID + 2)]
    assert "no reply before the round's timeout" in failures[0]["reason"]
    assert sorted(spy.seen) == [(1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]
    assert events[-1]["status"] == "completed"


def test_a_node_the_superlink_lost_is_one_failure_of_that_node(tiny_config):
    """Flower's SuperLink answers for a node that missed its heartbeats (a killed container) itself."""
    lost = FIRST_NODE_ID + 2
    grid = LocalGrid(create_client_app(tiny_config), tiny_config.simulation.num_clients, unreachable={lost})
    run_dir = run_locally(tiny_config, grid=grid)
    events = read_events(run_dir)
    failures = [e for e in events if e["event"] == "client-failure"]
    assert [(e["round"], e["node_id"]) for e in failures] == [(1, lost), (2, lost)]
    assert all("Node Unavailable" in e["reason"] for e in failures)
    assert [e["clients"] for e in events if e["event"] == "round" and e["round"] > 0] == [2, 2]
    assert events[-1]["status"] == "completed"


def test_a_client_returning_nan_is_rejected_and_the_model_stays_finite(tiny_config):
    run_dir = run_locally(tiny_config.with_overrides({"faults.partitions": "1", "faults.mode": "nan"}))
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
        run_locally(config)
    run_dir = next(Path(tiny_config.output.dir).iterdir())
    events = read_events(run_dir)
    assert [e["round"] for e in events if e["event"] == "client-failure"] == [2, 2]
    assert events[-1]["event"] == "run-end" and events[-1]["status"] == "failed"


@pytest.mark.parametrize("flat, message", [
    ({"faults.partitions": "0,x"}, "config key 'faults.partitions' must list whole numbers"),
    ({"faults.rounds": "-1"}, "config key 'faults.rounds' must list whole numbers"),
    ({"faults.partitions": "7", "simulation.num-clients": 3}, "names partition 7 but there are only 3 clients"),
    ({"faults.mode": "timeout"}, "'faults.mode' is timeout but 'faults.delay-seconds' is 0"),
    ({"faults.mode": "hang"}, "config key 'faults.mode' must be one of"),
])
def test_bad_fault_settings_name_the_key(flat, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_flat(flat)


@pytest.mark.e2e
def test_a_client_dropping_out_on_ray_is_recorded_and_later_rounds_keep_every_client(tiny_config):
    config = tiny_config.with_overrides({"faults.partitions": "1", "faults.rounds": "1", "faults.mode": "drop"})
    events = read_events(simulate(config))
    failures = [e for e in events if e["event"] == "client-failure"]
    assert [e["round"] for e in failures] == [1]
    assert failures[0]["reason"] == ("ClientDroppedOut: faults.partitions: partition 1 dropped out of round 1 "
                                     "after training, before uploading")
    assert "Traceback" in failures[0]["detail"] or "File " in failures[0]["detail"]
    assert [e["clients"] for e in events if e["event"] == "round" and e["round"] > 0] == [2, 3]
    assert events[-1]["status"] == "completed"


@pytest.mark.parametrize("reason, cause", [
    ("InjectedFault: partition 0 fails", "InjectedFault: partition 0 fails"),
    ("<class 'ray.exceptions.ActorDiedError'>:<'The actor died unexpectedly.\n\tclass_name: ClientAppActor'>",
     "ActorDiedError: The actor died unexpectedly."),
    ("<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'\x1b[36mray::ClientAppActor.run()\x1b[39m\n"
     "  File \"client_app.py\", line 56, in train\nclients.faults.ClientDroppedOut: partition 1 dropped out\n\n"
     "The above exception was the direct cause of the following exception:\n"
     "flwr.clientapp.client_app.ClientAppException: \nException ClientAppException occurred.'>",
     "ClientDroppedOut: partition 1 dropped out"),
])
def test_failure_reasons_are_cut_to_their_root_cause(reason, cause):
    assert failure_cause(reason)[0] == cause
    assert "\x1b" not in failure_cause(reason)[1]


@pytest.mark.e2e
def test_a_crashed_simulation_engine_ends_the_run_at_once(tiny_config, monkeypatch):
    # Flower's engine fails to start its actors (no node has 3 CPUs); the pre-flight check that
    # would refuse this is bypassed so that the engine really crashes under a waiting ServerApp
    monkeypatch.setattr("lab.simulation._check_client_resources", lambda sim: None)
    config = tiny_config.with_overrides({"simulation.client-cpus": 3, "server.round-timeout": 600})
    started = time.monotonic()
    with pytest.raises(EngineStopped, match=r"^Flower's Simulation Engine stopped \(ValueError: ActorPool is empty"
                                            r".*fl-sim run --resume "):
        simulate(config)
    assert time.monotonic() - started < 120
    run_dir = next(Path(tiny_config.output.dir).iterdir())
    assert read_events(run_dir)[-1]["status"] == "failed"
