"""SME's surrogate model: where it applies, and that it reads images back from a multi-step CNN update."""

from __future__ import annotations

from attacker.attacks import INVERSIONS, AttackSettings
from fl_sim.config.presets import FEDSGD

from judging import judge_for
from observed import observed

#: Two epochs of 5 batches of 2 digits (28x28) through the FEMNIST CNN of Dimitrov et al. and SME, at SME's lr.
LOCAL_CNN = {"model.name": "femnist-cnn", "model.init": "default", "data.dataset": "digits", "data.image-size": 28,
             "train.optimizer": "sgd", "train.lr": 0.004, "train.batch-size": 2, "train.local-steps": 0,
             "train.local-epochs": 2, "attack.budget-seconds": 0.0, "defense.per-client": "", "attack.max-images": 64}


def test_sme_applies_to_local_sgd_of_at_most_100_images():
    _, victim, [one] = observed(FEDSGD, [[3]])
    assert "one local step" in INVERSIONS["sme"].why_not(victim, one)
    _, victim, [adam] = observed({**LOCAL_CNN, "train.optimizer": "adam"}, [list(range(10))])
    assert "adam" in INVERSIONS["sme"].why_not(victim, adam)
    _, victim, [many] = observed({**LOCAL_CNN, "train.batch-size": 32, "train.local-epochs": 1}, [list(range(128))])
    assert "128 images" in INVERSIONS["sme"].why_not(victim, many)


def test_sme_reads_an_image_back_from_ten_local_steps_of_a_cnn():
    samples = [list(range(10))]
    config, victim, observations = observed(LOCAL_CNN, samples)
    assert INVERSIONS["sme"].why_not(victim, observations[0]) is None
    settings = AttackSettings.from_config(config.attack, seed=0).for_method("sme", iterations=300)
    [rec] = INVERSIONS["sme"].run(victim, observations, settings)
    assert rec.complete and rec.images.shape == (10, 1, 28, 28) and "alpha" in rec.notes[-1]
    assert judge_for(config.data)(rec.images, rec.labels, samples[0]).images_leaked >= 1
