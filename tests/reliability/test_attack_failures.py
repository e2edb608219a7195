"""An attack that raises or runs out of memory is logged and skipped, one out of budget ends in a verdict.

Either way the run completes.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import torch

from attacker import attacks
from fl_sim.results import read_events

from local_grid import run_locally


def _attacked_run(config, **attack):
    config = config.with_overrides({"attack.enabled": True, "attack.method": "ig",
                                    **{f"attack.{k}": v for k, v in attack.items()}})
    return read_events(run_locally(config))


@pytest.mark.parametrize("error, hint", [
    (RuntimeError("attack bug"), ""),
    (torch.OutOfMemoryError("CUDA out of memory"), "lower attack.max-clients"),
])
def test_a_crashing_attack_is_logged_and_the_run_completes(tiny_config, monkeypatch, error, hint):
    def explode(*args, **kwargs):
        raise error
    monkeypatch.setitem(attacks.INVERSIONS, "ig", dataclasses.replace(attacks.INVERSIONS["ig"], run=explode))
    events = _attacked_run(tiny_config, blocking=True)
    failures = [e for e in events if e["event"] == "attack-error"]
    assert [e["round"] for e in failures] == [1, 2]
    assert str(error) in failures[0]["error"] and hint in failures[0]["error"]
    assert [e["round"] for e in events if e["event"] == "round"] == [0, 1, 2]
    assert events[-1]["status"] == "completed"


@pytest.mark.parametrize("blocking", [True, False])
def test_an_attack_over_its_budget_ends_with_a_verdict_on_its_best_so_far(tiny_config, blocking):
    start = time.perf_counter()
    events = _attacked_run(tiny_config, iterations=1_000_000, blocking=blocking, **{"budget-seconds": 1.0})
    assert time.perf_counter() - start < 60  # a million iterations would take hours
    attacks = [e for e in events if e["event"] == "attack"]
    assert [e["round"] for e in attacks] == [1, 1, 1, 2, 2, 2]
    for event in attacks:
        assert 0 < event["iterations"] < 1_000_000
        assert any(note.startswith("budget spent: cut short after") for note in event["notes"])
        # judged on its best so far: a leak stands, but nothing leaked of a cut attack is no "not leaked"
        assert event["verdict"] == ("leaked" if event["success"] else "undecided")
        assert event["runs"] == [{**event["runs"][0], "attack": "ig", "complete": False, "needed": 1_000_000}]
    rounds = [e for e in events if e["event"] == "attack-round"]
    assert all(e["seconds"] < 3 * 1.0 + 10 for e in rounds)  # 3 updates x 1 s, and the judge
    assert not [e for e in events if e["event"] in ("attack-timeout", "attack-cut", "attack-error")]
    assert events[-1]["status"] == "completed"


def test_end_of_run_budget_cuts_pending_attacks(tiny_config):
    start = time.perf_counter()
    events = _attacked_run(tiny_config, iterations=1_000_000, **{"end-budget-seconds": 1.0, "budget-seconds": 0.0})
    assert time.perf_counter() - start < 60
    cut = [e for e in events if e["event"] == "attack-cut"]
    assert sorted(e["round"] for e in cut) == [1, 2]
    assert events[-1]["status"] == "completed"


def test_an_attack_that_ignores_its_stop_is_abandoned_and_reported_cut():
    from attacker.worker import BackgroundWorker

    release = threading.Event()
    started = threading.Event()

    def stuck(job, stop):  # never polls ``stop``, as a loop on absurd values would
        started.set()
        release.wait(timeout=30)

    worker = BackgroundWorker(stuck, queue_size=4)
    jobs = [object() for _ in range(3)]
    for job in jobs:
        worker.submit(job)
    started.wait(timeout=5)
    begin = time.perf_counter()
    cut = worker.close(budget_seconds=0.2, grace_seconds=0.2)
    assert time.perf_counter() - begin < 5
    assert len(cut) == 3 and all(any(job is c for c in cut) for job in jobs)
    release.set()
