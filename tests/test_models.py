"""The model zoo: shapes for every model, the feature/classifier seam, the DLG LeNet's layout."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fl_sim.config import ModelConfig
from fl_sim.models import FeatureClassifier, build_model


@pytest.mark.parametrize("name", ["lenet", "convnet", "flower-cnn", "femnist-cnn", "mlp", "resnet18"])
@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 32, 32), (1, 28, 28)])
def test_every_model_maps_images_to_logits(name, shape):
    model = build_model(ModelConfig(name=name, width=64), shape, num_classes=7, seed=0)
    assert isinstance(model, FeatureClassifier)
    x = torch.rand(2, *shape)
    features = model.features(x)
    assert features.shape == (2, model.feature_dim)
    assert model(x).shape == (2, 7)
    assert torch.equal(model.classifier(features), model(x))


def test_lenet_is_dlgs_lenet():
    model = build_model(ModelConfig(name="lenet"), (3, 32, 32), num_classes=100)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.stride) for c in convs] == [(12, (5, 5), (2, 2)), (12, (5, 5), (2, 2)),
                                                                        (12, (5, 5), (1, 1))]
    assert sum(isinstance(m, nn.Sigmoid) for m in model.features) == 3
    assert model.feature_dim == 768
    assert sum(p.numel() for p in model.parameters()) == 85_036  # DLG's LeNet on CIFAR-100


def test_dlg_init_is_uniform_half():
    model = build_model(ModelConfig(name="lenet", init="dlg"), (1, 32, 32), 10, seed=0)
    values = torch.cat([p.flatten() for p in model.parameters()])
    assert values.min() >= -0.5 and values.max() <= 0.5 and values.std() > 0.25


def test_seed_makes_initial_weights_reproducible():
    a = build_model(ModelConfig(), (1, 32, 32), 10, seed=3).state_dict()
    b = build_model(ModelConfig(), (1, 32, 32), 10, seed=3).state_dict()
    c = build_model(ModelConfig(), (1, 32, 32), 10, seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("norm, layer", [("group", nn.GroupNorm), ("batch", nn.BatchNorm2d)])
def test_resnet18_has_small_image_stem_and_chosen_norm(norm, layer):
    model = build_model(ModelConfig(name="resnet18", norm=norm), (3, 32, 32), 10)
    stem = model.features[0]
    assert (stem.kernel_size, stem.stride) == ((3, 3), (1, 1))
    assert isinstance(model.features[3], nn.Identity)  # no max-pool
    assert any(isinstance(m, layer) for m in model.modules())


def test_the_fedavg_papers_cnns_have_their_published_sizes():
    flower = build_model(ModelConfig(name="flower-cnn"), (3, 32, 32), num_classes=10)
    assert sum(p.numel() for p in flower.parameters()) == 62_006  # quickstart-pytorch's Net on CIFAR-10
    femnist = build_model(ModelConfig(name="femnist-cnn"), (1, 28, 28), num_classes=62)
    assert femnist.classifier.in_features == 100
    linear = [m for m in femnist.features.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linear] == [(3136, 100)]  # base_flax.py's CNN, SME's CNNmnist
