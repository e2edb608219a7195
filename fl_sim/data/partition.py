"""Split a training set among clients: IID, Dirichlet label skew, or a fixed number of classes.

Every partitioner is a pure function of the labels, the number of partitions and a seed, so
each client (in its own process or container) computes the same split on its own and picks
its partition by id; nothing about the split has to travel over the network.
"""

from __future__ import annotations

import numpy as np

from fl_sim.errors import DataError

#: A Dirichlet draw is redrawn until every partition holds at least this many samples.
MIN_PARTITION_SIZE = 2
_MAX_DIRICHLET_DRAWS = 100


def iid(labels: np.ndarray, num_partitions: int, seed: int) -> list[np.ndarray]:
    """Shuffle and cut into ``num_partitions`` parts whose sizes differ by at most one."""
    _check_enough(labels, num_partitions)
    order = np.random.default_rng(seed).permutation(len(labels))
    return [np.sort(part) for part in np.array_split(order, num_partitions)]


def dirichlet(labels: np.ndarray, num_partitions: int, seed: int, alpha: float) -> list[np.ndarray]:
    """Label skew: each class is spread over the partitions by proportions ~ Dirichlet(alpha).

    The common scheme of Hsu et al. (2019), as in Flower Datasets' ``DirichletPartitioner``:
    the draw is repeated until every partition holds at least ``MIN_PARTITION_SIZE`` samples.
    """
    _check_enough(labels, num_partitions)
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    for _ in range(_MAX_DIRICHLET_DRAWS):
        parts: list[list[np.ndarray]] = [[] for _ in range(num_partitions)]
        for label in classes:
            members = rng.permutation(np.flatnonzero(labels == label))
            shares = rng.dirichlet(np.full(num_partitions, alpha))
            cuts = (np.cumsum(shares)[:-1] * len(members)).astype(int)
            for part, chunk in zip(parts, np.split(members, cuts)):
                part.append(chunk)
        result = [np.sort(np.concatenate(part)) for part in parts]
        if min(len(part) for part in result) >= MIN_PARTITION_SIZE:
            return result
    raise DataError(
        f"Dirichlet(alpha={alpha}) left a partition with fewer than {MIN_PARTITION_SIZE} samples in "
        f"{_MAX_DIRICHLET_DRAWS} draws; raise data.dirichlet-alpha or lower the number of clients")


def by_classes(labels: np.ndarray, num_partitions: int, seed: int, classes_per_client: int) -> list[np.ndarray]:
    """Pathological non-IID: each partition holds exactly ``classes_per_client`` classes.

    Classes are dealt round-robin over a seeded class order (partition i holds classes
    i*k .. i*k+k-1 modulo the class count), and each class's samples are split evenly among
    the partitions that hold it.
    """
    _check_enough(labels, num_partitions)
    classes = np.unique(labels)
    if classes_per_client > len(classes):
        raise DataError(f"data.classes-per-client is {classes_per_client} but the data set has only "
                        f"{len(classes)} classes; lower it")
    rng = np.random.default_rng(seed)
    class_order = rng.permutation(classes)
    holders: dict[int, list[int]] = {int(c): [] for c in classes}
    for pid in range(num_partitions):
        for j in range(classes_per_client):
            holders[int(class_order[(pid * classes_per_client + j) % len(classes)])].append(pid)
    parts: list[list[np.ndarray]] = [[] for _ in range(num_partitions)]
    for label, pids in holders.items():
        if not pids:
            continue
        members = rng.permutation(np.flatnonzero(labels == label))
        if len(members) < len(pids):
            raise DataError(f"class {label} has {len(members)} samples for {len(pids)} clients; lower "
                            f"the number of clients or data.classes-per-client")
        for pid, chunk in zip(pids, np.array_split(members, len(pids))):
            parts[pid].append(chunk)
    return [np.sort(np.concatenate(part)) for part in parts]


def partition(labels: np.ndarray, num_partitions: int, seed: int, scheme: str, *,
              alpha: float = 0.5, classes_per_client: int = 2) -> list[np.ndarray]:
    """Dispatch to the partitioner named by ``data.partitioner``; returns one index array per client."""
    if scheme == "iid":
        return iid(labels, num_partitions, seed)
    if scheme == "dirichlet":
        return dirichlet(labels, num_partitions, seed, alpha)
    if scheme == "classes":
        return by_classes(labels, num_partitions, seed, classes_per_client)
    raise DataError(f"unknown partitioner '{scheme}'; use iid, dirichlet or classes")


def _check_enough(labels: np.ndarray, num_partitions: int) -> None:
    if num_partitions < 1:
        raise DataError(f"the number of partitions must be at least 1; got {num_partitions}")
    if num_partitions * MIN_PARTITION_SIZE > len(labels):
        raise DataError(f"{num_partitions} clients need at least {num_partitions * MIN_PARTITION_SIZE} "
                        f"training samples but the data set has {len(labels)}; use fewer clients")
