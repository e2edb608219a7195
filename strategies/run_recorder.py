"""Records what the server sees each round: client events, the round summary, the global score.

:class:`RunRecorder` is itself a server plugin (it observes every client update and every
federated-evaluation reply) and provides the strategy's centralized ``evaluate_fn``, which
Flower calls after each round: that is where the round's line is written to ``events.jsonl``
and ``metrics.csv`` (the console shows what the events say, see ``fl_sim.reporting.console``).
"""

from __future__ import annotations

import re
import resource
import time
from collections.abc import Callable, Mapping
from typing import Any

from flwr.app import ArrayRecord, MetricRecord
from flwr.supercore.privacy_accounting import PrivacySpent
from torch import nn

from fl_sim import events, protocol
from fl_sim.data import ImageData
from fl_sim.plugins import InterceptedUpdate, ServerPlugin
from fl_sim.results import SUMMARY, ResultsWriter, summarise
from fl_sim.training import evaluate

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_FLOWER_ERROR = re.compile(r"^<class '(?:[\w.]+\.)?(\w+)(?:\([\w.]+\))?'>:<'(.*)'>$", re.DOTALL)
_EXCEPTION_LINE = re.compile(r"^(?:[A-Za-z_]\w*\.)*([A-Z]\w*): (.+)$", re.MULTILINE)


def failure_cause(reason: str) -> tuple[str, str]:
    """The root cause of a client failure as one line (``Type: message``), and the cleaned full text.

    Flower reports a client's exception as ``<class 'T'>:<'text'>``; under Ray the text is a
    colour-coded chain of tracebacks whose first exception line is the client's own error.
    """
    detail = _ANSI.sub("", reason).strip()
    flower = _FLOWER_ERROR.match(detail)
    text = flower.group(2) if flower else detail
    root = _EXCEPTION_LINE.search(text)
    if root:
        return f"{root.group(1)}: {root.group(2).strip()}", detail
    first_line = text.strip().splitlines()[0] if text.strip() else detail
    return (f"{flower.group(1)}: {first_line}" if flower else first_line), detail


