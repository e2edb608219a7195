"""Secure aggregation: Flower's SecAgg+ under the intercepting strategy, with the attacker on the aggregate.

Whole runs on the in-process grid (the real ServerApp logic, the real ClientApp with Flower's ``secaggplus_mod``),
compared with the same runs without SecAgg+.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from clients.client_app import create_client_app
from fl_sim.config import RunConfig
from fl_sim.errors import ConfigError, FederationError
from fl_sim.reporting.report import write_report
from fl_sim.results import read_events

from conftest import TINY
from local_grid import FIRST_NODE_ID, LocalGrid, run_locally
from spy import Spy

#: The largest difference between SecAgg+'s mean and the plain one, with Flower's default quantisation
#: (clipping range 8, 2^22 levels, max-weight 1000) on the tiny run's weights.
QUANTISATION_TOLERANCE = 1e-3


@pytest.fixture
def secure_config(tmp_path) -> RunConfig:
    """The tiny run (3 clients, 2 rounds) with SecAgg+ on, one round of one client's single plain SGD step each."""
    return RunConfig.from_flat({**TINY, "output.dir": str(tmp_path / "results"), "secagg.enabled": True,
                                "defense.per-client": ""})


def _weighted_mean(updates) -> dict[str, np.ndarray]:
    total = sum(update.num_examples for update in updates)
    return {name: sum(update.client_arrays[name] * update.num_examples for update in updates) / total
            for name in updates[0].client_arrays}


def _largest_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    return max(float(np.abs(a[name] - b[name]).max()) for name in a)


def test_the_plugins_see_one_aggregate_per_round_equal_to_the_plain_mean(secure_config):
    plain, secure = Spy(), Spy()
    run_locally(secure_config.with_overrides({"secagg.enabled": False}), plain)
    run_dir = run_locally(secure_config, secure)
    assert [u.server_round for u in secure.updates] == [1, 2]  # one update a round, never a client's own
    assert all(u.aggregate and u.node_id == 0 and u.partition_id is None for u in secure.updates)
    first = secure.updates[0]
    assert sorted(c.partition_id for c in first.clients) == [0, 1, 2]
    assert first.num_examples == sum(u.num_examples for u in plain.updates if u.server_round == 1)
    mean = _weighted_mean([u for u in plain.updates if u.server_round == 1])
    assert 0 < _largest_difference(dict(first.client_arrays), mean) < QUANTISATION_TOLERANCE
    events = read_events(run_dir)
    aggregates = [e for e in events if e["event"] == "secure-aggregate"]
    assert [(e["round"], e["clients"], e["densified"]) for e in aggregates] == [(1, 3, []), (2, 3, [])]
    assert sorted(e["partition_id"] for e in events if e["event"] == "client-train" and e["round"] == 1) == [0, 1, 2]
    assert [e["status"] for e in events if e["event"] == "run-end"] == ["completed"]


def test_the_attack_gets_one_event_per_round_with_every_clients_images_as_truth(secure_config):
    config = secure_config.with_overrides({"attack.enabled": True, "attack.budget-seconds": 3})
    run_dir = run_locally(config)
    events = read_events(run_dir)
    attacks = [e for e in events if e["event"] == "attack"]
    assert [(e["round"], e["node_id"], e["clients"]) for e in attacks] == [(1, 0, 3), (2, 0, 3)]
    # 3 clients x 2 local steps of 8 images: the sum holds 48 images, the judge's truth is all of them
    assert all(e["held"] == 48 and e["verdict"] in ("leaked", "not leaked", "undecided") for e in attacks)
    assert all(e["verdict"] != "undecided" or not all(run["complete"] for run in e["runs"]) for e in attacks)
    assert all(e["image"].endswith("secure-aggregate.png") for e in attacks)
    with warnings.catch_warnings():  # the report's heat map has one row, the aggregate's, not an empty grid
        warnings.simplefilter("error", UserWarning)
        write_report(run_dir)
    assert (run_dir / "plots" / "attack_heatmap.png").is_file()


def test_one_client_dropped_the_round_sums_the_other_two_and_says_who_left(secure_config):
    dropping = {"faults.partitions": "1", "faults.rounds": "1", "faults.mode": "nan"}
    plain, secure = Spy(), Spy()
    run_locally(secure_config.with_overrides({**dropping, "secagg.enabled": False}), plain)
    run_dir = run_locally(secure_config.with_overrides(dropping), secure)
    first = secure.updates[0]
    assert sorted(c.partition_id for c in first.clients) == [0, 2]
    survivors = [u for u in plain.updates if u.server_round == 1]  # the validator dropped partition 1's NaN
    assert sorted(u.partition_id for u in survivors) == [0, 2]
    assert _largest_difference(dict(first.client_arrays), _weighted_mean(survivors)) < QUANTISATION_TOLERANCE
    failures = [e for e in read_events(run_dir) if e["event"] == "client-failure"]
    assert len(failures) == 1 and failures[0]["round"] == 1
    assert "NaN" in failures[0]["reason"] and "collect_masked_vectors" in failures[0]["reason"]


def test_a_client_gone_before_sharing_its_keys_is_left_out_and_the_round_sums_the_others(secure_config):
    config = secure_config.with_overrides({"num-server-rounds": 1})
    spy = Spy()
    run_dir = run_locally(config, spy, grid=LocalGrid(create_client_app(config), 3, unreachable=[FIRST_NODE_ID + 2]))
    assert sorted(c.partition_id for c in spy.updates[0].clients) == [0, 1]
    (failure,) = [e for e in read_events(run_dir) if e["event"] == "client-failure"]
    assert failure["node_id"] == FIRST_NODE_ID + 2 and "setup stage" in failure["reason"]


def test_two_clients_dropped_fail_the_round_and_the_run_loudly(secure_config):
    config = secure_config.with_overrides({"faults.partitions": "1,2", "faults.mode": "raise"})
    with pytest.raises(FederationError,
                       match="SecAgg\\+ halted in its collect_masked_vectors stage with 1 of 3 clients left"):
        run_locally(config)
    (run_dir,) = Path(config.output.dir).iterdir()
    events = read_events(run_dir)
    assert sorted(e["node_id"] for e in events if e["event"] == "client-failure") == [102, 103]
    (end,) = [e for e in events if e["event"] == "run-end"]
    assert end["status"] == "failed" and "SecAgg+ halted" in end["error"]
    assert not (run_dir / "model.pt").exists()  # no round completed: nothing pretends it trained


def test_a_pruned_upload_is_sent_dense_and_the_event_says_so(secure_config):
    spy = Spy()
    run_dir = run_locally(secure_config.with_overrides({"defense.per-client": "dgp:2"}), spy)
    aggregates = [e for e in read_events(run_dir) if e["event"] == "secure-aggregate"]
    assert [e["densified"] for e in aggregates] == [[2], [2]]
    assert spy.updates[0].travelled is None


@pytest.mark.parametrize(("overrides", "message"), [
    ({"strategy.name": "krum", "server.min-train-nodes": 3}, "reads every client's update"),
    ({"secagg.num-shares": 2.5}, "secagg.num-shares"),
    ({"secagg.num-shares": 3, "secagg.reconstruction-threshold": 3}, "must be below"),
    ({"server.min-train-nodes": 1, "server.fraction-train": 0.3}, "at least 2 clients per round"),
])
def test_what_secure_aggregation_cannot_serve_is_a_one_line_config_error(overrides, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_flat({**TINY, "secagg.enabled": True, **overrides})
