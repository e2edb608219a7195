"""The pool of attack workers on Ray: results in order, a killed worker's job retried once, then reported."""

from __future__ import annotations

import threading
import time

import pytest
import ray
import torch

from attacker.attacks import AttackSettings, Reconstruction
from attacker.observation import Observation
from attacker.pool import AttackPool, WorkerDied
from attacker.stop import Stop
from fl_sim.config import RunConfig
from fl_sim.data import load_dataset
from fl_sim.errors import ConfigError
from fl_sim.models import Architecture
from lab.offline import intercepted_updates

#: One SGD step on one image of an MLP: the isolation attack reads it back in milliseconds.
FEDSGD = {"train.optimizer": "sgd", "train.lr": 0.1, "train.batch-size": 1, "train.local-steps": 1,
          "model.width": 64, "defense.per-client": ""}


@pytest.fixture
def private_ray():
    """Ray is shut down after the test, whatever the pool left behind."""
    yield
    ray.shutdown()


def _pool_and_updates(flat: dict, clients: int) -> tuple[AttackPool, list[Observation], AttackSettings]:
    config = RunConfig.from_flat({**FEDSGD, **flat})
    updates, _ = intercepted_updates(config, [[3 * c] for c in range(clients)])
    dataset = load_dataset(config.data)
    pool = AttackPool(config.attack, Architecture.of(config, dataset.input_shape, dataset.num_classes))
    return pool, [Observation.from_update(u) for u in updates], AttackSettings.from_config(config.attack, seed=0)


def test_a_pool_returns_every_update_in_order_and_keeps_its_workers(private_ray):
    pool, observations, settings = _pool_and_updates({"attack.workers": 2, "attack.method": "isolation"}, 5)
    first = pool.attack(observations, settings, 0.0, Stop())
    workers = list(pool.workers)
    second = pool.attack(observations, settings, 0.0, Stop())
    assert pool.workers == workers  # the same actors serve the next round
    for obs, rec in zip(observations, [*first, *second][:5]):
        assert isinstance(rec, Reconstruction) and rec.observation.partition_id == obs.partition_id
    assert torch.equal(first[2].images, second[2].images)
    pool.close()


def _kill_after(pool: AttackPool, seconds: float, times: int) -> threading.Thread:
    """Kill whichever worker is running, ``times`` times, ``seconds`` after the start of each try."""
    def kill() -> None:
        for _ in range(times):
            time.sleep(seconds)
            ray.kill(pool.workers[0])
    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


def test_a_killed_workers_job_is_retried_on_a_new_worker(private_ray):
    pool, observations, settings = _pool_and_updates(
        {"attack.workers": 1, "attack.method": "ig", "attack.iterations": 100_000}, 1)
    _kill_after(pool, 2.5, times=1)  # mid-job: the first try runs for its whole 5 s budget
    [result] = pool.attack(observations, settings, 5.0, Stop())
    assert isinstance(result, Reconstruction)
    assert 0 < result.iterations < 100_000  # the retry ran to its budget, and says so
    pool.close()


def test_a_job_whose_worker_dies_twice_is_reported_not_retried_again(private_ray):
    pool, observations, settings = _pool_and_updates(
        {"attack.workers": 1, "attack.method": "ig", "attack.iterations": 100_000}, 1)
    _kill_after(pool, 2.5, times=2)
    [result] = pool.attack(observations, settings, 5.0, Stop())
    assert isinstance(result, WorkerDied) and "died 2 times" in str(result)
    pool.close()


def test_a_pool_that_cannot_be_scheduled_says_what_it_asked_for(private_ray, monkeypatch):
    monkeypatch.setattr("attacker.pool.READY_SECONDS", 3.0)
    ray.init(address="local", num_cpus=1, include_dashboard=False)  # no 'attack' resource at all
    with pytest.raises(ConfigError, match=r"attack.workers=1 could not be scheduled.*'attack': 1.0"):
        _pool_and_updates({"attack.workers": 1}, 1)
