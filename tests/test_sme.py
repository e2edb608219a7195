"""SME's surrogate model: where it applies, and that it reads images back from a multi-step CNN update."""

from __future__ import annotations

from attacker.attacks import INVERSIONS, AttackSettings
from fl_sim.config.presets import FEDSGD

from judging import judge_for
from observed import LOCAL_CNN, observed


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
