"""Image-similarity metrics with scikit-image's conventions (the ones PRECODE's notebook reports), vectorised.

Images are float tensors in [0, 1], ``[..., C, H, W]``; every function scores pairs along the
leading dimensions, broadcasting them, so one call scores a batch of pairs or, with
``a[:, None]`` against ``b[None]``, all pairs of two sets. SSIM follows
``skimage.metrics.structural_similarity(data_range=1, channel_axis=...)``: a 7x7 uniform window,
sample covariances, K1 = 0.01, K2 = 0.03, the border of 3 pixels left out of the mean, the
channels averaged; PSNR uses the data range 1. Both are computed in float64 and equal
scikit-image's to 1e-12 on the same arrays (tested). LPIPS is not computed: its network weights
cannot be downloaded here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

#: scikit-image's defaults: the side of the uniform window and the stabilising constants' factors.
SSIM_WINDOW, SSIM_K1, SSIM_K2 = 7, 0.01, 0.03


@dataclass(frozen=True)
class Similarity:
    """How close a reconstruction is to one ground-truth image."""

    mse: float
    psnr: float
    ssim: float


def ssim(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Structural similarity of the pairs of ``[..., C, H, W]`` images ``a`` and ``b`` (broadcast), channels averaged.

    Only the windows that lie wholly inside the image enter the mean, which is exactly what
    scikit-image's crop of its padded filter leaves, so no padding is needed. The pairwise term
    (the windows' mean of ``a * b``) is the one that costs: it is formed for every pair at once.
    """
    a, b = a.double(), b.double()
    covariance = SSIM_WINDOW ** 2 / (SSIM_WINDOW ** 2 - 1)  # scikit-image's sample covariance
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    mean_a, mean_b = _window_mean(a), _window_mean(b)
    var_a = covariance * (_window_mean(a * a) - mean_a ** 2)
    var_b = covariance * (_window_mean(b * b) - mean_b ** 2)
    cov_ab = covariance * (_window_mean(a * b) - mean_a * mean_b)
    index = ((2 * mean_a * mean_b + c1) * (2 * cov_ab + c2)) / ((mean_a ** 2 + mean_b ** 2 + c1) * (var_a + var_b + c2))
    return index.mean(dim=(-1, -2)).mean(dim=-1)


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the pairs of ``[..., C, H, W]`` images (broadcast), in float64."""
    return ((a.double() - b.double()) ** 2).mean(dim=(-1, -2, -3))


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio (dB, data range 1) of the pairs of images; inf for identical images."""
    return -10 * torch.log10(mse(a, b))


def similarity(reconstruction: torch.Tensor, truth: torch.Tensor) -> list[Similarity]:
    """MSE, PSNR and SSIM of each pair of ``[B, C, H, W]`` reconstructions and true images."""
    errors, ssims = mse(reconstruction, truth), ssim(reconstruction, truth)
    return [Similarity(mse=float(e), psnr=float(-10 * torch.log10(e)), ssim=float(s))
            for e, s in zip(errors, ssims)]


def _window_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of every ``SSIM_WINDOW`` x ``SSIM_WINDOW`` window wholly inside ``[..., H, W]``."""
    height, width = x.shape[-2:]
    windows = F.avg_pool2d(x.reshape(-1, 1, height, width), SSIM_WINDOW, stride=1)
    return windows.reshape(*x.shape[:-2], *windows.shape[-2:])
