"""Judging a reconstruction against the client's real images: the only place ground truth enters.

Reconstructions of a batch come out in any order, so reconstructed images are matched to the
samples the client trained on in that round one-to-one, by an optimal assignment that maximises
the total SSIM (``scipy.optimize.linear_sum_assignment``): four copies of one reconstruction
match four different samples, and at most one of them can score high. Reconstructions beyond the
number of samples are left unmatched and never leak. An image leaks when its SSIM reaches the
threshold (0.6 by default, the criterion used for PRECODE's protocol); a client's update leaks
when at least one of its images does.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from attacker.metrics import Similarity, similarity, ssim


@dataclass(frozen=True)
class ImageVerdict:
    """One reconstructed image, the ground truth it is scored against (index into the candidates) and scores.

    ``assigned`` is False for a reconstruction left over when there are more reconstructions than
    samples: it is then scored against its most similar sample, and it never leaks.
    """

    match: int
    scores: Similarity
    leaked: bool
    assigned: bool = True


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

    @property
    def images_leaked(self) -> int:
        """How many reconstructed images leaked."""
        return sum(image.leaked for image in self.images)

    @property
    def mean_ssim(self) -> float:
        """The mean SSIM over reconstructed images."""
        return statistics.mean(image.scores.ssim for image in self.images)


def judge(reconstruction: torch.Tensor, labels: torch.Tensor, truth: torch.Tensor, truth_labels: torch.Tensor,
          threshold: float) -> Verdict:
    """Score ``reconstruction`` ``[B, C, H, W]`` and its ``labels`` against the candidates ``truth``.

    Reconstructions are clipped to the pixel range [0, 1] first (DLG's are unboxed). Label
    accuracy is the share of recovered labels found in the true labels, counted as multisets (a
    label recovered twice must be present twice).
    """
    recon, candidates = reconstruction.clamp(0, 1).numpy(), truth.numpy()
    scores = np.array([[ssim(image, candidate) for candidate in candidates] for image in recon])
    rows, cols = linear_sum_assignment(scores, maximize=True)
    assigned = dict(zip(rows.tolist(), cols.tolist()))
    verdicts = []
    for index, image in enumerate(recon):
        match = assigned.get(index, int(np.argmax(scores[index])))
        found = similarity(image, candidates[match])
        verdicts.append(ImageVerdict(match=match, scores=found, leaked=index in assigned and found.ssim >= threshold,
                                     assigned=index in assigned))
    found_labels = Counter(labels.tolist()) & Counter(truth_labels.tolist())
    return Verdict(images=verdicts, label_accuracy=sum(found_labels.values()) / len(labels),
                   leaked=any(v.leaked for v in verdicts))


def worst_case(verdicts: list[Verdict]) -> int:
    """Index of the verdict that leaks most: most images leaked, then the highest mean SSIM."""
    return max(range(len(verdicts)), key=lambda i: (verdicts[i].images_leaked, verdicts[i].mean_ssim))
