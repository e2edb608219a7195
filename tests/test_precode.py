"""PRECODE's variational bottleneck: shapes, the KL against a hand computation, gradients, placement."""

from __future__ import annotations

import math

import pytest
import torch

from fl_sim.config import RunConfig
from fl_sim.errors import ConfigError
from fl_sim.models import Architecture, VariationalBottleneck, training_penalty
from fl_sim.models.precode import kl_to_standard_normal_bits


def test_bottleneck_shapes_and_sampling():
    vb = VariationalBottleneck(in_features=48, k=8, beta=1e-3)
    x = torch.randn(5, 3, 4, 4)
    assert vb(x).shape == x.shape
    assert vb.encoder.out_features == 16 and vb.decoder.in_features == 8
    vb.eval()
    assert not torch.equal(vb(x), vb(x))  # the official module samples in eval mode too
    vb.eval_sampling = "mean"
    assert torch.equal(vb(x), vb(x))


def test_kl_matches_a_hand_computation():
    mu = torch.tensor([[0.5, -1.0], [0.0, 2.0]])
    sigma = torch.tensor([[1.0, 0.5], [2.0, 1.0]])
    by_hand = []
    for m_row, s_row in zip(mu.tolist(), sigma.tolist()):
        by_hand.append(sum(0.5 * (m * m + s * s - 2 * math.log(s) - 1) for m, s in zip(m_row, s_row)))
    expected = sum(by_hand) / 2 / math.log(2)  # summed over K, averaged over the batch, in bits
    assert kl_to_standard_normal_bits(mu, sigma).item() == pytest.approx(expected, rel=1e-6)
    assert kl_to_standard_normal_bits(torch.zeros(3, 4), torch.ones(3, 4)).item() == pytest.approx(0.0, abs=1e-7)


def test_penalty_is_beta_times_kl_and_gradients_flow():
    config = RunConfig.from_flat({"precode.enabled": True, "precode.k": 16, "precode.beta": 0.5})
    model = Architecture.of(config, (1, 32, 32), 10).build(seed=0)
    x = torch.rand(4, 1, 32, 32)
    logits = model(x)
    vb = next(m for m in model.modules() if isinstance(m, VariationalBottleneck))
    assert training_penalty(model).item() == pytest.approx(0.5 * vb._kl.item())
    loss = torch.nn.functional.cross_entropy(logits, torch.arange(4)) + training_penalty(model)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", ["lenet", "convnet", "mlp", "resnet18"])
def test_any_model_of_the_zoo_can_be_extended_before_its_classifier(name):
    config = RunConfig.from_flat({"model.name": name, "model.width": 32, "precode.enabled": True, "precode.k": 8})
    model = Architecture.of(config, (3, 32, 32), 10).build()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    assert isinstance(model.features[-1], VariationalBottleneck)
    assert model.features[-1].encoder.in_features == model.feature_dim


def test_early_position_follows_the_first_block():
    config = RunConfig.from_flat({"model.name": "lenet", "precode.enabled": True, "precode.position": "early",
                                  "precode.k": 8})
    model = Architecture.of(config, (1, 32, 32), 10).build()
    assert isinstance(model.features[2], VariationalBottleneck)
    assert model.features[2].encoder.in_features == 12 * 16 * 16
    assert model(torch.rand(2, 1, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="precode.position=head"):
        Architecture.of(config.with_overrides({"model.name": "convnet"}), (3, 32, 32), 10).build()
