"""A strategy that hands every client update to server plugins before another strategy aggregates it.

:class:`InterceptingStrategy` holds any of Flower's message-based strategies (FedAvg, FedProx,
FedAdam, Krum, ...) and delegates to it, as Flower's own differential-privacy wrappers do. It
remembers the global arrays and the train config the wrapped strategy sent in
:meth:`configure_train` (FedProx's ``proximal-mu`` included), and in :meth:`aggregate_train`
reads each successful reply as one typed update (:mod:`strategies.replies`: sparse uploads made dense),
hands the updates and the clients that failed or never replied to the plugins (:mod:`strategies.plugin_bus`:
filters first, which may replace or drop an update; a raising plugin is skipped for the round), and only then
lets the wrapped strategy aggregate.

Under secure aggregation (:mod:`strategies.secure_aggregation`) the round's replies never reach it:
:meth:`aggregate_secure` gets the unmasked mean instead, shows it to the plugins as one update, and
lets the wrapped strategy aggregate it as the round's only reply.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from logging import INFO
from types import MappingProxyType
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.exception import PrivacyBudgetExhausted
from flwr.serverapp.strategy import FedAvg, Strategy

from fl_sim import protocol, seeds
from fl_sim.errors import FederationError
from fl_sim.plugins import Contributor, InterceptedUpdate, ServerPlugin
from strategies.metrics import combined_metrics, evaluated_examples, weighed_by_examples
from strategies.plugin_bus import PluginBus, PluginErrorCallback
from strategies.replies import (
    array_record,
    densify,
    frozen_numpy,
    in_partition_order,
    intercepted_update,
    node_of_reply,
    partition_id,
)

#: The failure reason of a client whose reply never came (it timed out, or dropped out mid-round).
NO_REPLY = ("no reply before the round's timeout (server.round-timeout): the client timed out or dropped out "
            "mid-round")


class InterceptingStrategy(Strategy):
    """``strategy`` with an interception point for every client update.

    Args:
        strategy: the Flower strategy that samples clients and aggregates (FedAvg or one derived
            from it: every Flower 1.42 strategy this project offers is), or one of Flower's DP wrappers around it
            (which clip and noise after the plugins have seen the updates, as a curious server would).
        plugins: observers and filters, called in this order for every update.
        on_plugin_error: called with (round, plugin name, exception) when a plugin raises.
        seed: makes client sampling reproducible (Flower samples with Python's ``random``).
        round_offset: rounds already done before this start (a resumed run): Flower counts from 1,
            clients, plugins, logs and the wrapped strategy see ``round + round_offset``.
        train_config: the local training the clients run, as the server knows it (fl-sim's ``train.*`` keys,
            unprefixed), for a wrapped strategy whose own train config does not say it (a user's app); ``None``:
            what the wrapped strategy sends (fl-sim's own runs).
    """

    def __init__(self, strategy: Strategy, plugins: Sequence[ServerPlugin] = (),
                 on_plugin_error: PluginErrorCallback | None = None, seed: int = 0, round_offset: int = 0,
                 train_config: Mapping[str, Any] | None = None) -> None:
        self.strategy = strategy
        self.base = _fedavg_of(strategy)
        self.train_config = train_config
        self.bus = PluginBus(plugins, on_plugin_error)
        self.seed = seed
        self.round_offset = round_offset
        self._sent_arrays: MappingProxyType = MappingProxyType({})
        self._sent_config: MappingProxyType = MappingProxyType({})
        self._sent: list[Message] = []

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        """Sample clients as the wrapped strategy does (seeded per round), remembering what was sent."""
        server_round += self.round_offset
        random.seed(seeds.CLIENT_SAMPLING.seed(self.seed, server_round))
        try:
            messages = list(self.strategy.configure_train(server_round, arrays, config, grid))
        except PrivacyBudgetExhausted as err:  # Flower's DP wrapper, before a release past central-dp.max-epsilon
            raise FederationError(f"round {server_round} not started: {err} The global model of the last round is in "
                                  f"the checkpoint; raise central-dp.max-epsilon or lower num-server-rounds") from err
        self._sent = messages
        self._sent_arrays = frozen_numpy(arrays)
        # what the clients got, with what the wrapped strategy added (FedProx's proximal-mu)
        sent = messages[0].content.config_records[self.base.configrecord_key] if messages else config
        self._sent_config = MappingProxyType(dict(self.train_config if self.train_config is not None else sent))
        return messages

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                           grid: Grid) -> Iterable[Message]:
        """The wrapped strategy's evaluation round, numbered after the rounds already done."""
        return self.strategy.configure_evaluate(server_round + self.round_offset, arrays, config, grid)

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Show every reply to the plugins (filters first), then let the wrapped strategy aggregate the kept ones.

        Sparse uploads are first made dense (``global + update``), and failed or missing
        replies are reported to the plugins' ``on_failure``. Replies are taken in partition
        order, whatever order they arrived in, so that the floating-point sums of the aggregate
        are the same from run to run.
        """
        server_round += self.round_offset
        self.bus.start_round()
        key = self.base.arrayrecord_key
        replies = in_partition_order(replies)
        travelled = {id(reply): densify(reply, key, self._sent_arrays) for reply in replies if not reply.has_error()}
        node_of = node_of_reply(self._sent)
        failures = [(node_of(reply), reply.error.reason) for reply in replies if reply.has_error()]
        answered = {node_of(reply) for reply in replies}
        failures += [(message.metadata.dst_node_id, NO_REPLY) for message in self._sent
                     if message.metadata.dst_node_id not in answered]
        self.bus.failures(server_round, failures)
        kept = [reply for reply in replies if reply.has_error() or self._show(server_round, intercepted_update(
            server_round, reply, key, self._sent_arrays, self._sent_config, travelled[id(reply)]), reply.content)]
        usable = sum(not reply.has_error() for reply in kept)
        self.bus.end_round(server_round)
        if usable < self.base.min_train_nodes:
            raise FederationError(
                f"round {server_round}: only {usable} of {len(self._sent)} clients returned a usable update, "
                f"fewer than server.min-train-nodes={self.base.min_train_nodes}; see the client-failure and "
                f"update-rejected events, fix those clients or lower server.min-train-nodes")
        return self.strategy.aggregate_train(server_round, kept)

    def aggregate_secure(self, server_round: int, mean: Mapping[str, np.ndarray], clients: Sequence[Contributor],
                         failures: Iterable[tuple[int, str]]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Show a secure aggregate (the weighted ``mean`` of ``clients``' weights) to the plugins, then aggregate it.

        Under secure aggregation this is all the server gets of a round: the plugins see one update, the
        aggregate (:attr:`InterceptedUpdate.clients`), and the wrapped strategy aggregates it as the one reply of
        the round, weighted by the samples of all (FedAvg keeps it; FedAdam and the like step their optimizer).
        """
        server_round += self.round_offset
        self.bus.start_round()
        self.bus.failures(server_round, failures)
        metrics = combined_metrics([client.metrics for client in clients])
        samples = [index for client in clients for index in client.info.get(protocol.AUDIT_SAMPLES, [])]
        content = RecordDict({self.base.arrayrecord_key: array_record(mean),
                              protocol.METRICS: MetricRecord(metrics)})
        update = InterceptedUpdate(
            server_round=server_round, node_id=0, partition_id=None, global_arrays=self._sent_arrays,
            client_arrays=frozen_numpy(content.array_records[self.base.arrayrecord_key]),
            metrics=MappingProxyType(metrics), train_config=self._sent_config,
            audit=MappingProxyType({protocol.AUDIT_SAMPLES: samples} if samples else {}), clients=tuple(clients))
        kept = self._show(server_round, update, content)
        self.bus.end_round(server_round)
        if not kept:
            raise FederationError(f"round {server_round}: the secure aggregate of {len(clients)} clients was rejected "
                                  f"(see the update-rejected event); with SecAgg+ no client's update can be dropped "
                                  f"alone: fix the clients or set secagg.enabled=false")
        reply = Message(content, dst_node_id=0, message_type=MessageType.TRAIN)
        return self.strategy.aggregate_train(server_round, [reply])

    def report_failures(self, server_round: int, failures: Iterable[tuple[int, str]]) -> None:
        """Tell the plugins of each client (node id, reason) whose training this round failed or never replied."""
        self.bus.failures(server_round + self.round_offset, failures)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Show each client's evaluation metrics to the plugins, then let the wrapped strategy aggregate them."""
        server_round += self.round_offset
        replies = in_partition_order(replies)
        for reply in replies:
            if not reply.has_error():
                metrics = dict(reply.content.metric_records.get(protocol.METRICS, {}))
                self.bus.evaluate_reply(server_round, reply.metadata.src_node_id, partition_id(reply),
                                        MappingProxyType(metrics))
        # a client with no validation sample has nothing to add, and FedAvg would divide by zero
        weighed = [weighed_by_examples(reply, self.base.weighted_by_key) for reply in replies
                   if reply.has_error() or evaluated_examples(reply) > 0]
        return self.strategy.aggregate_evaluate(server_round, weighed) if weighed else None

    def summary(self) -> None:
        """Log the plugins, then the wrapped strategy's own summary."""
        log(INFO, "\t├──> Intercepted by: %s", ", ".join(self.bus.names()) or "(no plugin)")
        log(INFO, "\t├──> Aggregated by: %s", type(self.strategy).__name__)
        self.strategy.summary()

    @property
    def plugins(self) -> list[ServerPlugin]:
        """The plugins every update is shown to, in order."""
        return self.bus.plugins

    def _show(self, server_round: int, update: InterceptedUpdate, content: RecordDict) -> bool:
        """Show ``update`` to the plugins, a filter's replacement going into ``content``; False if one dropped it."""
        shown = self.bus.show(server_round, update)
        if shown is not None and shown.client_arrays is not update.client_arrays:
            content.array_records[self.base.arrayrecord_key] = array_record(shown.client_arrays)
        return shown is not None


def _fedavg_of(strategy: Strategy) -> FedAvg:
    """The FedAvg under ``strategy``: itself, or what a wrapper (Flower's DP ones) holds as ``strategy``."""
    while not isinstance(strategy, FedAvg):
        inner = getattr(strategy, "strategy", None)
        if inner is None:
            raise TypeError(f"{type(strategy).__name__} is neither FedAvg-based nor a wrapper of a FedAvg strategy")
        strategy = inner
    return strategy
