"""What chance achieves: how close real images a client never held come to its images, at a given count.

A reconstruction *identifies* a true image when it is much closer to it than to any image of a
reference set of the same distribution that the client did not hold. Closeness is the pixel
distance between images smoothed by a Gaussian of ``IDENTITY_SIGMA`` pixels: an image's identity
lies in its structure, and pixel noise (DLG's speckle, a noised upload) is no evidence either way.
A reconstruction's *identification ratio* is its distance to its match over its distance to the
nearest reference image: below 1 it is the match's nearest neighbour, near 0 it is the match.

How low a ratio must be to count depends on the count: the more true images an update holds, the
likelier one of them has a look-alike among the guesses. :class:`ChanceModel` measures it. It
draws, many times, a client's worth of images (N) and decoys of the same labels that the client
never held (M, the number of reconstructions) from a pool of the data set's images, the rest of
the pool being the reference, and records each draw's lowest decoy ratio (each decoy against its
nearest true image, more lenient than the judge's one-to-one match). The required ratio is the
largest at which at most ``false_leak_rate`` of the draws would have had ANY decoy identified:
the error is controlled per update, not per image, so that an update of 128 images is not judged
leaked by chance any more often than an update of one. It never exceeds 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fl_sim import events

#: Smoothing (Gaussian standard deviation, pixels) of images before identification distances.
IDENTITY_SIGMA = 1.0
#: Draws of (client images, decoys, reference) per calibrated count.
CALIBRATION_DRAWS = 1000


def identity_features(images: torch.Tensor) -> torch.Tensor:
    """``[K, C, H, W]`` images in [0, 1] as ``[K, C*H*W]`` float64 vectors, smoothed by ``IDENTITY_SIGMA``."""
    radius = math.ceil(3 * IDENTITY_SIGMA)
    taps = torch.exp(-torch.arange(-radius, radius + 1, dtype=torch.float64) ** 2 / (2 * IDENTITY_SIGMA ** 2))
    taps = taps / taps.sum()
    count, channels, height, width = images.shape
    x = images.double().clamp(0, 1).reshape(count * channels, 1, height, width)
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), taps.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), taps.view(1, 1, -1, 1))
    return x.reshape(count, -1)


def distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances ``[len(a), len(b)]`` between rows of two float64 feature matrices."""
    squared = (a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T
    return squared.clamp(min=0).sqrt()


@dataclass(frozen=True)
class Chance:
    """What decoys reach at one count: the identification ratio a leak needs, and the decoys' rates at it.

    ``decoy_update_rate``: the share of calibration draws in which any decoy was identified;
    ``decoy_image_rate``: the share of decoys identified. Both at ``required_ratio``, before the
    SSIM threshold (which only lowers them).
    """

    reconstructions: int
    held: int
    required_ratio: float
    decoy_update_rate: float
    decoy_image_rate: float
    draws: int

    @property
    def required_margin_db(self) -> float:
        """The required ratio as a margin: how many dB closer to its match than to the nearest reference image."""
        return -20 * math.log10(self.required_ratio) if self.required_ratio > 0 else math.inf

    def as_event(self) -> events.ChanceLevel:
        """What an ``attack`` event carries of chance."""
        return events.ChanceLevel(required_margin_db=round(self.required_margin_db, 3),
                                  decoy_update_rate=self.decoy_update_rate, decoy_image_rate=self.decoy_image_rate,
                                  draws=self.draws)


class ChanceModel:
    """Calibrates, per count of reconstructions and of images held, the ratio a leak needs (cached).

    ``features`` (:func:`identity_features`) and ``labels`` are the pool's: real images of the data
    set. A draw takes from it the images held and the decoys; every other pool image is the draw's
    reference, as every image but the update's own is the judge's (a draw's reference lacks the
    decoys too, so it is a little smaller: that makes the required ratio stricter, never looser).
    """

    def __init__(self, features: torch.Tensor, labels: np.ndarray, false_leak_rate: float, seed: int = 0,
                 draws: int = CALIBRATION_DRAWS) -> None:
        self._features = features
        self._labels = np.asarray(labels)
        self._distances: torch.Tensor | None = None
        self.false_leak_rate = false_leak_rate
        self.draws = draws
        self.seed = seed
        self._cache: dict[tuple[int, int], Chance] = {}

    def at(self, reconstructions: int, held: int) -> Chance:
        """Chance for an update of ``held`` true images judged from ``reconstructions`` reconstructions."""
        key = (reconstructions, held)
        if key not in self._cache:
            self._cache[key] = self._calibrate(reconstructions, held)
        return self._cache[key]

    def _calibrate(self, reconstructions: int, held: int) -> Chance:
        if len(self._labels) <= held + reconstructions:
            raise ValueError(f"{len(self._labels)} images are too few to measure chance for {held} images held "
                             f"and {reconstructions} reconstructions")
        if self._distances is None:
            self._distances = distances(self._features, self._features)
        rng = np.random.default_rng([self.seed, reconstructions, held])
        lowest = np.empty(self.draws)
        every = []
        for draw in range(self.draws):
            truth, decoys = self._draw(rng, held, reconstructions)
            rows = self._distances[decoys]
            to_truth = rows[:, truth].min(1).values
            rows[:, np.concatenate([truth, decoys])] = math.inf  # every other image is the reference
            ratios = (to_truth / rows.min(1).values.clamp(min=1e-12)).numpy()
            lowest[draw] = ratios.min()
            every.append(ratios)
        allowed = math.floor(self.false_leak_rate * self.draws)
        required = min(1.0, float(np.sort(lowest)[allowed]))
        return Chance(reconstructions=reconstructions, held=held, required_ratio=required,
                      decoy_update_rate=float(np.mean(lowest < required)),
                      decoy_image_rate=float(np.mean(np.concatenate(every) < required)), draws=self.draws)

    def _draw(self, rng: np.random.Generator, held: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Disjoint pool positions: ``held`` true images and ``count`` decoys of their labels.

        Decoys take the true images' labels in turn (where the pool has no unused image of a label,
        any unused image), so that a decoy is an image of the right class, the hardest to tell apart.
        """
        order = rng.permutation(len(self._labels))
        truth, rest = order[:held], order[held:]
        wanted = np.resize(self._labels[truth], count)
        taken = np.concatenate([np.flatnonzero(self._labels[rest] == label)[:n]
                                for label, n in zip(*np.unique(wanted, return_counts=True))])
        free = np.ones(len(rest), dtype=bool)
        free[taken] = False
        missing = count - len(taken)  # labels the pool has too few unused images of: any unused image
        return truth, rest[np.concatenate([taken, np.flatnonzero(free)[:missing]]).astype(int)]
