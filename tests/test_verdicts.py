"""Honest verdicts: the replay of local training, defense-aware attacks, auto's worst case, bookkeeping."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from attacker.attacks import INVERSIONS, AttackSettings
from attacker.judge import worst_case
from attacker.objectives import l2_distance
from attacker.observation import Observation
from attacker.replay import replay_schedule, simulate_update
from attacker.victim import Victim
from clients.client_app import create_client_app
from fl_sim.config import RunConfig
from fl_sim.config.presets import FEDSGD
from fl_sim.data import load_dataset
from fl_sim.models import Architecture
from fl_sim.results import read_events
from fl_sim.training import batch_schedule
from lab.offline import intercepted_updates

from judging import judge_for
from local_grid import LocalGrid, run_locally


def _observe(flat: dict, samples: list[list[int]]):
    config = RunConfig.from_flat(flat)
    updates, truths = intercepted_updates(config, samples)
    observations = [Observation.under(update, config.defense) for update in updates]
    dataset = load_dataset(config.data)
    architecture = Architecture.of(config, dataset.input_shape, dataset.num_classes)
    victim = Victim.from_arrays(architecture, observations[0].global_arrays, torch.device("cpu"))
    return config, victim, observations, truths


def _settings(config: RunConfig, method: str, **changes) -> AttackSettings:
    return AttackSettings.from_config(config.attack, seed=0).for_method(method, **changes)


def _ssim(config: RunConfig, rec, held: list[int]) -> float:
    """The mean SSIM of ``rec`` against the images at ``held``, matched by the judge."""
    return judge_for(config.data)(rec.images, rec.labels, held).mean_ssim


def _start_ssim(config: RunConfig, rec, held: list[int]) -> float:
    """SSIM of a random start of the reconstruction's shape: what an attack must beat."""
    start = torch.randn(rec.images.shape, generator=torch.Generator().manual_seed(0))
    return judge_for(config.data)(start, rec.labels, held).mean_ssim


@pytest.mark.parametrize("training", [
    {"train.optimizer": "sgd", "train.lr": 0.1},
    {"train.optimizer": "sgd", "train.lr": 0.05, "train.momentum": 0.9, "train.weight-decay": 0.01},
    {"train.optimizer": "adam", "train.lr": 0.005, "train.weight-decay": 0.001},
    {"train.optimizer": "sgd", "train.lr": 0.1, "train.local-steps": 0, "train.local-epochs": 2},
    {"train.optimizer": "sgd", "train.lr": 0.1, "strategy.name": "fedprox", "train.proximal-mu": 2.0},
], ids=["sgd", "sgd-momentum-wd", "adam", "two-epochs", "fedprox"])
def test_replay_with_the_true_data_and_order_reproduces_the_observed_update(training):
    """The oracle: the client's true images, labels and batch order replayed give its update."""
    flat = {"data.image-size": 16, "train.batch-size": 2, "train.local-steps": 3, **training}
    config, victim, observations, truths = _observe(flat, [list(range(10, 16))])
    images, labels = truths[0].tensors()
    order = tuple(tuple(int(i) for i in batch) for batch in batch_schedule(len(labels), config.train, seed=0))
    assert observations[0].local_steps == len(order) > 1
    simulated = simulate_update(victim, images, labels, config.train, order)
    for name in victim.param_names:
        observed = observations[0].update[name]
        assert torch.allclose(simulated[name], observed, rtol=1e-4, atol=1e-5 * observed.abs().max()), name


def test_replay_schedule_follows_the_clients_batches():
    two_epochs = replay_schedule(num_examples=5, batch_size=2, local_steps=6, max_images=32)
    assert two_epochs.copies == 2 and two_epochs.slots == 10
    assert two_epochs.batches == ((0, 1), (2, 3), (4,), (5, 6), (7, 8), (9,))
    few_steps = replay_schedule(num_examples=100, batch_size=4, local_steps=2, max_images=32)
    assert few_steps.images == 8 and few_steps.copies == 1
    capped = replay_schedule(num_examples=100, batch_size=16, local_steps=7, max_images=32)
    assert capped.images == 32 and max(max(b) for b in capped.batches) == 31


