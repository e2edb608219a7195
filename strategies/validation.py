"""Reject malformed or poisoned updates before aggregation and before any other plugin sees them.

A reply whose arrays do not have exactly the global model's names, shapes and dtypes, or hold
NaN or Inf, would break FedAvg or turn the global model into NaN. :class:`UpdateValidator` is a
filter, first in the strategy's list: it drops such an update, records why (with the client's
node and partition id) as an ``update-rejected`` event, and the round aggregates the rest.
"""

from __future__ import annotations

import numpy as np

from fl_sim.results import ResultsWriter
from strategies.plugins import InterceptedUpdate, UpdateFilter


def problem_with(update: InterceptedUpdate) -> str | None:
    """Why ``update`` cannot be aggregated, or ``None`` if it can."""
    expected, received = set(update.global_arrays), set(update.client_arrays)
    if expected != received:
        missing, extra = sorted(expected - received), sorted(received - expected)
        return f"array names differ from the global model (missing {missing[:3]}, unexpected {extra[:3]})"
    for name, reference in update.global_arrays.items():
        value = update.client_arrays[name]
        if value.shape != reference.shape:
            return f"'{name}' has shape {value.shape}, expected {reference.shape}"
        if value.dtype != reference.dtype:
            return f"'{name}' has dtype {value.dtype}, expected {reference.dtype}"
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            return f"'{name}' holds NaN or Inf"
    return None


class UpdateValidator(UpdateFilter):
    """Drops updates that :func:`problem_with` finds fault with, and logs each as ``update-rejected``."""

    name = "validator"

    def __init__(self, writer: ResultsWriter) -> None:
        self.writer = writer

    def filter(self, update: InterceptedUpdate) -> InterceptedUpdate | None:
        """Keep a well-formed update; drop and log anything else."""
        reason = problem_with(update)
        if reason is None:
            return update
        self.writer.event("update-rejected", round=update.server_round, node_id=update.node_id,
                          partition_id=update.partition_id, reason=reason)
        return None
