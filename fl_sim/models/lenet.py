"""The LeNet of Deep Leakage from Gradients (Zhu et al., 2019; mit-han-lab/dlg, models/vision.py).

Three 5x5 convolutions with 12 channels and strides 2, 2, 1 (padding 2), each followed by a
sigmoid, then one linear layer on the flattened features (768 of them for 32x32 inputs). The
smooth sigmoid makes it the standard victim of optimisation-based gradient inversion.
"""

from __future__ import annotations

from torch import nn

from fl_sim.models.base import FeatureClassifier, flat_feature_dim


def lenet(input_shape: tuple[int, int, int], num_classes: int) -> FeatureClassifier:
    """DLG's LeNet for any input size and channel count."""
    channels = input_shape[0]
    features = nn.Sequential(
        nn.Conv2d(channels, 12, kernel_size=5, padding=2, stride=2),
        nn.Sigmoid(),
        nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=2),
        nn.Sigmoid(),
        nn.Conv2d(12, 12, kernel_size=5, padding=2, stride=1),
        nn.Sigmoid(),
        nn.Flatten(),
    )
    dim = flat_feature_dim(features, input_shape)
    return FeatureClassifier(features, nn.Linear(dim, num_classes), dim)