def test_dlg_reports_the_cost_of_the_image_it_returns():
    """L-BFGS's step returns the cost of where it started: the kept image must be that point, not the next."""
    config, victim, observations, _ = _observe(FEDSGD, [[3]])
    for method in ("idlg", "dlg"):
        for iterations in (1, 3):
            rec = INVERSIONS[method].run(victim, observations, _settings(config, method, iterations=iterations))[0]
            target = observations[0].gradient_estimate(victim.param_names)
            soft = torch.nn.functional.one_hot(rec.labels, victim.num_classes).float()
            trial = victim.gradient(rec.images, rec.labels if method == "idlg" else soft)
            if method == "idlg":
                assert float(l2_distance(trial, target)) == pytest.approx(rec.loss, rel=1e-4)
            else:  # DLG's label is soft: its one-hot argmax need not give the same cost, only the image
                assert rec.images.shape == (1, 1, 32, 32)


def test_judge_counts_copies_of_one_reconstruction_once():
    judge = judge_for(RunConfig.from_flat({"data.image-size": 16}).data)
    truth, labels = judge.truth([10, 11, 12, 13]).tensors()
    verdict = judge(truth[[2, 2, 2, 2]], labels[[2, 2, 2, 2]], [10, 11, 12, 13])
    assert verdict.images_leaked == 1 and verdict.held == 4
    assert sorted(image.match for image in verdict.images) == [0, 1, 2, 3]
    extra = judge(truth[[0, 1, 0]], labels[[0, 1, 0]], [10, 11])
    assert extra.images_leaked == 2 and sum(not image.assigned for image in extra.images) == 1


def test_worst_case_picks_the_verdict_that_leaks_most():
    judge = judge_for(RunConfig.from_flat({"data.image-size": 16}).data)
    truth, labels = judge.truth([10, 11]).tensors()
    noise = judge(torch.rand(2, 1, 16, 16), labels, [10, 11])
    half = judge(torch.stack([truth[0], torch.rand(1, 16, 16)]), labels, [10, 11])
    exact = judge(truth, labels, [10, 11])
    assert worst_case([noise, half, exact]) == 2 and worst_case([noise, half]) == 1


def test_replay_beats_its_start_and_approx_on_two_local_steps():
    flat = {**FEDSGD, "train.local-steps": 2, "data.image-size": 16}
    config, victim, observations, truths = _observe(flat, [[3, 40]])
    replay = INVERSIONS["ig"].run(victim, observations, _settings(config, "ig", iterations=400, tv=0.01))[0]
    assert replay.images.shape == (2, 1, 16, 16) and "replay" in replay.attack
    assert sorted(replay.labels.tolist()) == sorted(truths[0].labels.tolist())
    assert _ssim(config, replay, [3, 40]) > _start_ssim(config, replay, [3, 40]) + 0.2


def test_pruned_uploads_are_matched_where_they_travelled():
    """DGP drops the largest entries; matching only the kept ones lets iDLG through where plain matching fails."""
    flat = {**FEDSGD, "defense.name": "dgp", "data.image-size": 16}
    config, victim, observations, _ = _observe(flat, [[3]])
    assert observations[0].pruned
    aware = INVERSIONS["idlg"].run(victim, observations, _settings(config, "idlg", iterations=200))[0]
    assert any("defense-aware" in note for note in aware.notes)
    naive_obs = [dataclasses.replace(observations[0], defense="none", positions=None)]
    naive = INVERSIONS["idlg"].run(victim, naive_obs, _settings(config, "idlg", iterations=200))[0]
    assert _ssim(config, aware, [3]) >= 0.6 > _ssim(config, naive, [3])


def test_analytic_recovers_features_before_precode_and_inverts_them():
    flat = {**FEDSGD, "precode.enabled": True, "data.image-size": 16}
    config, victim, observations, _ = _observe(flat, [[3]])
    rec = INVERSIONS["analytic"].run(victim, observations, _settings(config, "analytic", iterations=1000))[0]
    assert "features.1.encoder" in rec.notes[-1]
    assert _ssim(config, rec, [3]) >= 0.8


