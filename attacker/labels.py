"""Label recovery from the classifier's gradient, before any image is reconstructed.

One image: iDLG (Zhao et al., 2020). With cross-entropy, the classifier's weight gradient is
``(p - onehot(y)) h^T``; when the features ``h`` are non-negative (sigmoid or ReLU before the
head, as in every model of the zoo) only the true class's row sums to a negative value, so the
label is the row with the smallest sum.

A batch: the LLG-style rule ("wainakh-simple" in breaching): the bias gradient is
``mean_i (p_i - onehot(y_i))``; classes with a negative entry are present in the batch. They
are taken most-negative first; if there are fewer of them than images, the most negative class
is repeated (a class drawn twice is the common case for small label sets).
"""

from __future__ import annotations

import torch

CLASSIFIER_WEIGHT = "classifier.weight"
CLASSIFIER_BIAS = "classifier.bias"


def recover_labels(gradient: dict[str, torch.Tensor], num_images: int) -> torch.Tensor:
    """Labels of the ``num_images`` images behind ``gradient`` (iDLG for one, LLG-style for more)."""
    if num_images == 1:
        return gradient[CLASSIFIER_WEIGHT].sum(dim=-1).argmin().reshape(1)
    bias = gradient[CLASSIFIER_BIAS]
    order = bias.argsort()
    present = order[bias[order] < 0]
    if len(present) == 0:
        present = order[:1]
    if len(present) >= num_images:
        return present[:num_images].clone()
    repeats = present[:1].repeat(num_images - len(present))
    return torch.cat([present, repeats])
