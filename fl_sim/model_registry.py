"""Every ``model.name`` a run can train, declared once: its builder and the ``model.*`` settings it takes.

The configuration's allowed values and :func:`fl_sim.models.build_model` read this table; builders
are named by import path, so that a configuration is checked without importing torch. Adding a
model is one ``MODELS.register`` call and its builder, ``builder(input_shape, num_classes,
**settings) -> FeatureClassifier`` (torchvision's ``register_model`` is the pattern).

A user's own model needs no registration: ``model.name=package.module:builder`` names a builder that
takes the input shape ``(C, H, W)`` and the number of classes and returns any ``torch.nn.Module``, or a
model class that takes no arguments (:func:`model_entry` makes its entry; it must be importable where the
clients and the server run).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from fl_sim.registry import Registry


@dataclass(frozen=True)
class ModelEntry:
    """One model: its name, its builder (``module:function``) and configuration key -> builder argument."""

    name: str
    builder: str
    settings: Mapping[str, str] = field(default_factory=dict)


#: Every model by name.
MODELS: Registry[ModelEntry] = Registry("model")

for _entry in (
    ModelEntry("lenet", "fl_sim.models.lenet:lenet"),
    ModelEntry("convnet", "fl_sim.models.convnet:convnet"),
    ModelEntry("flower-cnn", "fl_sim.models.cnn:flower_cnn"),
    ModelEntry("femnist-cnn", "fl_sim.models.cnn:femnist_cnn"),
    ModelEntry("mlp", "fl_sim.models.mlp:mlp", {"model.width": "width", "model.depth": "depth"}),
    ModelEntry("resnet18", "fl_sim.models.resnet:resnet18", {"model.norm": "norm"}),
):
    MODELS.register(_entry)


def model_entry(name: str) -> ModelEntry:
    """The entry of ``model.name``: the zoo's, or, for ``package.module:builder``, one for that builder alone."""
    return MODELS[name] if name in MODELS else ModelEntry(name, name)
