"""The label skew of ``data.partitioner=dirichlet`` (Flower Datasets' DirichletPartitioner) against the alpha asked for.

Each class is spread over the K partitions by proportions ~ Dirichlet(alpha, ..., alpha), whose every share has
variance ``(1/K)(1 - 1/K) / (K alpha + 1)``. The alpha a split shows is estimated from that, by the method of
moments over every class's shares (``alpha = ((1/K)(1 - 1/K) / variance - 1) / K``), and averaged over seeds;
beside it, the classes that make up at least 5% of a partition, on average.

    python benchmarks/partition_skew.py [--clients 10] [--alphas 0.1 0.3 1 3 10] [--seeds 5]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from fl_sim.config import RunConfig
from fl_sim.data import load_dataset, partition


def measured_alpha(labels: np.ndarray, parts: list[np.ndarray]) -> float:
    """The Dirichlet concentration the split ``parts`` of ``labels`` shows (method of moments over the classes)."""
    k = len(parts)
    classes = np.unique(labels)
    counts = np.array([[np.sum(labels[part] == c) for part in parts] for c in classes], dtype=float)
    shares = counts / counts.sum(axis=1, keepdims=True)
    variance = float(shares.var(axis=1, ddof=1).mean())
    return ((1 / k) * (1 - 1 / k) / variance - 1) / k


def classes_held(labels: np.ndarray, parts: list[np.ndarray], min_share: float = 0.05) -> float:
    """The classes that make up at least ``min_share`` of a partition, on average over the partitions."""
    held = [int((np.bincount(labels[p], minlength=labels.max() + 1) / len(p) >= min_share).sum()) for p in parts]
    return float(np.mean(held))


def main() -> None:
    """Print, per alpha asked for, the alpha measured and the classes a client holds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.1, 0.3, 1.0, 3.0, 10.0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    labels = load_dataset(RunConfig().data).train.labels.numpy()
    print(f"digits, {len(labels)} training samples, {args.clients} clients, {args.seeds} seeds each")
    print("| alpha asked | alpha measured (mean over seeds) | classes >= 5% of a client | smallest client |")
    print("|---|---|---|---|")
    for alpha in args.alphas:
        splits = [partition(labels, args.clients, seed, "dirichlet", alpha=alpha) for seed in range(args.seeds)]
        measured = statistics.mean(measured_alpha(labels, parts) for parts in splits)
        held = statistics.mean(classes_held(labels, parts) for parts in splits)
        smallest = min(len(p) for parts in splits for p in parts)
        print(f"| {alpha:g} | {measured:.3g} | {held:.1f} | {smallest} |")


if __name__ == "__main__":
    main()
