"""The samples exact attacks recover from one client, grouped across rounds (SRATTA's grouping, ICML 2023).

A client trains on the same data round after round, so neuron isolation (:mod:`attacker.attacks.isolation`)
reads some of the same images back in several rounds. Without the ground truth, two recoveries of one client
that agree to :data:`attacker.attacks.isolation.AGREEMENT` (root mean square, pixel scale) are one sample:
the bank keeps each client's distinct recoveries, and one recovered again in a later round is a sample
confirmed (a mixture of images, which isolation also returns where fewer neurons isolate than the update
holds images, never recurs: its weights change with the model). The confirmed count is the attacker's own,
beside the judge's, and never counts a mixture.

A pruning defense with error feedback (DGP) adds what a round dropped to the client's next update, so what it
drops is not lost to the server but delayed: the sum of a client's uploads so far is the sum of its updates less its
last residual (:class:`UploadSums`), and every entry that travelled in some round is in it.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from attacker.attacks.isolation import AGREEMENT
from attacker.observation import Observation
from fl_sim.config import DefenseConfig


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


class UploadSums:
    """Per client (its partition id), the sum of its pruned uploads so far and every coordinate that travelled in it.

    Under error feedback a client's upload is ``keep(update + residual)``, so its uploads up to round ``t`` sum to its
    updates up to ``t`` less the residual it keeps after ``t``: the sum holds the client's images as its updates do
    (``dW = A^T X`` summed over rounds, the same local data), on more coordinates than any one round carries.
    """

    def __init__(self) -> None:
        self._sums: dict[int, dict[str, torch.Tensor]] = {}
        self._travelled: dict[int, dict[str, torch.Tensor]] = {}

    def with_sum(self, obs: Observation, defense: DefenseConfig) -> Observation:
        """``obs`` with its client's uploads so far summed (:attr:`Observation.upload_sum`) where that means something.

        A client's own pruned upload whose defense (as the run's ``defense`` settings say) feeds back what it drops;
        every round of it must come here, attacked or not. Any other update comes back as it is.
        """
        if not (obs.pruned and obs.clients == 1 and defense.feeds_back(obs.partition_id)):
            return obs
        return dataclasses.replace(obs, upload_sum=self.add(obs))

    def add(self, obs: Observation) -> Observation | None:
        """Add ``obs`` (a pruned upload) to its client's sum; that sum as one pruned upload of ``obs``'s round.

        ``None`` for the client's first upload: its sum is the upload itself.
        """
        client = obs.partition_id if obs.partition_id is not None else obs.node_id
        masks = obs.travelled(list(obs.update))
        if client not in self._sums:
            self._sums[client] = {k: v.clone() for k, v in obs.update.items()}
            self._travelled[client] = masks
            return None
        sums, travelled = self._sums[client], self._travelled[client]
        for name, values in obs.update.items():
            sums[name] += values
            travelled[name] |= masks[name]
        return dataclasses.replace(obs, update={k: v.clone() for k, v in sums.items()},
                                   positions={k: torch.nonzero(m.flatten()).flatten() for k, m in travelled.items()})