@pytest.mark.parametrize("stochastic", ["omit", "restore"])
def test_precode_adaptive_attacks_beat_their_start(stochastic):
    flat = {**FEDSGD, "precode.enabled": True, "data.image-size": 16}
    config, victim, observations, _ = _observe(flat, [[3]])
    settings = _settings(config, "ig", tv=0.01, stochastic=stochastic)
    first = INVERSIONS["ig"].run(victim, observations, dataclasses.replace(settings, iterations=1))[0]
    rec = INVERSIONS["ig"].run(victim, observations, dataclasses.replace(settings, iterations=300))[0]
    assert rec.attack == f"ig tv=0.01 {stochastic}"
    assert rec.loss < first.loss and _ssim(config, rec, [3]) > _start_ssim(config, rec, [3]) + 0.05


def test_auto_logs_the_worst_case_of_its_portfolio(tiny_config):
    config = tiny_config.with_overrides({**FEDSGD, "num-server-rounds": 1, "attack.enabled": True,
                                         "attack.method": "auto", "attack.iterations": 60, "attack.blocking": True})
    events = read_events(run_locally(config))
    attacks = [e for e in events if e["event"] == "attack"]
    assert len(attacks) == 3
    for event in attacks:
        portfolio = event["portfolio"]
        assert event["applied"] == ["analytic", "idlg", "ig"] and "isolation" in event["not_applied"]
        ran = [entry["attack"] for entry in portfolio]
        order = ["analytic", "ig tv=0.01", "ig tv=0.001", "ig tv=0.1", "idlg"]  # cheapest first
        raced = any(note.startswith("leaked after") for note in event["notes"])
        assert ran == order[:len(ran)] and (raced or ran == order)
        complete = all(run["complete"] for run in event["runs"])
        assert event["verdict"] == ("leaked" if event["success"] else "not leaked" if complete else "undecided")
        best = max(portfolio, key=lambda e: (e["images_leaked"], e["images_identified"], e["mean_ssim"]))
        assert event["attack"] == best["attack"] and event["success"] == best["success"]
        assert max(image["ssim"] for image in event["per_image"]) == pytest.approx(best["best_ssim"])


def _attack_events(run_dir) -> list[dict]:
    """A run's attack events without what differs between two runs of one config: times, Flower's node ids."""
    timeless = [{key: value for key, value in event.items() if key not in ("time", "seconds", "node_id")}
                for event in read_events(run_dir) if event["event"].startswith("attack")]
    for event in timeless:
        for run in event.get("runs") or []:
            run.pop("seconds")
    return timeless


def test_two_runs_of_one_config_reach_the_same_verdict_whatever_flowers_node_ids(tiny_config):
    config = tiny_config.with_overrides({**FEDSGD, "train.batch-size": 2, "attack.enabled": True,
                                         "attack.method": "ig", "attack.iterations": 60, "attack.blocking": True})
    first = run_locally(config.with_overrides({"output.run-id": "first"}))
    # Flower draws node ids anew every run; the attack's random starts must not follow them
    second_grid = LocalGrid(create_client_app(config), config.simulation.num_clients, first_node_id=7_340_033)
    second = run_locally(config.with_overrides({"output.run-id": "second"}), grid=second_grid)
    events = _attack_events(first)
    assert [e["event"] for e in events].count("attack") == 6
    assert events == _attack_events(second)


def test_a_stop_stops_the_replays_label_search():
    """The label search replays local training up to 256 times before any optimisation step.

    It polls the stop too (unpolled, an end-of-run budget could not stop it).
    """
    from attacker.stop import AttackStopped, Stop

    flat = {**FEDSGD, "train.local-steps": 2, "data.image-size": 16}
    config, victim, observations, _ = _observe(flat, [[3, 40]])
    stop = Stop()
    stop.set()
    with pytest.raises(AttackStopped, match="label search"):
        INVERSIONS["ig"].run(victim, observations, _settings(config, "ig", iterations=10), stop)
