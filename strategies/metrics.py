"""The clients' reported metrics as the strategy hands them on: combined for a secure aggregate, weighed for FedAvg."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from flwr.app import Message

from fl_sim import protocol


def combined_metrics(metrics: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The protocol's train metrics of several clients as one: counts summed, the rest weighted by their samples.

    Local steps and seconds are the most any client took (what bounds the aggregate's trajectory and the round).
    """
    weights = [int(m.get(protocol.NUM_EXAMPLES, 0)) for m in metrics]
    total = sum(weights)
    combined: dict[str, Any] = {}
    for key in protocol.TRAIN_METRICS:
        values = [m[key] for m in metrics if key in m]
        if len(values) < len(metrics):
            continue
        if key in (protocol.NUM_EXAMPLES, protocol.UPLOAD_BYTES, protocol.DENSE_BYTES):
            combined[key] = int(sum(values))
        elif key in (protocol.LOCAL_STEPS, protocol.TRAIN_SECONDS):
            combined[key] = max(values)
        else:
            combined[key] = float(sum(v * w for v, w in zip(values, weights)) / total) if total else float(values[0])
    return combined


def weighed_by_examples(reply: Message, key: str) -> Message:
    """An evaluation reply that FedAvg weighs by its samples, whatever ``key`` training weighs by.

    Accounted central DP weighs training equally (by local steps, :func:`strategies.catalog.build_strategy`);
    evaluation replies carry no steps, and their scores are still per sample.
    """
    if reply.has_error() or key == protocol.NUM_EXAMPLES:
        return reply
    metrics = reply.content.metric_records[protocol.METRICS]
    metrics[key] = metrics[protocol.NUM_EXAMPLES]
    return reply


def evaluated_examples(reply: Message) -> int:
    """How many samples a client's evaluation reply scored (0: nothing to add to the mean)."""
    metrics = reply.content.metric_records.get(protocol.METRICS, {})
    return int(metrics.get(protocol.NUM_EXAMPLES, 0))
