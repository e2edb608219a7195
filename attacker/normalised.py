"""Images in the normalised units that the FedAvg attacks of Dimitrov et al. and of SME optimise in.

Both papers' FEMNIST attacks optimise images as the client's normalisation leaves them, ``(pixel - mean) / std``,
started at N(0, 1) with step sizes in those units (``eth-sri/fedavg_leakage``, ``datasets/common.py``;
``JunyiZhu-AI/surrogate_model_extension``, ``utils/dataloader.py``). The server knows the scale of the data a
protocol trains on, not the clients' mean: the units here are FEMNIST's std about a neutral grey.
"""

from __future__ import annotations

import torch

#: FEMNIST's pixel std (both papers' ``MEAN_STD``): the unit of the normalised images and of the step sizes.
PIXEL_STD = 0.15767843198426892
#: The grey the normalised images are centred on.
PIXEL_CENTRE = 0.5


def pixels(z: torch.Tensor) -> torch.Tensor:
    """Images in [0, 1] units (unclipped) from normalised ones."""
    return PIXEL_CENTRE + PIXEL_STD * z


def normalised_box() -> tuple[float, float]:
    """The pixel range [0, 1] in normalised units."""
    return (-PIXEL_CENTRE / PIXEL_STD, (1 - PIXEL_CENTRE) / PIXEL_STD)
