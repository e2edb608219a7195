"""The CNNs of the FedAvg-leakage literature and of Flower's own template, for any input size.

- :func:`flower_cnn`: the ``Net`` of Flower's ``quickstart-pytorch`` template (and PyTorch's CIFAR-10
  tutorial): two 5x5 convolutions of 6 and 16 channels, each ReLU and 2x2 max-pool, then fully connected
  layers of 120 and 84 ReLU units. The model a Flower user trains first.
- :func:`femnist_cnn`: the FEMNIST CNN of Dimitrov et al., "Data Leakage in Federated Averaging" (TMLR 2022;
  ``eth-sri/fedavg_leakage``, ``models/base_flax.py``, ``CNN``) and of SME (``models/mnistCNN.py``,
  ``CNNmnist``): two 3x3 convolutions of 32 and 64 channels ('same' padding), each ReLU and 2x2 average pool,
  then 100 ReLU units.
"""

from __future__ import annotations

from torch import nn

from fl_sim.models.base import FeatureClassifier, flat_feature_dim


def flower_cnn(input_shape: tuple[int, int, int], num_classes: int) -> FeatureClassifier:
    """Flower's template CNN: conv 6 and 16 (5x5, max-pool), FC 120 and 84."""
    conv = nn.Sequential(
        nn.Conv2d(input_shape[0], 6, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, kernel_size=5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
    )
    features = nn.Sequential(conv, nn.Linear(flat_feature_dim(conv, input_shape), 120), nn.ReLU(),
                             nn.Linear(120, 84), nn.ReLU())
    return FeatureClassifier(features, nn.Linear(84, num_classes), 84)


def femnist_cnn(input_shape: tuple[int, int, int], num_classes: int) -> FeatureClassifier:
    """Dimitrov et al.'s and SME's FEMNIST CNN: conv 32 and 64 (3x3, average pool), FC 100."""
    conv = nn.Sequential(
        nn.Conv2d(input_shape[0], 32, kernel_size=3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(32, 64, kernel_size=3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(),
    )
    features = nn.Sequential(conv, nn.Linear(flat_feature_dim(conv, input_shape), 100), nn.ReLU())
    return FeatureClassifier(features, nn.Linear(100, num_classes), 100)
