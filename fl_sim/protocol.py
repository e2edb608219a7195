"""The record keys server and clients agree on, and the conversions of the round's train config.

Kept in one place so that ``clients/`` and ``strategies/`` never import each other, yet read
and write the same messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fl_sim.config import RunConfig, Scalar, TrainConfig, train_settings

ARRAYS = "arrays"
CONFIG = "config"
METRICS = "metrics"
#: A ConfigRecord in every reply saying which partition the client holds (not aggregated).
CLIENT_INFO = "client"

PARTITION_ID = "partition-id"
#: Simulation-only audit: positions (in the data set's training split) of the samples a client
#: trained on this round, in order. Only the judge of an attack reads it, never an attack.
AUDIT_SAMPLES = "audit-sample-indices"
#: Simulation-only audit of a user's own app (:mod:`clients.audit`): the images and labels a client trained on,
#: lent to the judge as ``.npy`` bytes (uint8 ``[N, C, H, W]``, int64 ``[N]``). Only the judge reads them.
AUDIT_IMAGES = "audit-images"
AUDIT_LABELS = "audit-labels"
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
TRAIN_ACCURACY = "train-accuracy"
TRAIN_SECONDS = "train-seconds"
EVAL_LOSS = "eval-loss"
EVAL_ACCURACY = "eval-accuracy"
#: The global model's scores on the test split (the server's own evaluation).
TEST_LOSS = "test-loss"
TEST_ACCURACY = "test-accuracy"
#: The optimizer steps a client took this round (a metric of every training reply).
LOCAL_STEPS = "local-steps"
SERVER_ROUND = "server-round"
#: Under secure aggregation: the model's array names, comma-separated, in the train config. SecAgg+ runs on Flower's
#: legacy messages, whose parameters are a list without names; the client names them with this, in this order.
ARRAY_NAMES = "array-names"
#: Under secure aggregation, in the client-info record: the client sent its pruned upload dense (SecAgg+ sums dense
#: vectors only).
DENSIFIED = "secagg-densified"
#: What the upload cost, and what it would have cost dense (set by the client's defense mod).
UPLOAD_BYTES = "upload-bytes"
DENSE_BYTES = "dense-bytes"
#: The metrics of every training reply, no more and no fewer: FedAvg aggregates them key by key.
TRAIN_METRICS = (TRAIN_LOSS, TRAIN_ACCURACY, NUM_EXAMPLES, LOCAL_STEPS, TRAIN_SECONDS, UPLOAD_BYTES, DENSE_BYTES)
#: The metrics of every federated-evaluation reply.
EVAL_METRICS = (EVAL_LOSS, EVAL_ACCURACY, NUM_EXAMPLES)


def train_config_record(config: TrainConfig) -> dict[str, Scalar]:
    """The round's training settings as the server sends them (the ``train.*`` keys, unprefixed)."""
    prefix = "train."
    return {key[len(prefix):]: value for key, value in RunConfig(train=config).to_flat().items()
            if key.startswith(prefix)}


def train_config_from_record(record: Mapping[str, Any]) -> TrainConfig:
    """Rebuild and validate the training settings a client received."""
    return train_settings(record)
