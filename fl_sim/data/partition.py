"""Split a training set among clients with Flower Datasets' partitioners: IID, Dirichlet, pathological, shards.

The partitioners are Flower's own (``flwr_datasets.partitioner``), run over the training split's labels as an
in-memory ``datasets.Dataset`` (a ``label`` column and each sample's ``index``): nothing is downloaded, the
images stay where they are, and each partition comes back as the indices of its samples. Every partitioner is
a pure function of the labels, the number of partitions and a seed, so each client (in its own process or
container) computes the same split on its own and picks its partition by id; nothing about the split has to
travel over the network.

- ``iid``: the samples shuffled with the seed (as ``FederatedDataset`` does), then Flower's ``IidPartitioner``
  (contiguous shards whose sizes differ by at most one);
- ``dirichlet``: ``DirichletPartitioner`` (Hsu et al. 2019: each class spread over the partitions by
  proportions ~ Dirichlet(alpha), redrawn until every partition holds ``MIN_PARTITION_SIZE`` samples);
- ``classes``: ``PathologicalPartitioner`` (each partition holds ``classes-per-client`` classes, the first
  partition i's class i, the others drawn under the seed, each class's samples split evenly among its holders;
  a class no partition drew is left out, as Flower does);
- ``shards``: ``ShardPartitioner`` (McMahan et al. 2017: the samples sorted by label, cut into equal shards,
  each partition dealt ``shards-per-client`` of them; samples that fill no whole shard are left out).
"""

from __future__ import annotations

import numpy as np

from fl_sim.errors import DataError

#: Every partition holds at least this many samples (a Dirichlet draw is redrawn until it does).
MIN_PARTITION_SIZE = 2
#: The partitioners by ``data.partitioner``.
SCHEMES = ("iid", "dirichlet", "classes", "shards")


def partition(labels: np.ndarray, num_partitions: int, seed: int, scheme: str, *, alpha: float = 0.5,
              classes_per_client: int = 2, shards_per_client: int = 2) -> list[np.ndarray]:
    """The samples of each of ``num_partitions`` partitions (sorted index arrays) under ``data.partitioner``."""
    _check_enough(labels, num_partitions)
    if scheme == "classes" and classes_per_client > len(np.unique(labels)):
        raise DataError(f"data.classes-per-client is {classes_per_client} but the data set has only "
                        f"{len(np.unique(labels))} classes; lower it")
    from datasets import Dataset

    table = Dataset.from_dict({"label": labels.astype(np.int64), "index": np.arange(len(labels))})
    partitioner = _partitioner(scheme, num_partitions, seed, alpha, classes_per_client, shards_per_client)
    partitioner.dataset = table.shuffle(seed=seed) if scheme == "iid" else table
    try:
        parts = [np.sort(np.asarray(partitioner.load_partition(i)["index"], dtype=np.int64))
                 for i in range(num_partitions)]
    except ValueError as err:
        raise DataError(_advice(scheme, alpha, err)) from err
    if min(len(part) for part in parts) < MIN_PARTITION_SIZE:
        raise DataError(f"data.partitioner={scheme} left a partition with fewer than {MIN_PARTITION_SIZE} samples; "
                        f"use fewer clients{' or more shards per client' if scheme == 'shards' else ''}")
    return parts


def _partitioner(scheme: str, num_partitions: int, seed: int, alpha: float, classes_per_client: int,
                 shards_per_client: int):
    """Flower Datasets' partitioner of ``scheme``, seeded."""
    from flwr_datasets.partitioner import (
        DirichletPartitioner,
        IidPartitioner,
        PathologicalPartitioner,
        ShardPartitioner,
    )

    if scheme == "iid":
        return IidPartitioner(num_partitions)
    if scheme == "dirichlet":
        return DirichletPartitioner(num_partitions, partition_by="label", alpha=alpha,
                                    min_partition_size=MIN_PARTITION_SIZE, seed=seed)
    if scheme == "classes":
        return PathologicalPartitioner(num_partitions, partition_by="label",
                                       num_classes_per_partition=classes_per_client,
                                       class_assignment_mode="first-deterministic", seed=seed)
    if scheme == "shards":
        return ShardPartitioner(num_partitions, partition_by="label", num_shards_per_partition=shards_per_client,
                                seed=seed)
    raise DataError(f"unknown partitioner '{scheme}'; use {', '.join(SCHEMES)}")


def _advice(scheme: str, alpha: float, err: ValueError) -> str:
    """What to change when Flower's partitioner gave up, in one line."""
    reason = str(err).splitlines()[0] if str(err) else type(err).__name__
    if scheme == "dirichlet":
        return (f"Dirichlet(alpha={alpha}) could not give every partition {MIN_PARTITION_SIZE} samples ({reason}); "
                f"raise data.dirichlet-alpha or lower the number of clients")
    return f"data.partitioner={scheme} cannot split this data set ({reason}); use fewer clients"


def _check_enough(labels: np.ndarray, num_partitions: int) -> None:
    if num_partitions < 1:
        raise DataError(f"the number of partitions must be at least 1; got {num_partitions}")
    if num_partitions * MIN_PARTITION_SIZE > len(labels):
        raise DataError(f"{num_partitions} clients need at least {num_partitions * MIN_PARTITION_SIZE} "
                        f"training samples but the data set has {len(labels)}; use fewer clients")
