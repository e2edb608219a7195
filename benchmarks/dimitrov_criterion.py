"""Dimitrov et al.'s success criterion, to print their figure's kind next to the judge's.

"Data Leakage in Federated Averaging" (TMLR 2022; ``eth-sri/fedavg_leakage``, ``attacks/grad_attack.py``,
``compute_matching``): the reconstructions are assigned one to one to the client's images by the Hungarian
algorithm on PSNR (pixels in [0, 1]), and an image counts as recovered when its assigned reconstruction is above
20 dB (``--delta=20.0``). It has no reference and no chance: it says how close, not whether the image is
identified among others (the judge's question).
"""

from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment

from attacker.metrics import psnr

#: The PSNR an assigned reconstruction must exceed (``--delta`` of their table scripts).
RECOVERED_DB = 20.0


def recovered_images(reconstruction: torch.Tensor, truth: torch.Tensor) -> int:
    """Images Dimitrov et al. count as recovered: assigned by maximal total PSNR, above 20 dB."""
    scores = psnr(reconstruction.clamp(0, 1)[:, None], truth[None]).clamp(max=100.0).numpy()  # finite where equal
    rows, cols = linear_sum_assignment(scores, maximize=True)
    return int((scores[rows, cols] > RECOVERED_DB).sum())
