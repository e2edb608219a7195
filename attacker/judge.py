"""Judging a reconstruction against the client's real images: the only place ground truth enters.

Reconstructions of a batch come out in any order, so each reconstructed image is matched to
the ground-truth image it resembles most (highest SSIM) among the samples the client trained
on in that round. An image leaks when its SSIM reaches the threshold (0.6 by default, the
criterion used for PRECODE's protocol); a client's update leaks when at least one of its images
does.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch

from attacker.metrics import Similarity, similarity, ssim


@dataclass(frozen=True)
class ImageVerdict:
    """One reconstructed image, its best-matching ground truth (index into the candidates) and scores."""

    match: int
    scores: Similarity
    leaked: bool


@dataclass(frozen=True)
class Verdict:
    """The judgement of one attacked update."""

    images: list[ImageVerdict]
    label_accuracy: float
    leaked: bool

    @property
    def best_ssim(self) -> float:
        """The highest SSIM of any reconstructed image."""
        return max(image.scores.ssim for image in self.images)


def judge(reconstruction: torch.Tensor, labels: torch.Tensor, truth: torch.Tensor, truth_labels: torch.Tensor,
          threshold: float) -> Verdict:
    """Score ``reconstruction`` ``[B, C, H, W]`` and its ``labels`` against the candidates ``truth``.

    Label accuracy is the share of recovered labels found in the true labels, counted as
    multisets (a label recovered twice must be present twice).
    """
    recon, candidates = reconstruction.numpy(), truth.numpy()
    verdicts = []
    for image in recon:
        match = int(np.argmax([ssim(image, candidate) for candidate in candidates]))
        scores = similarity(image, candidates[match])
        verdicts.append(ImageVerdict(match=match, scores=scores, leaked=scores.ssim >= threshold))
    found = Counter(labels.tolist()) & Counter(truth_labels.tolist())
    return Verdict(images=verdicts, label_accuracy=sum(found.values()) / len(labels),
                   leaked=any(v.leaked for v in verdicts))
