"""What an honest-but-curious server knows about one client's update, and what it infers from it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fl_sim import protocol, seeds
from fl_sim.config import DefenseConfig, TrainConfig
from fl_sim.defense_registry import DEFENSES
from fl_sim.plugins import InterceptedUpdate
from fl_sim.protocol import train_config_from_record


@dataclass(frozen=True)
class Observation:
    """One intercepted update as the server sees it: no data, no audit, only what travels.

    Attributes:
        server_round, node_id, partition_id: where the update came from.
        global_arrays: the model the server sent, by name (float tensors).
        update: ``client - global`` for every floating-point array.
        train: the training settings the server sent for the round.
        num_examples: the local data size the client reported.
        local_steps: the optimizer steps the client reported.
        defense: the update defense the protocol makes every client run (``defense.name``): the
            server knows it, as it knows the training settings (Kerckhoffs). A secure aggregate of clients that
            run different ones names them all, joined by ``+``.
        positions: for a sparse upload, the flat positions of the entries that travelled, by name, as
            the message carried them; ``None`` for a dense upload.
        drops_largest: whether the protocol's pruning also drops each layer's largest entries (DGP with a top ratio
            above 0, :meth:`fl_sim.config.DefenseConfig.drops_largest`): an entry that did not travel may then be
            larger than every one its layer kept, not only smaller.
        upload_sum: for a client's pruned upload under error feedback (DGP's), from its second round on, the sum of
            its uploads so far as one pruned upload of this round (:class:`attacker.across_rounds.UploadSums`);
            ``None`` otherwise.
        clients: how many clients' updates this one sums: 1 for a client's own, more for a secure aggregate
            (their weighted mean, of ``num_examples`` samples in all, each client ``local_steps`` steps at most).
    """

    server_round: int
    node_id: int
    partition_id: int | None
    global_arrays: dict[str, torch.Tensor]
    update: dict[str, torch.Tensor]
    train: TrainConfig
    num_examples: int
    local_steps: int
    defense: str = "none"
    positions: dict[str, torch.Tensor] | None = None
    drops_largest: bool = False
    upload_sum: Observation | None = None
    clients: int = 1

    @classmethod
    def from_update(cls, update: InterceptedUpdate, defense: str = "none", drops_largest: bool = False) -> Observation:
        """Keep what a real server has and what its protocol says of the defense; the ``audit`` is left behind.

        The local steps are those the client reported, or, where it reports none (a user's own app), those the
        protocol's training takes on the examples it reported.
        """
        train = train_config_from_record(update.train_config)
        return cls(
            server_round=update.server_round,
            node_id=update.node_id,
            partition_id=update.partition_id,
            global_arrays={k: torch.from_numpy(np.array(v)) for k, v in update.global_arrays.items()},
            update={k: torch.from_numpy(np.array(v)) for k, v in update.delta().items()},
            train=train,
            num_examples=update.num_examples,
            local_steps=int(update.metrics.get(protocol.LOCAL_STEPS, 0)) or train.steps(update.num_examples),
            defense=defense,
            positions=None if update.travelled is None else
            {k: torch.from_numpy(np.array(v)) for k, v in update.travelled.items()},
            drops_largest=drops_largest, clients=max(1, len(update.clients)),
        )

    @classmethod
    def under(cls, update: InterceptedUpdate, defense: DefenseConfig) -> Observation:
        """:meth:`from_update` with what the run's ``defense`` settings say of the clients behind ``update``.

        The defense each client runs (joined by ``+`` for a secure aggregate of clients running different ones) and
        whether any of them drops each layer's largest entries.
        """
        partitions = [client.partition_id for client in update.clients] or [update.partition_id]
        names = "+".join(sorted({defense.of(partition) for partition in partitions}))
        return cls.from_update(update, names, any(defense.drops_largest(partition) for partition in partitions))

    def random_stream(self, seed: int, *extra: int) -> int:
        """The seed of this update's random attack starts, from the run's ``seed`` and what is stable across runs.

        The round and the client's partition id (Flower's node ids are drawn anew by every run).
        """
        client = self.partition_id if self.partition_id is not None else self.node_id % 2**31
        return seeds.ATTACK_START.seed(seed, self.server_round, client, *extra)

    @property
    def batch_size(self) -> int:
        """Images per local step: the batch size (of every client summed), or the whole data if that is smaller."""
        return max(1, min(self.train.batch_size * self.clients, self.num_examples))

    @property
    def most_images(self) -> int:
        """The most distinct images the update can hold: the local data, or batch x steps if that is fewer."""
        return max(1, min(self.num_examples, self.batch_size * self.local_steps))

    @property
    def one_trajectory(self) -> bool:
        """Whether the update is one local training run: a client's own, or a sum of single steps (one big batch).

        A secure aggregate of several clients' multi-step updates is the mean of as many trajectories.
        """
        return self.clients == 1 or self.local_steps == 1

    @property
    def exact_gradient(self) -> bool:
        """True when ``-update / lr`` is exactly the gradient of one batch (one plain SGD step)."""
        plain_sgd = self.train.optimizer == "sgd" and self.train.momentum == 0 and self.train.weight_decay == 0
        return plain_sgd and self.local_steps == 1

    @property
    def noisy(self) -> bool:
        """Whether a defense behind the update adds fresh noise the server cannot know."""
        return any(DEFENSES[name].adds_noise for name in self.defense.split("+"))

    @property
    def pruned(self) -> bool:
        """Whether the upload carried only some coordinates (a pruning defense's sparse upload)."""
        return self.positions is not None

    def travelled(self, names: list[str]) -> dict[str, torch.Tensor] | None:
        """For a pruned upload, which coordinates travelled (bool masks by name); ``None`` for a dense one.

        The masks are built from the positions the message carried.
        """
        if self.positions is None:
            return None
        masks = {}
        for name in names:
            mask = torch.zeros(self.update[name].numel(), dtype=torch.bool)
            mask[self.positions[name].long()] = True
            masks[name] = mask.view_as(self.update[name])
        return masks

    def gradient_estimate(self, names: list[str]) -> dict[str, torch.Tensor]:
        """The standard approximation of the batch gradient: ``-update / (lr * local steps)``.

        Exact for one plain SGD step (FedSGD); for several steps it is the mean gradient along
        the local trajectory; for Adam it is only a direction (Adam rescales per coordinate).
        """
        scale = -1.0 / (self.train.lr * max(1, self.local_steps))
        return {name: self.update[name] * scale for name in names}
