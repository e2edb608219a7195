"""Reject malformed or poisoned updates before aggregation and before any other plugin sees them.

A reply whose arrays do not have exactly the global model's names, shapes and dtypes, or hold
NaN or Inf, would break FedAvg or turn the global model into NaN; so would metrics that are not
the protocol's (FedAvg aggregates them key by key), a sample count that is not a positive whole
number within the data set's size (it weights the average), or a partition id that is not
one. :class:`UpdateValidator` is a filter, first in the strategy's list: it drops such an
update, records why (with the client's node and partition id) as an ``update-rejected`` event,
and the round aggregates the rest.
"""

from __future__ import annotations

import math

import numpy as np

from fl_sim import events, protocol
from fl_sim.plugins import InterceptedUpdate, UpdateFilter
from fl_sim.results import ResultsWriter


def problem_with(update: InterceptedUpdate, max_examples: int | None = None) -> str | None:
    """Why ``update`` cannot be aggregated, or ``None`` if it can.

    ``max_examples`` is the most samples a client can hold.
    """
    return _problem_with_reply(update, max_examples) or _problem_with_arrays(update)


def _problem_with_reply(update: InterceptedUpdate, max_examples: int | None) -> str | None:
    if protocol.PARTITION_ID in update.audit:
        return f"partition id {update.audit[protocol.PARTITION_ID]!r} is not a non-negative integer"
    metrics = update.metrics
    if set(metrics) != set(protocol.TRAIN_METRICS):
        return f"metrics differ from the protocol's ({_difference(set(protocol.TRAIN_METRICS), set(metrics))})"
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"metric '{key}' is {value!r}, not a finite number"
    for key, low in ((protocol.NUM_EXAMPLES, 1), (protocol.LOCAL_STEPS, 0)):
        if not isinstance(metrics[key], int) or metrics[key] < low:
            return f"metric '{key}' is {metrics[key]!r}, not a whole number >= {low}"
    if max_examples is not None and metrics[protocol.NUM_EXAMPLES] > max_examples:
        return (f"metric '{protocol.NUM_EXAMPLES}' is {metrics[protocol.NUM_EXAMPLES]}, more than the "
                f"{max_examples} training samples there are")
    return None


def _problem_with_arrays(update: InterceptedUpdate) -> str | None:
    expected, received = set(update.global_arrays), set(update.client_arrays)
    if expected != received:
        return f"array names differ from the global model ({_difference(expected, received)})"
    for name, reference in update.global_arrays.items():
        value = update.client_arrays[name]
        if value.shape != reference.shape:
            return f"'{name}' has shape {value.shape}, expected {reference.shape}"
        if value.dtype != reference.dtype:
            return f"'{name}' has dtype {value.dtype}, expected {reference.dtype}"
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            return f"'{name}' holds NaN or Inf"
    return None


def _difference(expected: set[str], received: set[str]) -> str:
    """What is missing from ``received`` and what it has beyond ``expected`` (three names of each at most)."""
    return f"missing {sorted(expected - received)[:3]}, unexpected {sorted(received - expected)[:3]}"


class UpdateValidator(UpdateFilter):
    """Drops updates that :func:`problem_with` finds fault with, and logs each as ``update-rejected``."""

    name = "validator"

    def __init__(self, writer: ResultsWriter, max_examples: int | None = None) -> None:
        self.writer = writer
        self.max_examples = max_examples

    def filter(self, update: InterceptedUpdate) -> InterceptedUpdate | None:
        """Keep a well-formed update; drop and log anything else."""
        reason = problem_with(update, self.max_examples)
        if reason is None:
            return update
        self.writer.emit(events.UpdateRejected(round=update.server_round, node_id=update.node_id,
                                               partition_id=update.partition_id, reason=reason))
        return None
