"""A user's own model by import path: built, extended by PRECODE, trained and attacked; bad ones refused in one line."""

from __future__ import annotations

import pytest
import torch

from fl_sim.config import RunConfig
from fl_sim.config.presets import FEDSGD
from fl_sim.errors import ConfigError
from fl_sim.models import Architecture, VariationalBottleneck
from fl_sim.results import read_events

from local_grid import run_locally
from user_modules import write_user_module

#: A model of the user's, in a module of the user's, outside the project: no FeatureClassifier, its own names.
USER_MODULE = """
import torch
from torch import nn


class TwoLayer(nn.Module):
    def __init__(self, pixels, classes):
        super().__init__()
        self.flat = nn.Flatten()
        self.hidden = nn.Linear(pixels, 64)
        self.out = nn.Linear(64, classes)

    def forward(self, x):
        return self.out(torch.relu(self.hidden(self.flat(x))))


def build(input_shape, num_classes):
    c, h, w = input_shape
    return TwoLayer(c * h * w, num_classes)


def raises(input_shape, num_classes):
    raise ValueError("no GPU for this one")


def not_a_module(input_shape, num_classes):
    return "a string"


def wrong_classes(input_shape, num_classes):
    return TwoLayer(input_shape[0] * input_shape[1] * input_shape[2], 3)


def wrong_pixels(input_shape, num_classes):
    return TwoLayer(7, num_classes)


def headless(input_shape, num_classes):  # all convolutional: its logits are pooled channels
    return nn.Sequential(nn.Conv2d(input_shape[0], num_classes, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
"""


@pytest.fixture
def user_module(tmp_path, monkeypatch) -> str:
    """The module above, written outside the project and importable: its name."""
    return write_user_module(tmp_path, monkeypatch, "user_models", USER_MODULE)


def test_a_users_model_is_built_and_extended_by_precode_before_its_head(user_module):
    config = RunConfig.from_flat({"model.name": f"{user_module}:build"})
    model = Architecture.of(config, (1, 32, 32), 10).build(seed=0)
    assert type(model).__name__ == "TwoLayer" and model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
    extended = Architecture.of(config.with_overrides({"precode.enabled": True}), (1, 32, 32), 10).build(seed=0)
    assert isinstance(extended.out[0], VariationalBottleneck) and extended.out[1].out_features == 10


@pytest.mark.parametrize("builder, message", [
    ("no_such_module_here:build", "cannot be imported: ModuleNotFoundError: No module named 'no_such_module_here'"),
    ("{module}:missing", "cannot be imported: AttributeError"),
    ("{module}:raises", "the builder raised ValueError: no GPU for this one"),
    ("{module}:not_a_module", "the builder returned a str, not a torch.nn.Module"),
    ("{module}:wrong_classes", "returns (2, 3) for 2 images of shape (1, 32, 32); it must return logits of shape "
                               "(2, 10)"),
    ("{module}:wrong_pixels", "cannot take images of shape (1, 32, 32): RuntimeError"),
])
def test_a_bad_model_builder_is_refused_in_one_line(user_module, builder, message):
    config = RunConfig.from_flat({"model.name": builder.format(module=user_module)})
    with pytest.raises(ConfigError) as raised:
        Architecture.of(config, (1, 32, 32), 10).build()
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_model_names_that_are_neither_the_zoo_nor_an_import_path_are_refused():
    with pytest.raises(ConfigError, match=r"must be one of lenet, convnet, flower-cnn, femnist-cnn, mlp, resnet18, "
                                          r"or a builder of your own "
                                          r"as package.module:builder; got 'mlp2'"):
        RunConfig.from_flat({"model.name": "mlp2"})


def test_precode_refuses_a_users_model_without_a_classifier_head(user_module):
    config = RunConfig.from_flat({"model.name": f"{user_module}:headless", "precode.enabled": True})
    with pytest.raises(ConfigError, match="needs a classifier head to put the bottleneck before: a last nn.Linear"):
        Architecture.of(config, (1, 32, 32), 10).build()


def test_a_users_model_is_trained_and_every_update_attacked(user_module, tiny_config):
    config = tiny_config.with_overrides({**{k: v for k, v in FEDSGD.items() if k.startswith("train.")},
                                         "model.name": f"{user_module}:build", "attack.enabled": True,
                                         "attack.blocking": True, "attack.budget-seconds": 0.0,
                                         "defense.per-client": "", "num-server-rounds": 1})
    events = read_events(run_locally(config))
    attacks = [e for e in events if e["event"] == "attack"]
    trained = [e for e in events if e["event"] == "client-train"]
    assert len(attacks) == len(trained) >= 2 and all(e["verdict"] == "leaked" for e in attacks)
    assert all({"isolation", "analytic"} <= set(e["applied"]) for e in attacks)
    assert events[-1]["status"] == "completed"
