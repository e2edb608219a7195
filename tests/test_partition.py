"""Partitioners (Flower Datasets'): sizes, coverage, determinism under a seed, and the label skew they produce."""

from __future__ import annotations

import numpy as np
import pytest

from fl_sim.config import RunConfig
from fl_sim.data import load_client_data, load_dataset, partition
from fl_sim.errors import DataError


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return load_dataset(RunConfig().data).train.labels.numpy()


def _is_exact_cover(parts, n):
    joined = np.concatenate(parts)
    return len(joined) == n and len(np.unique(joined)) == n


def _mean_classes_held(parts, labels, min_share=0.05):
    """Average number of classes that make up at least ``min_share`` of a partition."""
    held = []
    for part in parts:
        counts = np.bincount(labels[part], minlength=10)
        held.append(int((counts / counts.sum() >= min_share).sum()))
    return float(np.mean(held))


def test_iid_sizes_differ_by_at_most_one(labels):
    parts = partition(labels, 10, 1, "iid")
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert _is_exact_cover(parts, len(labels))
    assert _mean_classes_held(parts, labels) >= 9.5


@pytest.mark.parametrize("scheme, kwargs", [("iid", {}), ("dirichlet", {"alpha": 0.3}),
                                            ("classes", {"classes_per_client": 2}), ("shards", {})])
def test_partitions_are_deterministic_under_a_seed(labels, scheme, kwargs):
    first = partition(labels, 8, 5, scheme, **kwargs)
    again = partition(labels, 8, 5, scheme, **kwargs)
    other = partition(labels, 8, 6, scheme, **kwargs)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    joined = np.concatenate(first)
    assert len(np.unique(joined)) == len(joined)  # no sample in two partitions
    # left out: a class no client drew (classes), what does not fill the last shard (shards), as Flower does
    assert scheme in ("classes", "shards") or len(joined) == len(labels)


def test_dirichlet_skew_grows_as_alpha_shrinks(labels):
    skewed = partition(labels, 10, 0, "dirichlet", alpha=0.1)
    mild = partition(labels, 10, 0, "dirichlet", alpha=100.0)
    assert _mean_classes_held(skewed, labels) < 5 < _mean_classes_held(mild, labels)
    assert min(len(p) for p in skewed) >= 2


def test_classes_per_client_holds_exactly_k_classes(labels):
    parts = partition(labels, 10, 0, "classes", classes_per_client=3)
    assert [len(np.unique(labels[p])) for p in parts] == [3] * 10
    assert _is_exact_cover(parts, len(labels))  # 10 clients: each class is someone's first


def test_shards_deal_each_client_label_sorted_shards(labels):
    parts = partition(labels, 10, 0, "shards", shards_per_client=2)
    assert all(len(np.unique(labels[p])) <= 4 for p in parts)  # two shards of sorted labels: a few classes each
    assert len({len(p) for p in parts}) == 1


@pytest.mark.parametrize("call, message", [
    (lambda y: partition(y, 10_000, 0, "iid"), "use fewer clients"),
    (lambda y: partition(y, 4, 0, "classes", classes_per_client=11), "lower it"),
    (lambda y: partition(y[:40], 19, 0, "dirichlet", alpha=0.01), "raise data.dirichlet-alpha"),
])
def test_impossible_splits_say_what_to_change(labels, call, message):
    with pytest.raises(DataError, match=message):
        call(labels)


def test_client_data_splits_its_partition_into_train_and_val():
    config = RunConfig().data
    client = load_client_data(config, 2, 10, seed=42)
    parts = partition(load_dataset(config).train.labels.numpy(), 10, 42, "iid")
    assert np.array_equal(np.sort(np.concatenate([client.train_indices, client.val_indices])), parts[2])
    assert len(client.val) == int(len(parts[2]) * config.val_fraction)
    assert client.train.images.shape[1:] == (1, 32, 32)


def test_every_client_of_a_large_federation_has_a_validation_sample():
    config = RunConfig().data  # 1,437 training digits over 200 clients: 7 each, and 10% of 7 rounds to 0
    clients = [load_client_data(config, p, 200, seed=42) for p in (0, 99, 199)]
    assert all(len(c.val) == 1 and len(c.train) >= 5 for c in clients)
