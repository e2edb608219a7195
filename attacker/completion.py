"""What a pruned upload leaves out of a layer, bounded and completed: the pruning rule and the rank of the update.

A pruning defense (top-k, DGP) uploads, per layer, the entries whose magnitude lies in a band and tells the server
which (:mod:`fl_sim.sparse`); the rule is part of the protocol (the defense's registry entry and its settings). So every
entry that did not travel is bounded: no larger in magnitude than the smallest entry its layer kept or, for a defense
that also drops the largest (DGP with a top ratio above 0), either that or no smaller than the largest kept
(:class:`KeptRange`).

The first fully connected layer's update mixes the client's images (``dW = A^T X``): its rank is at most the number
of images the update holds. A low-rank matrix is determined by some of its entries, and by no fewer than its
``r (m + n - r)`` degrees of freedom (Candes and Recht, "Exact Matrix Completion via Convex Optimization", 2009),
and a row by no fewer than ``r`` of its own (:func:`completable_rows`). :func:`complete` fills the missing entries
by singular value projection within the bounds (hard impute, Mazumder, Hastie and Tibshirani 2010, with the
pruning's bounds as the projection of every missing entry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch


@dataclass(frozen=True)
class KeptRange:
    """The magnitudes a pruned layer kept, hence the bound on each entry it did not.

    ``smallest`` and ``largest`` are the least and the greatest magnitude kept (both infinite where nothing was
    kept: nothing is bounded); ``drops_largest`` says whether the rule also dropped entries above ``largest``.
    """

    smallest: float
    largest: float
    drops_largest: bool

    @classmethod
    def of(cls, values: torch.Tensor, kept: torch.Tensor, drops_largest: bool) -> KeptRange:
        """The range ``kept`` entries of ``values`` span, under a rule that drops the smallest, and the largest too."""
        magnitudes = values[kept].abs()
        if not len(magnitudes):
            return cls(float("inf"), float("inf"), drops_largest)
        return cls(float(magnitudes.min()), float(magnitudes.max()), drops_largest)

    def describe(self) -> str:
        """The bound on an entry that did not travel, in words."""
        return "smaller than the smallest kept or larger than the largest" if self.drops_largest else \
            "no larger than the smallest kept"

    def project(self, values: torch.Tensor) -> torch.Tensor:
        """Each entry moved to the nearest value an entry that did not travel can take (its sign kept)."""
        magnitude = values.abs()
        if not self.drops_largest:
            return torch.sign(values) * magnitude.clamp(max=self.smallest)
        between = (magnitude > self.smallest) & (magnitude < self.largest)
        nearer_top = self.largest - magnitude < magnitude - self.smallest
        edge = torch.where(nearer_top, torch.full_like(values, self.largest), torch.full_like(values, self.smallest))
        return torch.where(between, torch.sign(values) * edge, values)


def completable_rows(kept: torch.Tensor, rank: int) -> torch.Tensor:
    """The rows (bool) that kept at least ``rank`` entries: fewer leave some of a row's ``rank`` coefficients open."""
    return kept.sum(dim=1) >= rank


def degrees_of_freedom(rows: int, columns: int, rank: int) -> int:
    """The parameters of a ``rows x columns`` matrix of rank ``rank``: the fewest entries that can determine it."""
    rank = min(rank, rows, columns)
    return rank * (rows + columns - rank)


class Coverage(NamedTuple):
    """What a pruned layer kept against what a rank-``rank`` completion of it needs.

    ``rows``: the rows that kept at least ``rank`` entries; ``entries``: the entries those rows kept; ``needed``: the
    parameters of a rank-``rank`` matrix of those rows.
    """

    rank: int
    rows: int
    entries: int
    needed: int

    @property
    def determined(self) -> bool:
        """Whether the kept entries can determine the layer: as many rows as the rank, as many entries as parameters."""
        return self.rows >= self.rank and self.entries >= self.needed


def coverage(kept: torch.Tensor, rank: int) -> Coverage:
    """The :class:`Coverage` of the layer whose ``kept`` entries (bool, rows x columns) travelled."""
    whole = completable_rows(kept, rank)
    rows = int(whole.sum())
    return Coverage(rank, rows, int(kept[whole].sum()), degrees_of_freedom(rows, kept.shape[1], rank))


def complete(values: torch.Tensor, kept: torch.Tensor, rank: int, bounds: KeptRange, sweeps: int) -> torch.Tensor:
    """``values`` where ``kept``; elsewhere its rank-``rank`` completion within ``bounds`` (``sweeps`` projections).

    Each sweep takes the best rank-``rank`` fit of the current matrix (one step of subspace iteration from the last
    sweep's subspaces, started from the singular vectors of the kept entries alone) and moves every missing entry of
    it into its bound. Deterministic; float64.
    """
    values = values.double()
    filled = torch.where(kept, values, torch.zeros_like(values))
    basis = torch.linalg.svd(filled, full_matrices=False).Vh[:rank].T
    for _ in range(sweeps):
        left = torch.linalg.qr(filled @ basis).Q
        basis = torch.linalg.qr(filled.T @ left).Q
        fit = left @ ((left.T @ filled @ basis) @ basis.T)
        filled = torch.where(kept, values, bounds.project(fit))
    return filled
