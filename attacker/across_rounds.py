"""The samples exact attacks recover from one client, grouped across rounds (SRATTA's grouping, ICML 2023).

A client trains on the same data round after round, so neuron isolation (:mod:`attacker.attacks.isolation`)
reads some of the same images back in several rounds. Without the ground truth, two recoveries of one client
that agree to :data:`attacker.attacks.isolation.AGREEMENT` (root mean square, pixel scale) are one sample:
the bank keeps each client's distinct recoveries, and one recovered again in a later round is a sample
confirmed (a mixture of images, which isolation also returns where fewer neurons isolate than the update
holds images, never recurs: its weights change with the model). The confirmed count is the attacker's own,
beside the judge's, and never counts a mixture.
"""

from __future__ import annotations

import math

import torch

from attacker.attacks.isolation import AGREEMENT


class RecoveredSamples:
    """Per client (its partition id), the distinct images exact attacks recovered so far, and in how many rounds."""

    def __init__(self) -> None:
        self._images: dict[int, torch.Tensor] = {}
        self._rounds: dict[int, torch.Tensor] = {}

    def add(self, client: int, images: torch.Tensor) -> int:
        """Bank ``images`` recovered from ``client`` this round; return how many were recovered in an earlier round."""
        flat = images.detach().cpu().flatten(1).double()
        bank = self._images.get(client, flat[:0])
        rounds = self._rounds.get(client, torch.zeros(0, dtype=torch.long))
        recurring = torch.zeros(len(flat), dtype=torch.bool)
        if len(bank) and len(flat):
            nearest = (torch.cdist(flat, bank) / math.sqrt(flat.shape[1])).min(dim=1)
            recurring = nearest.values < AGREEMENT
            seen_again = nearest.indices[recurring].unique()
            rounds = rounds.index_add(0, seen_again, torch.ones_like(seen_again))
        fresh = flat[~recurring]
        self._images[client] = torch.cat([bank, fresh])
        self._rounds[client] = torch.cat([rounds, torch.ones(len(fresh), dtype=torch.long)])
        return int(recurring.sum())

    def confirmed(self, client: int) -> int:
        """How many distinct images of ``client`` were recovered in two rounds or more: samples, not mixtures."""
        rounds = self._rounds.get(client)
        return 0 if rounds is None else int((rounds >= 2).sum())
