"""What an honest-but-curious server knows about one client's update, and what it infers from it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fl_sim.config import TrainConfig
from fl_sim.protocol import train_config_from_record
from strategies.plugins import InterceptedUpdate


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
    """

    server_round: int
    node_id: int
    partition_id: int | None
    global_arrays: dict[str, torch.Tensor]
    update: dict[str, torch.Tensor]
    train: TrainConfig
    num_examples: int
    local_steps: int

    @classmethod
    def from_update(cls, update: InterceptedUpdate) -> Observation:
        """Keep what a real server has; the simulation-only ``audit`` is deliberately left behind."""
        return cls(
            server_round=update.server_round,
            node_id=update.node_id,
            partition_id=update.partition_id,
            global_arrays={k: torch.from_numpy(np.array(v)) for k, v in update.global_arrays.items()},
            update={k: torch.from_numpy(np.array(v)) for k, v in update.delta().items()},
            train=train_config_from_record(update.train_config),
            num_examples=update.num_examples,
            local_steps=int(update.metrics.get("local-steps", 1)),
        )

    @property
    def batch_size(self) -> int:
        """Images per local step: the batch size, or the whole local data if that is smaller."""
        return max(1, min(self.train.batch_size, self.num_examples))

    @property
    def exact_gradient(self) -> bool:
        """True when ``-update / lr`` is exactly the gradient of one batch (one plain SGD step)."""
        plain_sgd = self.train.optimizer == "sgd" and self.train.momentum == 0 and self.train.weight_decay == 0
        return plain_sgd and self.local_steps == 1

    def gradient_estimate(self, names: list[str]) -> dict[str, torch.Tensor]:
        """The standard approximation of the batch gradient: ``-update / (lr * local steps)``.

        Exact for one plain SGD step (FedSGD); for several steps it is the mean gradient along
        the local trajectory; for Adam it is only a direction (Adam rescales per coordinate).
        """
        scale = -1.0 / (self.train.lr * max(1, self.local_steps))
        return {name: self.update[name] * scale for name in names}
