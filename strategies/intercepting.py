"""A strategy that hands every client update to server plugins before another strategy aggregates it.

:class:`InterceptingStrategy` holds any of Flower's message-based strategies (FedAvg, FedProx,
FedAdam, Krum, ...) and delegates to it, as Flower's own differential-privacy wrappers do. It
remembers the global arrays and the train config the wrapped strategy sent in
:meth:`configure_train` (FedProx's ``proximal-mu`` included), and in :meth:`aggregate_train`
restores sparse uploads to dense weights, records clients that failed or never replied, builds
one :class:`InterceptedUpdate` per successful reply, runs the declared filters (which may
replace or drop the update), shows the result to every plugin, and only then lets the wrapped
strategy aggregate. A plugin that raises is logged, reported to the ``on_plugin_error``
callback and skipped for the rest of the round; training goes on.

Under secure aggregation (:mod:`strategies.secure_aggregation`) the round's replies never reach it:
:meth:`aggregate_secure` gets the unmasked mean instead, shows it to the plugins as one update, and
lets the wrapped strategy aggregate it as the round's only reply.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from logging import INFO
from types import MappingProxyType
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MessageType, MetricRecord, RecordDict
from flwr.common.logger import log
from flwr.serverapp import Grid
from flwr.serverapp.exception import PrivacyBudgetExhausted
from flwr.serverapp.strategy import FedAvg, Strategy

from fl_sim import protocol, seeds, sparse
from fl_sim.errors import FederationError
from fl_sim.plugins import Contributor, InterceptedUpdate, ServerPlugin, UpdateFilter

logger = logging.getLogger(__name__)

PluginErrorCallback = Callable[[int, str, BaseException], None]


#: The failure reason of a client whose reply never came (it timed out, or dropped out mid-round).
NO_REPLY = ("no reply before the round's timeout (server.round-timeout): the client timed out or dropped out "
            "mid-round")


def frozen_numpy(record: ArrayRecord) -> MappingProxyType:
    """Read-only NumPy copies of an ArrayRecord's arrays: plugins can look but not touch."""
    arrays = {}
    for name, array in record.items():
        value = array.numpy()
        value.setflags(write=False)
        arrays[name] = value
    return MappingProxyType(arrays)


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
        self.plugins = list(plugins)
        self.seed = seed
        self.round_offset = round_offset
        self.on_plugin_error = on_plugin_error
        self._sent_arrays: MappingProxyType = MappingProxyType({})
        self._sent_config: MappingProxyType = MappingProxyType({})
        self._sent: list[Message] = []
        self._disabled: set[int] = set()

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
        self._disabled = set()
        replies = _in_partition_order(replies)
        travelled = {id(reply): self._densify(reply) for reply in replies if not reply.has_error()}
        node_of = self._node_of_reply()
        failures = [(node_of(reply), reply.error.reason) for reply in replies if reply.has_error()]
        answered = {node_of(reply) for reply in replies}
        failures += [(message.metadata.dst_node_id, NO_REPLY) for message in self._sent
                     if message.metadata.dst_node_id not in answered]
        self.report_failures(server_round, failures)
        kept = [reply for reply in replies
                if reply.has_error() or self._intercept(server_round, reply, travelled[id(reply)])]
        usable = sum(not reply.has_error() for reply in kept)
        for plugin in self._active():
            self._call(server_round, plugin, plugin.on_round_end, server_round)
        if usable < self.base.min_train_nodes:
            raise FederationError(
                f"round {server_round}: only {usable} of {len(self._sent)} clients returned a usable update, "
                f"fewer than server.min-train-nodes={self.base.min_train_nodes}; see the client-failure and "
                f"update-rejected events, fix those clients or lower server.min-train-nodes")
        return self.strategy.aggregate_train(server_round, kept)

    def report_failures(self, server_round: int, failures: Iterable[tuple[int, str]]) -> None:
        """Tell the plugins of each client (node id, reason) whose training this round failed or never replied."""
        for node_id, reason in failures:
            for plugin in self._active():
                self._call(server_round, plugin, plugin.on_failure, server_round, node_id, reason)

    def aggregate_secure(self, server_round: int, mean: Mapping[str, np.ndarray], clients: Sequence[Contributor],
                         failures: Iterable[tuple[int, str]]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Show a secure aggregate (the weighted ``mean`` of ``clients``' weights) to the plugins, then aggregate it.

        Under secure aggregation this is all the server gets of a round: the plugins see one update, the
        aggregate (:attr:`InterceptedUpdate.clients`), and the wrapped strategy aggregates it as the one reply of
        the round, weighted by the samples of all (FedAvg keeps it; FedAdam and the like step their optimizer).
        """
        server_round += self.round_offset
        self._disabled = set()
        self.report_failures(server_round, failures)
        metrics = combined_metrics([client.metrics for client in clients])
        samples = [index for client in clients for index in client.info.get(protocol.AUDIT_SAMPLES, [])]
        content = RecordDict({self.base.arrayrecord_key: _array_record(mean),
                              protocol.METRICS: MetricRecord(metrics)})
        update = InterceptedUpdate(
            server_round=server_round, node_id=0, partition_id=None, global_arrays=self._sent_arrays,
            client_arrays=frozen_numpy(content.array_records[self.base.arrayrecord_key]),
            metrics=MappingProxyType(metrics), train_config=self._sent_config,
            audit=MappingProxyType({protocol.AUDIT_SAMPLES: samples} if samples else {}), clients=tuple(clients))
        kept = self._show(server_round, update, content)
        for plugin in self._active():
            self._call(server_round, plugin, plugin.on_round_end, server_round)
        if not kept:
            raise FederationError(f"round {server_round}: the secure aggregate of {len(clients)} clients was rejected "
                                  f"(see the update-rejected event); with SecAgg+ no client's update can be dropped "
                                  f"alone: fix the clients or set secagg.enabled=false")
        reply = Message(content, dst_node_id=0, message_type=MessageType.TRAIN)
        return self.strategy.aggregate_train(server_round, [reply])

    def _node_of_reply(self) -> Callable[[Message], int]:
        """Which sampled node each reply of this round answers for.

        A reply comes from the node it answers for, except when Flower's SuperLink lost that node
        (it missed its heartbeats): the SuperLink then answers itself, with an error reply whose
        sender is the SuperLink and which names only the instruction it answers. Grids give
        messages their ids when they send them, so the map is made when the replies are in.
        """
        node_by_message = {message.metadata.message_id: message.metadata.dst_node_id for message in self._sent}
        return lambda reply: node_by_message.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]) -> MetricRecord | None:
        """Show each client's evaluation metrics to the plugins, then let the wrapped strategy aggregate them."""
        server_round += self.round_offset
        replies = _in_partition_order(replies)
        for reply in replies:
            if reply.has_error():
                continue
            metrics = dict(reply.content.metric_records.get(protocol.METRICS, {}))
            for plugin in self._active():
                self._call(server_round, plugin, plugin.on_evaluate_reply, server_round,
                           reply.metadata.src_node_id, _partition_id(reply), MappingProxyType(metrics))
        # a client with no validation sample has nothing to add, and FedAvg would divide by zero
        weighed = [_weighed_by_examples(reply, self.base.weighted_by_key) for reply in replies
                   if reply.has_error() or _evaluated_examples(reply) > 0]
        return self.strategy.aggregate_evaluate(server_round, weighed) if weighed else None

    def summary(self) -> None:
        """Log the plugins, then the wrapped strategy's own summary."""
        log(INFO, "\t├──> Intercepted by: %s", ", ".join(plugin.name for plugin in self.plugins) or "(no plugin)")
        log(INFO, "\t├──> Aggregated by: %s", type(self.strategy).__name__)
        self.strategy.summary()

    def _intercept(self, server_round: int, reply: Message, travelled: Mapping[str, np.ndarray] | None) -> bool:
        """Run filters and observers on one reply (with the positions of a sparse upload that travelled).

        Return False if a filter dropped it.
        """
        content = reply.content
        update = InterceptedUpdate(
            server_round=server_round,
            node_id=reply.metadata.src_node_id,
            partition_id=_partition_id(reply),
            global_arrays=self._sent_arrays,
            client_arrays=frozen_numpy(content.array_records[self.base.arrayrecord_key]),
            metrics=MappingProxyType(dict(content.metric_records.get(protocol.METRICS, {}))),
            train_config=self._sent_config,
            audit=_audit(reply),
            travelled=MappingProxyType(travelled) if travelled is not None else None,
        )
        info = content.config_records.get(protocol.CLIENT_INFO, {})
        for lent in (protocol.AUDIT_IMAGES, protocol.AUDIT_LABELS):  # for the judge only: not aggregated, not kept
            info.pop(lent, None)
        return self._show(server_round, update, content)

    def _show(self, server_round: int, update: InterceptedUpdate, content: RecordDict) -> bool:
        """Run the filters on ``update`` (a filter's replacement goes into ``content``), then the observers.

        Return False if a filter dropped it.
        """
        for plugin in self._active():
            if not isinstance(plugin, UpdateFilter):
                continue
            ok, result = self._call(server_round, plugin, plugin.filter, update)
            if not ok:
                continue
            if result is None:
                logger.info("round %d: %s dropped the update of node %d", server_round, plugin.name, update.node_id)
                return False
            if result.client_arrays is not update.client_arrays:
                content.array_records[self.base.arrayrecord_key] = _array_record(result.client_arrays)
                update = dataclasses.replace(
                    update, client_arrays=frozen_numpy(content.array_records[self.base.arrayrecord_key]))
        for plugin in self._active():
            self._call(server_round, plugin, plugin.on_update, update)
        return True

    def _densify(self, reply: Message) -> dict[str, np.ndarray] | None:
        """Turn a sparse update (:mod:`fl_sim.sparse`) back into dense weights, ``global + update``, in place.

        Return the positions that travelled (``None`` for a dense upload).

        A malformed one is left as it came, and the validator rejects it for its array names.
        """
        record = reply.content.array_records.get(self.base.arrayrecord_key)
        if record is None or not any(name.endswith(sparse.POSITIONS) for name in record):
            return None
        unpacked = sparse.unpack(frozen_numpy(record), self._sent_arrays)
        if unpacked is None:
            return None
        dense, travelled = unpacked
        reply.content.array_records[self.base.arrayrecord_key] = _array_record(dense)
        return travelled

    def _active(self) -> list[ServerPlugin]:
        return [plugin for plugin in self.plugins if id(plugin) not in self._disabled]

    def _call(self, server_round: int, plugin: ServerPlugin, hook: Callable[..., Any], *args: Any) -> tuple[bool, Any]:
        """Call a plugin hook; on an exception, log it, report it, and disable the plugin for the round."""
        try:
            return True, hook(*args)
        except Exception as err:  # noqa: BLE001 - a plugin must never stop training
            self._disabled.add(id(plugin))
            logger.error("round %d: plugin %s raised %s: %s; disabled for this round",
                         server_round, plugin.name, type(err).__name__, err)
            if self.on_plugin_error is not None:
                self.on_plugin_error(server_round, plugin.name, err)
            return False, None


def _array_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    return ArrayRecord({name: Array(np.asarray(value)) for name, value in arrays.items()})


def _fedavg_of(strategy: Strategy) -> FedAvg:
    """The FedAvg under ``strategy``: itself, or what a wrapper (Flower's DP ones) holds as ``strategy``."""
    while not isinstance(strategy, FedAvg):
        inner = getattr(strategy, "strategy", None)
        if inner is None:
            raise TypeError(f"{type(strategy).__name__} is neither FedAvg-based nor a wrapper of a FedAvg strategy")
        strategy = inner
    return strategy


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


def _in_partition_order(replies: Iterable[Message]) -> list[Message]:
    """Replies sorted by (partition id, node id); error replies last."""
    def key(reply: Message) -> tuple[int, int, int]:
        if reply.has_error():
            return (1, 0, reply.metadata.src_node_id)
        partition = _partition_id(reply)
        return (0, -1 if partition is None else partition, reply.metadata.src_node_id)
    return sorted(replies, key=key)


def _weighed_by_examples(reply: Message, key: str) -> Message:
    """An evaluation reply that FedAvg weighs by its samples, whatever ``key`` training weighs by.

    Accounted central DP weighs training equally (by local steps, :func:`strategies.catalog.build_strategy`);
    evaluation replies carry no steps, and their scores are still per sample.
    """
    if reply.has_error() or key == protocol.NUM_EXAMPLES:
        return reply
    metrics = reply.content.metric_records[protocol.METRICS]
    metrics[key] = metrics[protocol.NUM_EXAMPLES]
    return reply


def _evaluated_examples(reply: Message) -> int:
    metrics = reply.content.metric_records.get(protocol.METRICS, {})
    return int(metrics.get(protocol.NUM_EXAMPLES, 0))


def _audit(reply: Message) -> MappingProxyType:
    """The client's info record less a well-formed partition id (a malformed one stays, for the validator)."""
    info = reply.content.config_records.get(protocol.CLIENT_INFO, {})
    well_formed = _partition_id(reply) is not None
    return MappingProxyType({key: value for key, value in info.items()
                             if not (key == protocol.PARTITION_ID and well_formed)})


def _partition_id(reply: Message) -> int | None:
    """The partition the client says it holds; ``None`` if it says none or something that is not one."""
    info = reply.content.config_records.get(protocol.CLIENT_INFO)
    value = info.get(protocol.PARTITION_ID) if info else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None
