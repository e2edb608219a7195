"""The shape every model of the zoo shares: a feature extractor, then a final classifier.

Keeping the two apart gives defenses a clean seam: PRECODE inserts its variational bottleneck
between them, and attacks can address the classifier's gradients (label recovery) by name.
"""

from __future__ import annotations

import torch
from torch import nn


class FeatureClassifier(nn.Module):
    """``classifier(features(x))``, with the flattened feature size recorded as ``feature_dim``."""

    def __init__(self, features: nn.Module, classifier: nn.Module, feature_dim: int) -> None:
        super().__init__()
        self.features = features
        self.classifier = classifier
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits for a batch of images ``[N, C, H, W]``."""
        return self.classifier(self.features(x))

    def penalty(self) -> torch.Tensor:
        """Extra training loss of the last forward pass (PRECODE's ``beta * KL``); 0 for plain models."""
        terms = [m.penalty() for m in self.modules() if m is not self and hasattr(m, "penalty")]
        return sum(terms, torch.zeros(()))


def flat_feature_dim(features: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Size of ``features``' flattened output for one input of ``input_shape`` (found by a dry run)."""
    with torch.no_grad():
        was_training = features.training
        features.eval()
        dim = features(torch.zeros(1, *input_shape)).flatten(1).shape[1]
        features.train(was_training)
    return dim
