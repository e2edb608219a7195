"""A fully connected network, as PRECODE's notebook uses for its victims (1024-1024, ReLU).

Its first layer sees the raw pixels, so its weight and bias gradients reveal a single input
exactly (the analytic attack); that is why it is in the zoo.
"""

from __future__ import annotations

import math

from torch import nn

from fl_sim.models.base import FeatureClassifier


def mlp(input_shape: tuple[int, int, int], num_classes: int, width: int = 1024, depth: int = 2) -> FeatureClassifier:
    """``depth`` Linear-ReLU layers of ``width`` units on the flattened image, then a linear head."""
    layers: list[nn.Module] = [nn.Flatten()]
    in_features = math.prod(input_shape)
    for _ in range(depth):
        layers += [nn.Linear(in_features, width), nn.ReLU()]
        in_features = width
    return FeatureClassifier(nn.Sequential(*layers), nn.Linear(width, num_classes), width)
