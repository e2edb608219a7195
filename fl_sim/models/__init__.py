"""The model zoo: every model is a :class:`FeatureClassifier` chosen by ``model.name``.

Which builder a name means is declared once, in :mod:`fl_sim.model_registry`.
"""

from __future__ import annotations

import torch
from torch import nn

from fl_sim.config import ModelConfig, RunConfig
from fl_sim.config.flat import flatten
from fl_sim.model_registry import MODELS
from fl_sim.models.base import FeatureClassifier
from fl_sim.models.convnet import convnet
from fl_sim.models.lenet import lenet
from fl_sim.models.mlp import mlp
from fl_sim.models.precode import VariationalBottleneck, extend_with_precode
from fl_sim.models.resnet import resnet18
from fl_sim.registry import load

__all__ = ["FeatureClassifier", "VariationalBottleneck", "build_model", "build_run_model", "convnet", "lenet",
           "mlp", "resnet18"]


def build_run_model(config: RunConfig, input_shape: tuple[int, int, int], num_classes: int,
                    seed: int | None = None) -> FeatureClassifier:
    """The model a run trains: ``model.*``, extended with PRECODE when ``precode.enabled``."""
    model = build_model(config.model, input_shape, num_classes, seed=seed)
    precode = config.precode
    if precode.enabled:
        model = extend_with_precode(model, input_shape, precode.k, precode.beta, precode.position,
                                    precode.eval_sampling)
    return model


def build_model(config: ModelConfig, input_shape: tuple[int, int, int], num_classes: int,
                seed: int | None = None) -> FeatureClassifier:
    """Build the configured model; with ``seed`` its initial weights are reproducible."""
    if seed is not None:
        torch.manual_seed(seed)
    entry, values = MODELS[config.name], dict(flatten(config, "model."))
    model = load(entry.builder)(input_shape, num_classes, **{argument: values[key]
                                                            for key, argument in entry.settings.items()})
    if config.init == "dlg":
        _dlg_uniform_init(model)
    return model


def _dlg_uniform_init(model: nn.Module) -> None:
    """DLG's ``weights_init``: every weight and bias ~ U(-0.5, 0.5) (mit-han-lab/dlg, models/vision.py)."""
    with torch.no_grad():
        for param in model.parameters():
            param.uniform_(-0.5, 0.5)
