"""The model zoo: every model is a :class:`FeatureClassifier` chosen by ``model.name``; or a user's own.

Which builder a name means is declared once, in :mod:`fl_sim.model_registry`; ``package.module:builder``
names a user's builder, whose model may be any ``nn.Module`` that maps a batch of images to class logits
(:func:`build_model` checks that, in one line).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from fl_sim.config import ModelConfig, PrecodeConfig, RunConfig
from fl_sim.config.flat import flatten
from fl_sim.errors import ConfigError
from fl_sim.model_registry import model_entry
from fl_sim.models.base import FeatureClassifier, training_penalty
from fl_sim.models.convnet import convnet
from fl_sim.models.lenet import lenet
from fl_sim.models.mlp import mlp
from fl_sim.models.precode import VariationalBottleneck, extend_with_precode
from fl_sim.models.resnet import resnet18
from fl_sim.registry import is_import_path, load

__all__ = ["Architecture", "FeatureClassifier", "VariationalBottleneck", "build_model", "convnet", "lenet",
           "mlp", "resnet18", "training_penalty"]


@dataclass(frozen=True)
class Architecture:
    """The model a run trains, as the server and every client build it: ``model.*``, PRECODE, the data's shape.

    What a component that builds the run's model needs of the configuration, and no more: the attacker's victim,
    the clients and the server are handed one, not the whole run config.
    """

    model: ModelConfig
    precode: PrecodeConfig
    input_shape: tuple[int, int, int]
    num_classes: int

    @classmethod
    def of(cls, config: RunConfig, input_shape: tuple[int, int, int], num_classes: int) -> Architecture:
        """The architecture ``config`` trains on images of ``input_shape`` in ``num_classes`` classes."""
        return cls(config.model, config.precode, tuple(input_shape), num_classes)

    def build(self, seed: int | None = None) -> nn.Module:
        """A fresh model: ``model.*``, with PRECODE when ``precode.enabled``; ``seed`` fixes its weights."""
        model = build_model(self.model, self.input_shape, self.num_classes, seed=seed)
        precode = self.precode
        if precode.enabled:
            model = extend_with_precode(model, self.input_shape, self.num_classes, precode.k, precode.beta,
                                        precode.position, precode.eval_sampling)
        return model


def build_model(config: ModelConfig, input_shape: tuple[int, int, int], num_classes: int,
                seed: int | None = None) -> nn.Module:
    """Build the configured model; with ``seed`` its initial weights are reproducible.

    A user's builder that cannot be imported, raises, returns something other than an ``nn.Module``, or a
    model whose logits do not fit ``num_classes`` for one image of ``input_shape``: a one-line ConfigError.
    """
    if seed is not None:
        torch.manual_seed(seed)
    entry, values = model_entry(config.name), dict(flatten(config, "model."))
    key = f"config key 'model.name' ({config.name})"
    try:
        builder = load(entry.builder)
    except (ImportError, AttributeError) as err:
        raise ConfigError(f"{key} cannot be imported: {type(err).__name__}: {err}; make its package importable "
                          f"(installed, or its folder on PYTHONPATH)") from err
    arguments = (input_shape, num_classes) if _takes_arguments(builder) else ()
    try:
        model = builder(*arguments, **{argument: values[key_] for key_, argument in entry.settings.items()})
    except Exception as err:  # a user's builder: whatever it raises is the user's to fix
        raise ConfigError(f"{key}: the builder raised {type(err).__name__}: {err}") from err
    if not isinstance(model, nn.Module):
        raise ConfigError(f"{key}: the builder returned a {type(model).__name__}, not a torch.nn.Module")
    if is_import_path(config.name):  # the zoo's models fit by construction; a user's is checked where it is built
        _check_logits(model, input_shape, num_classes, key)
    if config.init == "dlg":
        _dlg_uniform_init(model)
    return model


def _takes_arguments(builder: Callable) -> bool:
    """Whether ``builder`` takes the input shape and the number of classes, or nothing.

    The zoo's builders and a user's take them; a user's model class such as Flower quickstart's ``Net`` does not.
    """
    try:
        parameters = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature: call it as the zoo's
        return True
    return any(p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in parameters)


def _check_logits(model: nn.Module, input_shape: tuple[int, int, int], num_classes: int, key: str) -> None:
    """Refuse, in one line, a model that does not map one image of ``input_shape`` to ``num_classes`` logits."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            logits = model(torch.zeros(2, *input_shape))
    except Exception as err:  # shapes that do not fit surface as whatever the user's layers raise
        raise ConfigError(f"{key} cannot take images of shape {tuple(input_shape)}: {type(err).__name__}: "
                          f"{str(err).splitlines()[0] if str(err) else ''}") from err
    finally:
        model.train(was_training)
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, num_classes):
        shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ConfigError(f"{key} returns {shape} for 2 images of shape {tuple(input_shape)}; it must return "
                          f"logits of shape (2, {num_classes}) for this data set")


def _dlg_uniform_init(model: nn.Module) -> None:
    """DLG's ``weights_init``: every weight and bias ~ U(-0.5, 0.5) (mit-han-lab/dlg, models/vision.py)."""
    with torch.no_grad():
        for param in model.parameters():
            param.uniform_(-0.5, 0.5)
