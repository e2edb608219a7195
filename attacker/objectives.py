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


def out_of_bounds(trial: Arrays, target: Arrays, mask: Arrays, bounds: Arrays) -> torch.Tensor:
    """How far ``trial``'s coordinates that did not travel lie outside the pruning's bounds, relative to ``target``.

    ``trial`` is brought to ``target``'s scale first (the least-squares factor over the coordinates that travelled,
    which is what a scale-free cost such as :func:`cosine_distance` leaves open); then each coordinate masked out
    (``mask`` 0) that lies between its array's ``bounds`` ``[smallest, largest]`` kept magnitude, where the rule
    would have kept it, counts its distance to the nearer one. The squared distances, over ``target``'s squared
    norm: 0 exactly when the trial gradient is one the defense could have pruned into the upload seen.
    """
    dot = sum((trial[name] * mask[name] * target[name]).sum() for name in target)
    power = sum((trial[name] * mask[name]).pow(2).sum() for name in target)
    scale = dot / power.clamp(min=1e-30)
    excess = 0.0
    for name in target:
        magnitude = (scale * trial[name]).abs() * (1 - mask[name])
        inside = torch.minimum(magnitude - bounds[name][0], bounds[name][1] - magnitude).clamp(min=0)
        excess = excess + inside.pow(2).sum()
    return excess / sum(target[name].pow(2).sum() for name in target).clamp(min=1e-30)


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Anisotropic total variation, mean absolute difference of neighbouring pixels (inversefed's TV)."""
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    return dx + dy
