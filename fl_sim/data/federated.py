"""One client's view of the data: its partition of the training split, cut into train and val."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from fl_sim.config import DataConfig
from fl_sim.data.datasets import ImageData, load_dataset
from fl_sim.data.partition import partition


@dataclass(frozen=True)
class ClientData:
    """A client's local training and validation samples.

    ``train_indices`` and ``val_indices`` are positions in the data set's training split, so a
    simulator can find the very images a client held (the judge of an attack needs them).
    """

    train: ImageData
    val: ImageData
    train_indices: np.ndarray
    val_indices: np.ndarray


def load_client_data(config: DataConfig, partition_id: int, num_partitions: int, seed: int) -> ClientData:
    """Return partition ``partition_id`` of ``num_partitions``, deterministic under ``seed``."""
    return _client_data_cached(config, partition_id, num_partitions, seed)


@functools.lru_cache(maxsize=8)
def _client_data_cached(config: DataConfig, partition_id: int, num_partitions: int, seed: int) -> ClientData:
    dataset = load_dataset(config)
    labels = dataset.train.labels.numpy()
    parts = partition(labels, num_partitions, seed, config.partitioner, alpha=config.dirichlet_alpha,
                      classes_per_client=config.classes_per_client, shards_per_client=config.shards_per_client)
    own = parts[partition_id]
    shuffled = np.random.default_rng([seed, partition_id]).permutation(own)
    num_val = int(len(own) * config.val_fraction)
    if config.val_fraction > 0 and num_val == 0 and len(own) > 1:
        num_val = 1  # a small partition still has something to evaluate on (FedAvg weights by it)
    val_idx, train_idx = np.sort(shuffled[:num_val]), np.sort(shuffled[num_val:])
    return ClientData(dataset.train.subset(train_idx), dataset.train.subset(val_idx), train_idx, val_idx)
