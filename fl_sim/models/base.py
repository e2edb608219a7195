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


def training_penalty(model: nn.Module) -> torch.Tensor:
    """Extra training loss of ``model``'s last forward pass: its modules' ``penalty()`` (PRECODE's ``beta * KL``).

    0 for plain models, a user's included.
    """
    terms = [m.penalty() for m in model.modules() if m is not model and hasattr(m, "penalty")]
    return sum(terms, torch.zeros(()))


def flat_feature_dim(features: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Size of ``features``' flattened output for one input of ``input_shape`` (found by a dry run)."""
    with torch.no_grad():
        was_training = features.training
        features.eval()
        dim = features(torch.zeros(1, *input_shape)).flatten(1).shape[1]
        features.train(was_training)
    return dim


def classifier_head(model: nn.Module, num_classes: int) -> str | None:
    """The name of ``model``'s classifier head: its last ``nn.Linear`` with ``num_classes`` outputs (``None``: none).

    ``classifier`` for the zoo; for a user's model what PRECODE extends and label recovery reads.
    """
    heads = [name for name, module in model.named_modules()
             if isinstance(module, nn.Linear) and module.out_features == num_classes]
    return heads[-1] if heads else None