class RunRecorder(ServerPlugin):
    """Writes per-client and per-round events, metrics.csv, the checkpoint and the summary."""

    name = "recorder"

    def __init__(self, writer: ResultsWriter, model: nn.Module, test_data: ImageData,
                 history: list[dict[str, Any]] | None = None, round_offset: int = 0,
                 privacy_spent: Callable[[], PrivacySpent | None] | None = None) -> None:
        """``privacy_spent`` is the central-DP accountant's running total, logged with each round."""
        self.privacy_spent = privacy_spent
        self.writer = writer
        self.model = model
        self.test_data = test_data
        self.history: list[dict[str, Any]] = list(history or [])
        self.round_offset = round_offset
        self._train: list[Mapping[str, Any]] = []
        self._eval: list[Mapping[str, Any]] = []
        self._started = self._round_started = time.perf_counter()

    def on_update(self, update: InterceptedUpdate) -> None:
        """Log one client's training reply; for a secure aggregate, each client's clear metrics and the aggregate."""
        if not update.aggregate:
            self._client_trained(update.server_round, update.node_id, update.partition_id, update.metrics)
            return
        for client in update.clients:
            self._client_trained(update.server_round, client.node_id, client.partition_id, client.metrics)
        self.writer.emit(events.SecureAggregate(
            round=update.server_round, clients=len(update.clients), node_ids=[c.node_id for c in update.clients],
            partition_ids=[c.partition_id for c in update.clients], samples=update.num_examples,
            densified=sorted(c.partition_id for c in update.clients
                             if c.info.get(protocol.DENSIFIED) and c.partition_id is not None)))

    def _client_trained(self, server_round: int, node_id: int, partition_id: int | None,
                        metrics: Mapping[str, Any]) -> None:
        self._train.append(metrics)
        # the validator, a filter, has already checked that the metrics are exactly the protocol's
        self.writer.emit(events.ClientTrain(round=server_round, node_id=node_id, partition_id=partition_id,
                                            **_kebab_to_snake(metrics)))

    def on_evaluate_reply(self, server_round: int, node_id: int, partition_id: int | None,
                          metrics: Mapping[str, Any]) -> None:
        """Log one client's federated-evaluation reply."""
        self._eval.append(metrics)
        self.writer.emit(events.ClientEvaluate(
            round=server_round, node_id=node_id, partition_id=partition_id,
            eval_loss=metrics.get(protocol.EVAL_LOSS), eval_accuracy=metrics.get(protocol.EVAL_ACCURACY),
            num_examples=metrics.get(protocol.NUM_EXAMPLES)))

    def on_failure(self, server_round: int, node_id: int, reason: str) -> None:
        """Log a client whose training failed: the root cause in one line, and the whole text if longer."""
        cause, detail = failure_cause(reason)
        self.writer.emit(events.ClientFailure(round=server_round, node_id=node_id, reason=cause,
                                              detail=detail if detail != cause else None))

    def plugin_failed(self, server_round: int, plugin: str, error: BaseException) -> None:
        """Record that a plugin raised (the strategy disabled it for the round)."""
        self.writer.emit(events.PluginError(round=server_round, plugin=plugin,
                                            error=f"{type(error).__name__}: {error}"))

    def evaluate_global(self, server_round: int, arrays: ArrayRecord) -> MetricRecord:
        """Flower's centralized evaluation: score the global model on the test split, log the round, checkpoint.

        On a resumed run (``round_offset`` > 0) Flower's round numbers are shifted by the rounds
        already done, and its evaluation of the starting model is not logged again.
        """
        state = arrays.to_torch_state_dict()
        self.model.load_state_dict(state)
        test = evaluate(self.model, self.test_data)
        if server_round == 0 and self.round_offset:
            return _test_metrics(test)
        server_round += self.round_offset
        now = time.perf_counter()
        row = {
            "round": server_round,
            "clients": len(self._train),
            "train_loss": _weighted(self._train, protocol.TRAIN_LOSS),
            "train_accuracy": _weighted(self._train, protocol.TRAIN_ACCURACY),
            "eval_loss": _weighted(self._eval, protocol.EVAL_LOSS),
            "eval_accuracy": _weighted(self._eval, protocol.EVAL_ACCURACY),
            "test_loss": test.loss,
            "test_accuracy": test.accuracy,
            "samples": sum(int(m.get(protocol.NUM_EXAMPLES, 0)) for m in self._train),
            "seconds": round(now - self._round_started, 3),
        }
        spent = self.privacy_spent() if self.privacy_spent else None
        if spent is not None:  # an accounted run (an unaccounted wrapper's total is None: no epsilon to report)
            row.update(epsilon=spent.epsilon if spent.num_releases else 0.0, delta=spent.delta)
        self.history.append(row)
        # metrics and checkpoint first: whoever sees the round's event (a watcher, a signal handler
        # summarising the run) finds them on disk; a resume drops metrics rows past the checkpoint
        self.writer.metrics_row(row)
        self.writer.save_checkpoint(server_round, state)
        self.writer.emit(events.Round(**row))
        self._train, self._eval, self._round_started = [], [], now
        return _test_metrics(test)

    def finish(self, status: str = "completed", error: str | None = None) -> dict[str, Any]:
        """Write ``summary.json`` and a final ``run-end`` event (with the run's ``error``, if any).

        Return the summary.
        """
        summary = {
            **summarise(self.history, status),
            **({"error": error} if error else {}),
            "wall_seconds": round(time.perf_counter() - self._started, 3),
            "server_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        self.writer.write_json(SUMMARY, summary)
        self.writer.emit(events.RunEnd(**summary))
        return summary


def _weighted(records: list[Mapping[str, Any]], key: str) -> float | None:
    """Mean of ``key`` over client records, weighted by their num-examples."""
    pairs = [(float(m[key]), int(m.get(protocol.NUM_EXAMPLES, 0))) for m in records if key in m]
    total = sum(weight for _, weight in pairs)
    return sum(value * weight for value, weight in pairs) / total if total else None


def _test_metrics(test) -> MetricRecord:
    return MetricRecord({protocol.TEST_LOSS: test.loss, protocol.TEST_ACCURACY: test.accuracy})


def _kebab_to_snake(metrics: Mapping[str, Any]) -> dict[str, Any]:
    return {key.replace("-", "_"): value for key, value in metrics.items()}
