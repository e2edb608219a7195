"""Dimitrov et al.'s FedAvg attack: where it applies, its schedule, priors and label counts, and a read-back."""

from __future__ import annotations

import pytest
import torch

from attacker.attacks import INVERSIONS, AttackSettings
from attacker.attacks.fedavg import layer_weights, reorder_prior
from attacker.engine import AdamSchedule, minimize
from attacker.labels import count_labels_per_step
from attacker.replay import replay_schedule
from fl_sim.config.presets import FEDSGD

from judging import judge_for
from observed import LOCAL_CNN, observed


def test_the_fedavg_attack_applies_to_one_clients_local_training_of_any_optimizer_up_to_100_images():
    _, victim, [one] = observed(FEDSGD, [[3]])
    assert "one local step" in INVERSIONS["fedavg"].why_not(victim, one)
    for optimizer in ("sgd", "adam"):
        _, victim, [local] = observed({**LOCAL_CNN, "train.optimizer": optimizer}, [list(range(10))])
        assert INVERSIONS["fedavg"].why_not(victim, local) is None
    _, victim, [many] = observed({**LOCAL_CNN, "train.batch-size": 32, "train.local-epochs": 1}, [list(range(128))])
    assert "128 images" in INVERSIONS["fedavg"].why_not(victim, many)


def test_the_schedule_ramps_its_weight_to_the_objective_and_decays_its_step_exponentially():
    schedule = AdamSchedule(iterations=8, lr=0.1, signed=False, box=None, exponential_decay=(0.5, 2),
                            ramp=(1.0, 2.0, 4))
    assert [schedule.ramp_at(t) for t in (0, 3, 7)] == pytest.approx([2 ** 0.25, 2.0, 2.0])
    seen = []

    def objective(x, factor):
        seen.append(float(factor))
        return factor * (x ** 2).sum()
    found = minimize(objective, torch.ones((1, 3)), (), schedule)
    assert seen[:8] == pytest.approx([schedule.ramp_at(t) for t in range(8)]) and found.iterations == 8
    assert float(found.variables[0].abs().max()) < 1  # the steps went downhill


def test_its_priors_weigh_layers_from_the_first_and_epoch_copies_by_their_mean_images():
    _, victim, _ = observed(LOCAL_CNN, [list(range(10))])
    weights = layer_weights(victim)
    assert weights["features.0.0.weight"] == weights["features.0.0.bias"] == 1.0
    assert weights["classifier.weight"] == pytest.approx(torch.e ** -3)
    schedule = replay_schedule(4, 2, 4, 64)  # 2 epochs of 2 batches over 4 images
    images = torch.rand((4, 1, 3, 3), generator=torch.Generator().manual_seed(0))
    assert float(reorder_prior(torch.cat([images, images.flip(0)]), schedule)) == pytest.approx(0, abs=1e-12)
    assert float(reorder_prior(torch.cat([images, images + 1]), schedule)) == pytest.approx(0.5)


def test_labels_are_counted_per_step_along_the_trajectory():
    _, victim, [obs] = observed(LOCAL_CNN, [list(range(10))])  # digits 0 to 9, one each
    counts = count_labels_per_step(obs.update, obs.train.lr, obs.local_steps, 10, victim)
    assert int(counts.sum()) == 10 and int(torch.minimum(counts, torch.ones(10, dtype=torch.long)).sum()) >= 8


def test_the_fedavg_attack_reads_digits_back_from_ten_local_steps_of_a_cnn():
    samples = [list(range(10))]
    config, victim, observations = observed(LOCAL_CNN, samples)
    settings = AttackSettings.from_config(config.attack, seed=0).for_method("fedavg")
    [rec] = INVERSIONS["fedavg"].run(victim, observations, settings)
    assert rec.complete and rec.images.shape == (10, 1, 28, 28) and "2 epoch copies" in rec.notes[-1]
    assert judge_for(config.data)(rec.images, rec.labels, samples[0]).images_leaked >= 1
