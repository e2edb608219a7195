"""Gradient-matching costs and image priors shared by the attacks."""

from __future__ import annotations

from collections.abc import Mapping

import torch

Arrays = Mapping[str, torch.Tensor]


def l2_distance(trial: Arrays, target: Arrays) -> torch.Tensor:
    """DLG's cost: the summed squared difference over every parameter's gradient (Zhu et al., 2019)."""
    return sum(((trial[name] - target[name]) ** 2).sum() for name in target)


def cosine_distance(trial: Arrays, target: Arrays) -> torch.Tensor:
    """Inverting Gradients' cost: ``1 - cos`` of the two gradients seen as one long vector.

    As inversefed's ``cost_fn='sim'`` with ``indices='def'`` and equal weights (Geiping et
    al., 2020): dot products and norms are summed over all layers before dividing.
    """
    dot = sum((trial[name] * target[name]).sum() for name in target)
    trial_norm = sum(trial[name].pow(2).sum() for name in target).sqrt()
    target_norm = sum(target[name].pow(2).sum() for name in target).sqrt()
    return 1 - dot / (trial_norm * target_norm)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation, mean absolute difference of neighbouring pixels (inversefed's TV)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return dx + dy
