"""A small ReLU ConvNet: the kind of CNN a practitioner trains first on small images."""

from __future__ import annotations

from torch import nn

from fl_sim.models.base import FeatureClassifier, flat_feature_dim


def convnet(input_shape: tuple[int, int, int], num_classes: int) -> FeatureClassifier:
    """Two conv(3x3)-ReLU-maxpool blocks (32, 64 channels) and a 128-unit ReLU layer."""
    channels = input_shape[0]
    conv = nn.Sequential(
        nn.Conv2d(channels, 32, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    features = nn.Sequential(conv, nn.Linear(flat_feature_dim(conv, input_shape), 128), nn.ReLU())
    return FeatureClassifier(features, nn.Linear(128, num_classes), 128)
