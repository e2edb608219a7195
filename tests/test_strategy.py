"""The intercepting strategy.

Every reply reaches every plugin; plugins cannot change aggregation unless they are filters; a raising plugin is logged
and skipped for the round, and training goes on.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from fl_sim.data import load_dataset
from fl_sim.models import build_model
from fl_sim.plugins import ServerPlugin, UpdateFilter
from fl_sim.results import read_events

from local_grid import FIRST_NODE_ID, run_locally
from spy import Spy


class Vandal(ServerPlugin):
    """Tries to zero the update it is shown (observers get read-only arrays, so this raises)."""

    name = "vandal"

    def __init__(self) -> None:
        self.calls = 0

    def on_update(self, update):
        """Count or record the update."""
        self.calls += 1
        next(iter(update.client_arrays.values()))[...] = 0.0


class CrashOnce(ServerPlugin):
    """Raises on the first update of round 1 only."""

    name = "crash-once"

    def __init__(self) -> None:
        self.seen: list[tuple[int, int]] = []

    def on_update(self, update):
        """Count or record the update."""
        self.seen.append((update.server_round, update.partition_id))
        if update.server_round == 1:
            raise RuntimeError("boom")


def _run(config, *plugins):
    run_dir = run_locally(config, *plugins)
    return run_dir, torch.load(run_dir / "model.pt")


def test_every_reply_of_every_round_reaches_plugins(tiny_config):
    spy = Spy()
    run_dir, _ = _run(tiny_config, spy)
    rounds, clients = tiny_config.num_server_rounds, tiny_config.simulation.num_clients
    assert len(spy.updates) == rounds * clients
    assert sorted((u.server_round, u.partition_id) for u in spy.updates) == [
        (r, p) for r in range(1, rounds + 1) for p in range(clients)]
    assert {u.node_id for u in spy.updates} == {FIRST_NODE_ID + i for i in range(clients)}
    assert spy.round_ends == list(range(1, rounds + 1))
    assert sorted(spy.evaluations) == [(r, p) for r in range(1, rounds + 1) for p in range(clients)]
    assert spy.closed

    first = spy.updates[0]
    dataset = load_dataset(tiny_config.data)
    initial = build_model(tiny_config.model, dataset.input_shape, dataset.num_classes, seed=tiny_config.seed)
    for name, tensor in initial.state_dict().items():  # round 1's global arrays are the initial model
        assert np.array_equal(first.global_arrays[name], tensor.numpy())
    assert first.train_config["lr"] == tiny_config.train.lr
    assert first.train_config["server-round"] == 1
    assert first.metrics["num-examples"] > 0 and "train-loss" in first.metrics
    assert any(np.abs(d).sum() > 0 for d in first.delta().values())
    assert (run_dir / "events.jsonl").exists()


def test_observers_cannot_change_what_is_aggregated(tiny_config, tmp_path):
    _, clean = _run(tiny_config.with_overrides({"output.dir": str(tmp_path / "a")}))
    vandal = Vandal()
    run_dir, attacked = _run(tiny_config.with_overrides({"output.dir": str(tmp_path / "b")}), vandal)
    assert all(torch.equal(clean[k], attacked[k]) for k in clean)
    errors = [e for e in read_events(run_dir) if e["event"] == "plugin-error"]
    assert [e["round"] for e in errors] == [1, 2]
    assert "read-only" in errors[0]["error"]
    assert vandal.calls == 2  # disabled for the rest of each round after its first failure


def test_raising_plugin_is_skipped_for_the_round_and_training_goes_on(tiny_config):
    crash = CrashOnce()
    spy = Spy()
    run_dir, _ = _run(tiny_config, crash, spy)
    assert [r for r, _ in crash.seen] == [1, 2, 2, 2]
    assert len(spy.updates) == 6  # plugins after it still see everything
    rounds = [e for e in read_events(run_dir) if e["event"] == "round" and e["round"] > 0]
    assert [e["clients"] for e in rounds] == [3, 3]
    assert read_events(run_dir)[-1]["status"] == "completed"


def test_filters_may_replace_or_drop_updates(tiny_config, tmp_path):
    class Nullify(UpdateFilter):
        name = "nullify"

        def filter(self, update):
            return dataclasses.replace(update, client_arrays=update.global_arrays)

    _, model = _run(tiny_config.with_overrides({"output.dir": str(tmp_path / "a")}), Nullify())
    dataset = load_dataset(tiny_config.data)
    initial = build_model(tiny_config.model, dataset.input_shape, dataset.num_classes, seed=tiny_config.seed)
    assert all(torch.allclose(model[k], v) for k, v in initial.state_dict().items())

    class DropPartitionZero(UpdateFilter):
        name = "drop-0"

        def filter(self, update):
            return None if update.partition_id == 0 else update

    spy = Spy()
    run_dir, _ = _run(tiny_config.with_overrides({"output.dir": str(tmp_path / "b")}), DropPartitionZero(), spy)
    assert {u.partition_id for u in spy.updates} == {1, 2}
    assert [e["clients"] for e in read_events(run_dir) if e["event"] == "round" and e["round"] > 0] == [2, 2]


def test_same_seed_same_model(tiny_config, tmp_path):
    _, a = _run(tiny_config.with_overrides({"output.dir": str(tmp_path / "a")}))
    _, b = _run(tiny_config.with_overrides({"output.dir": str(tmp_path / "b")}))
    _, c = _run(tiny_config.with_overrides({"output.dir": str(tmp_path / "c"), "seed": 1}))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_existing_results_directory_is_never_overwritten(tiny_config):
    config = tiny_config.with_overrides({"output.run-id": "fixed"})
    run_dir, _ = _run(config)
    before = (run_dir / "events.jsonl").read_bytes()
    with pytest.raises(Exception, match="already exists"):
        _run(config)
    assert (run_dir / "events.jsonl").read_bytes() == before


def test_a_sparse_upload_with_a_repeated_position_is_not_unpacked():
    import numpy as np

    from fl_sim import sparse

    reference = {"w": np.zeros(4, dtype=np.float32)}
    upload = {"w" + sparse.POSITIONS: np.array([1, 1], dtype=np.int64),
              "w" + sparse.VALUES: np.array([0.5, -0.5], dtype=np.float32)}
    assert sparse.unpack(upload, reference) is None
    upload["w" + sparse.POSITIONS] = np.array([1, 2], dtype=np.int64)
    dense, travelled = sparse.unpack(upload, reference)
    assert dense["w"].tolist() == [0.0, 0.5, -0.5, 0.0] and travelled["w"].tolist() == [1, 2]
