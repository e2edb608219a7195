"""The success criterion before the judge measured chance, kept to print old figures next to new ones.

It matched reconstructions to the images held by the one-to-one assignment that maximises the
total SSIM and counted an image leaked at SSIM >= 0.6, with no reference and no chance: handed
real images the client never held, it called most updates of 8 or more digits leaked.
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from attacker.metrics import ssim

#: The old criterion's threshold (PRECODE's protocol), the same as ``attack.success-ssim``'s default.
OLD_THRESHOLD = 0.6


def old_leaks(reconstruction: torch.Tensor, truth: torch.Tensor) -> int:
    """Images the old criterion called leaked: assigned by maximal total SSIM, SSIM >= 0.6."""
    scores = ssim(reconstruction.clamp(0, 1)[:, None], truth[None]).numpy()
    rows, cols = linear_sum_assignment(scores, maximize=True)
    return int((scores[rows, cols] >= OLD_THRESHOLD).sum())
