"""Image-similarity metrics with scikit-image's conventions (the ones PRECODE's notebook reports).

Images are float arrays in [0, 1], ``[C, H, W]``. SSIM uses scikit-image's default 7x7 uniform
window with ``data_range=1`` and averages the channels; PSNR uses the data range 1. Both call
scikit-image itself, so the figures are identical to ``structural_similarity`` and
``peak_signal_noise_ratio`` on the same arrays. LPIPS is not computed: its network weights
cannot be downloaded here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


@dataclass(frozen=True)
class Similarity:
    """How close a reconstruction is to one ground-truth image."""

    mse: float
    psnr: float
    ssim: float


def _hwc(image: np.ndarray) -> np.ndarray:
    return np.moveaxis(np.asarray(image, dtype=np.float64), 0, -1)


def ssim(reconstruction: np.ndarray, truth: np.ndarray) -> float:
    """Structural similarity of two ``[C, H, W]`` images in [0, 1] (scikit-image, channels averaged)."""
    a, b = _hwc(reconstruction), _hwc(truth)
    return float(structural_similarity(a, b, data_range=1.0, channel_axis=-1))


def similarity(reconstruction: np.ndarray, truth: np.ndarray) -> Similarity:
    """MSE, PSNR (dB; inf for identical images) and SSIM of two ``[C, H, W]`` images in [0, 1]."""
    a, b = np.asarray(reconstruction, dtype=np.float64), np.asarray(truth, dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    psnr = float("inf") if mse == 0 else float(peak_signal_noise_ratio(b, a, data_range=1.0))
    return Similarity(mse=mse, psnr=psnr, ssim=ssim(a, b))
