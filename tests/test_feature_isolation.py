"""Neuron isolation behind convolutions: where it applies, and that it reads digits back through the FEMNIST CNN."""

from __future__ import annotations

from attacker.attacks import INVERSIONS, AttackSettings
from fl_sim.config.presets import FEDSGD

from judging import judge_for
from observed import LOCAL_CNN, LOCAL_SGD, observed


def test_feature_isolation_needs_a_hidden_linear_layer_after_convolutions_and_local_sgd_over_several_images():
    attack = INVERSIONS["feature-isolation"]
    _, lenet, [one] = observed(FEDSGD, [[3]])  # DLG's LeNet: its only linear layer is the classifier
    assert "no fully connected layer" in attack.why_not(lenet, one)
    _, mlp, [sgd] = observed(LOCAL_SGD, [[3, 4, 5, 6]])  # an MLP's first layer reads the pixels: isolation's
    assert "no fully connected layer" in attack.why_not(mlp, sgd)
    _, cnn, [single] = observed({**LOCAL_CNN, "train.batch-size": 1, "train.local-epochs": 1}, [[3]])
    assert "one image" in attack.why_not(cnn, single)
    _, cnn, [adam] = observed({**LOCAL_CNN, "train.optimizer": "adam"}, [list(range(10))])
    assert "adam" in attack.why_not(cnn, adam)
    _, cnn, [local] = observed(LOCAL_CNN, [list(range(10))])
    assert attack.why_not(cnn, local) is None


def test_feature_isolation_reads_digits_back_from_ten_local_steps_of_the_femnist_cnn():
    samples = [list(range(10))]
    config, victim, observations = observed(LOCAL_CNN, samples)
    settings = AttackSettings.from_config(config.attack, seed=0).for_method("feature-isolation")
    [rec] = INVERSIONS["feature-isolation"].run(victim, observations, settings)
    assert rec.complete and len(rec.images) <= 10 and "non-negative" in rec.notes[0]
    assert judge_for(config.data)(rec.images, rec.labels, samples[0]).images_leaked >= 3


def test_flowers_template_preset_is_attacked_by_feature_isolation_alone():
    from fl_sim.config.presets import FLOWER_TEMPLATE

    _, victim, [update] = observed({**FLOWER_TEMPLATE, "data.dataset": "digits"}, [list(range(200))])
    reasons = INVERSIONS["auto"].reasons(victim, update)  # 200 images: every inversion is published on fewer
    assert [name for name, reason in reasons.items() if reason is None] == ["feature-isolation"]
    assert "200 images" in reasons["ig"] and "200 images" in reasons["fedavg"] and "200 images" in reasons["sme"]
