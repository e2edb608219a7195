"""Judging a reconstruction against the client's real images: the only place ground truth enters.

An image leaks only where the reconstruction *identifies* it, better than chance does:

1. **Matching, one-to-one.** Reconstructions of a batch come out in any order; they are matched
   to the images the client trained on by an optimal assignment that minimises the total
   identification distance (:mod:`attacker.chance`; ``scipy.optimize.linear_sum_assignment``):
   four copies of one reconstruction match four different images, at most one of them well.
   Reconstructions beyond the images held are scored against their nearest image and never
   leak; chance is measured at the number of reconstructions, so returning more guesses than
   images buys nothing.
2. **Identification.** A matched reconstruction identifies its image when its distance to it,
   over its distance to the nearest other image of the data set (the reference), is below the
   ratio that decoys (real images the client never held) reach in at most ``false_leak_rate`` of
   updates of the same counts (:class:`attacker.chance.ChanceModel`). The margin in dB is that
   ratio's ``-20 log10``: how much closer to its match than to any reference image.
3. **Leak.** An identified image leaks when its SSIM to its match also reaches the threshold
   (0.6 by default, the criterion used for PRECODE's protocol); an update leaks when one of its
   images does.

Beside the verdict, per update: the images identified out of the images held, label recovery,
and Image Identifiability Precision as breaching 0.1.2 computes it with its pixel score (after
Yin et al., CVPR 2021): the share of reconstructions whose nearest neighbour by pixel distance,
among the reference's images of its match's label and the match, is the match.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from attacker.chance import Chance, ChanceModel, distances, identity_features
from attacker.metrics import Similarity, similarity
from fl_sim.config import AttackConfig
from fl_sim.data import Dataset, ImageData

#: Images of the data set the judge keeps at most (reference and chance); a larger one is subsampled.
MAX_POOL = 4096


@dataclass(frozen=True)
class ImageVerdict:
    """One reconstructed image: the true image it is matched with (index into the truth) and its scores.

    ``margin_db``: how much closer (dB) it is to its match than to the nearest reference image;
    ``identified``: whether that margin beats chance; ``nearest_of_label``: whether its match is its
    pixel nearest neighbour among the reference's images of the match's label (IIP's test);
    ``assigned`` is False for a reconstruction beyond the images held, which never leaks.
    """

    match: int
    scores: Similarity
    margin_db: float
    identified: bool
    label_recovered: bool
    nearest_of_label: bool
    leaked: bool
    assigned: bool = True


@dataclass(frozen=True)
class Verdict:
    """The judgement of one attacked update: per image, and what chance reaches at its counts."""

    images: list[ImageVerdict]
    held: int
    chance: Chance
    label_accuracy: float
    leaked: bool

    @property
    def best_ssim(self) -> float:
        """The highest SSIM of any reconstructed image."""
        return max(image.scores.ssim for image in self.images)

    @property
    def images_leaked(self) -> int:
        """How many of the images held leaked (identified, and SSIM at the threshold)."""
        return sum(image.leaked for image in self.images)

    @property
    def images_identified(self) -> int:
        """How many of the images held a reconstruction identifies, whatever its SSIM."""
        return sum(image.identified for image in self.images)

    @property
    def iip(self) -> float:
        """Image Identifiability Precision (pixel score).

        The share of reconstructions whose nearest neighbour of their match's label is their match.
        """
        return sum(image.nearest_of_label for image in self.images) / len(self.images)

    @property
    def mean_ssim(self) -> float:
        """The mean SSIM over reconstructed images."""
        return statistics.mean(image.scores.ssim for image in self.images)


class Judge:
    """Scores reconstructions against the images a client held, every other image of its data set, and chance.

    ``data`` is the data set's images (at most ``MAX_POOL`` of them are kept, drawn at random): the
    images an update held are named by their positions in it, and every other image is the
    reference, including the client's images of other rounds, which only makes identification
    harder. Chance is measured on the same images (:class:`attacker.chance.ChanceModel`).
    """

    def __init__(self, data: ImageData, threshold: float, false_leak_rate: float, seed: int = 0) -> None:
        self.data = data
        keep = np.sort(np.random.default_rng(seed).permutation(len(data))[:MAX_POOL])
        images, labels = data.subset(keep).tensors()
        self._row_of = {int(position): row for row, position in enumerate(keep)}
        self._pixels = images.double().flatten(1)
        self._features = identity_features(images)
        self._labels = labels
        self.threshold = threshold
        self.chance = ChanceModel(self._features, labels.numpy(), false_leak_rate, seed=seed)

    @classmethod
    def of_dataset(cls, dataset: Dataset, config: AttackConfig, seed: int) -> Judge:
        """The judge of a run on ``dataset``: positions are the training split's (both splits are its data)."""
        return cls(dataset.all_images(), config.success_ssim, config.false_leak_rate, seed=seed)

    def __call__(self, reconstruction: torch.Tensor, labels: torch.Tensor, held: Sequence[int],
                 excluded: Sequence[int] = ()) -> Verdict:
        """Judge ``reconstruction`` ``[M, C, H, W]`` and its ``labels`` against the images at the positions ``held``.

        ``held`` (repeats are one image) and ``excluded`` (images that must not count as a reference,
        such as a benchmark's decoys) are positions in the judge's data. Reconstructions are clipped to
        the pixel range [0, 1] first (DLG's are unboxed). Label accuracy is the share of recovered
        labels found in the true labels, counted as multisets (a label recovered twice must be present
        twice).
        """
        truth, truth_labels = self.truth(held).tensors()
        recon = reconstruction.detach().cpu().clamp(0, 1)
        reference = torch.ones(len(self._labels), dtype=torch.bool)
        reference[[self._row_of[int(p)] for p in (*held, *excluded) if int(p) in self._row_of]] = False
        features = identity_features(recon)
        to_truth = distances(features, identity_features(truth))
        to_reference = distances(features, self._features[reference]).min(1).values
        rows, cols = linear_sum_assignment(to_truth.numpy())
        assigned = dict(zip(rows.tolist(), cols.tolist()))
        matches = [assigned.get(i, int(to_truth[i].argmin())) for i in range(len(recon))]
        chance = self.chance.at(len(recon), len(truth))
        ratios = to_truth[torch.arange(len(recon)), matches] / to_reference.clamp(min=1e-12)
        scores = similarity(recon, truth[matches])
        nearest = self._nearest_of_label(recon, truth[matches], truth_labels[matches], reference)
        verdicts = []
        for index, (match, ratio, score) in enumerate(zip(matches, ratios.tolist(), scores)):
            kept = index in assigned
            identified = kept and ratio < chance.required_ratio
            verdicts.append(ImageVerdict(
                match=match, scores=score, margin_db=-20 * float(np.log10(ratio)) if ratio > 0 else float("inf"),
                identified=identified, label_recovered=int(labels[index]) == int(truth_labels[match]),
                nearest_of_label=kept and bool(nearest[index]),
                leaked=identified and score.ssim >= self.threshold, assigned=kept))
        found_labels = Counter(labels.tolist()) & Counter(truth_labels.tolist())
        return Verdict(images=verdicts, held=len(truth), chance=chance,
                       label_accuracy=sum(found_labels.values()) / len(labels), leaked=any(v.leaked for v in verdicts))

    def truth(self, held: Sequence[int]) -> ImageData:
        """The images at the positions ``held``, repeats once, in order: what a verdict's ``match`` indexes."""
        return self.data.subset(self.positions(held))

    @staticmethod
    def positions(held: Sequence[int]) -> list[int]:
        """The data-set positions ``held``, repeats once, in order: a verdict's ``match`` is an index into them."""
        return list(dict.fromkeys(int(p) for p in held))

    def _nearest_of_label(self, recon: torch.Tensor, matched: torch.Tensor, matched_labels: torch.Tensor,
                          reference: torch.Tensor) -> torch.Tensor:
        """Per reconstruction, whether its match is nearer (pixel distance) than every reference image of its label."""
        pixels = recon.double().flatten(1)
        to_match = (pixels - matched.double().flatten(1)).norm(dim=1)
        to_reference = distances(pixels, self._pixels[reference])
        other_label = self._labels[reference][None, :] != matched_labels[:, None]
        return to_match < to_reference.masked_fill(other_label, float("inf")).min(1).values


class Race:
    """``auto``'s race, judged: whether an update's verdict is settled, an image of it leaked.

    Leaked, not only identified: an image identified at an SSIM under the threshold may still leak to a later
    attack. Once one image leaked, the verdict is ``leaked`` whatever the later attacks find.

    Called as ``race(index, result)`` for each new result of the update at ``index`` (``helds[index]``: the
    positions of the images it held, or None without ground truth, which never settles). Each result's
    verdict is kept in :attr:`verdicts` by the result's ``id``, so that nothing is judged twice.
    """

    def __init__(self, judge: Judge, helds: Sequence[Sequence[int] | None]) -> None:
        self.judge = judge
        self.helds = helds
        self.verdicts: dict[int, Verdict] = {}

    def __call__(self, index: int, result) -> bool:
        """Judge ``result`` (it has ``images`` and ``labels``); True when an image of the update leaked."""
        held = self.helds[index]
        if not held:
            return False
        verdict = self.verdicts[id(result)] = self.judge(result.images, result.labels, held=held)
        return verdict.leaked

    def settles(self, index: int, images: torch.Tensor, labels: torch.Tensor) -> bool:
        """Whether ``images`` (an attack's point so far) would settle the update at ``index``; nothing is recorded.

        An attack that runs long per update asks this as it goes, to stop once it leaks an image: its result is
        then judged (and recorded) as any other.
        """
        held = self.helds[index]
        return bool(held) and self.judge(images, labels, held=held).leaked


def count_accuracy(counts: Sequence[int], labels: Sequence[int]) -> float:
    """Share of the images ``labels`` that estimated per-class ``counts`` account for: ``sum_c min(est_c, true_c) / N``.

    iLRG's count accuracy: 1 when every class's count is right; a count too high or too low by k loses k images.
    """
    true = Counter(int(label) for label in labels)
    return sum(min(int(count), true[c]) for c, count in enumerate(counts)) / max(1, len(labels))


def worst_case(verdicts: list[Verdict]) -> int:
    """Index of the verdict that leaks most: most images leaked, then identified, then the highest mean SSIM."""
    return max(range(len(verdicts)),
               key=lambda i: (verdicts[i].images_leaked, verdicts[i].images_identified, verdicts[i].mean_ssim))
