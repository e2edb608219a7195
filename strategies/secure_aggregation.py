"""Secure aggregation: Flower's SecAgg+ workflow drives the project's Message-API :class:`InterceptingStrategy`.

SecAgg+ exists only on Flower's legacy path (``DefaultWorkflow`` over a ``LegacyContext`` with a legacy
``flwr.server.strategy.Strategy``), while every strategy here is a Message-API one wrapped by the
interception. :func:`run_secure` makes them meet:

- :class:`LegacyBridge` is the legacy strategy the workflow calls. ``configure_fit`` lets the intercepting
  strategy sample the round's clients (seeded, as in a plain run) and sends its train config as ``FitIns``,
  with the model's array names (legacy parameters carry none). SecAgg+ collects the masked vectors, unmasks
  their sum and calls ``aggregate_fit`` with the weighted mean: the bridge hands that mean, and what each
  client reported in the clear, to :meth:`InterceptingStrategy.aggregate_secure`, whose plugins (the
  attacker among them) see one update per round and never a client's own. ``evaluate`` is the server's
  evaluation of the global model; federated evaluation runs on the Message API (:meth:`LegacyBridge.evaluate_clients`).
- :class:`SecAggPlusRounds` is Flower's ``SecAggPlusWorkflow`` whose halted round (too few clients left to
  unmask) raises :class:`FederationError` after reporting the clients that dropped, instead of returning
  quietly with the model unchanged; a client that leaves before sharing its keys is left out of the unmasking
  (Flower 1.42 would fail the round on it).
- :class:`ReplyLog` is the grid the protocol talks through: it notes which clients failed or never replied
  in which stage, and the client-info record each sent beside its masked vector (its partition id and, in
  simulation, the judge's ground truth).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import flwr.compat.common.recorddict_compat as compat
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS, Key, Stage
from flwr.server import ServerConfig
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat import LegacyContext
from flwr.server.strategy import Strategy as LegacyStrategy
from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey
from flwr.server.workflow.secure_aggregation.secaggplus_workflow import WorkflowState
from flwr.serverapp import Grid

from fl_sim import protocol
from fl_sim.config import SecAggConfig
from fl_sim.errors import FederationError
from fl_sim.plugins import Contributor
from strategies.intercepting import InterceptingStrategy
from strategies.watched_grid import GridProxy

#: The server's evaluation of the global model: (round, arrays) -> its metrics (the recorder's ``evaluate_global``).
EvaluateFn = Callable[[int, ArrayRecord], MetricRecord | None]


class ReplyLog(GridProxy):
    """The grid SecAgg+ talks through, noting per client what failed and what it reported in the clear."""

    def __init__(self, grid: Grid) -> None:
        super().__init__(grid)
        #: node id -> why it left the protocol, and in which stage (the first failure only)
        self.failures: dict[int, str] = {}
        #: node id -> the client-info record it sent beside its masked vector
        self.info: dict[int, dict] = {}

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> list[Message]:
        """Send and receive with the wrapped grid, noting error replies, missing replies and client-info records."""
        messages = list(messages)
        stage_of = {m.metadata.dst_node_id: _stage(m) for m in messages}
        replies = list(super().send_and_receive(messages, timeout=timeout))
        node_of = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}
        answered = set()
        for reply in replies:
            node = node_of.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)
            answered.add(node)
            if reply.has_error():
                self.failures.setdefault(node, f"{reply.error.reason} (in SecAgg+'s {stage_of.get(node)} stage)")
            elif protocol.CLIENT_INFO in reply.content.config_records:
                self.info[node] = dict(reply.content.config_records[protocol.CLIENT_INFO])
        for node in set(stage_of) - answered:
            self.failures.setdefault(node, f"no reply within server.round-timeout ({timeout} s) in SecAgg+'s "
                                           f"{stage_of[node]} stage: the client timed out or dropped out")
        return replies

    def why_left(self, nodes: Iterable[int]) -> list[tuple[int, str]]:
        """(node id, why it left the protocol) for each of ``nodes``, as the plugins' ``on_failure`` takes them."""
        return [(node, self.failures.get(node, "left the SecAgg+ protocol")) for node in nodes]


def _stage(message: Message) -> str:
    """The SecAgg+ stage a message of the protocol belongs to."""
    return str(message.content.config_records[RECORD_KEY_CONFIGS][Key.STAGE])


class LegacyBridge(LegacyStrategy):
    """The legacy strategy SecAgg+'s workflow calls, made of the intercepting (Message-API) strategy."""

    def __init__(self, intercepting: InterceptingStrategy, grid: Grid, initial_arrays: ArrayRecord,
                 train_config: ConfigRecord, evaluate_fn: EvaluateFn, timeout: float) -> None:
        self.intercepting = intercepting
        self.grid = grid
        self.initial_arrays = initial_arrays
        self.names = list(initial_arrays.keys())
        self.dtypes = [array.numpy().dtype for array in initial_arrays.values()]
        self.train_config = train_config
        self.evaluate_fn = evaluate_fn
        self.timeout = timeout
        self.replies = ReplyLog(grid)
        self._sampled: list[int] = []

    def begin_round(self, grid: Grid) -> ReplyLog:
        """A fresh reply log for the round SecAgg+ is about to run."""
        self.replies = ReplyLog(grid)
        return self.replies

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        """The global model the run starts from."""
        return self._parameters(self.initial_arrays)

    def configure_fit(self, server_round: int, parameters: Parameters,
                      client_manager: ClientManager) -> list[tuple[ClientProxy, FitIns]]:
        """The intercepting strategy's sample and train config, as ``FitIns`` with the array names added."""
        messages = self.intercepting.configure_train(server_round, self.named_arrays(parameters),
                                                     ConfigRecord(dict(self.train_config)), self.grid)
        proxies = client_manager.all()
        self._sampled = [message.metadata.dst_node_id for message in messages]
        instructions = []
        for message in messages:
            config = dict(message.content[protocol.CONFIG])
            config[protocol.ARRAY_NAMES] = ",".join(self.names)
            instructions.append((proxies[str(message.metadata.dst_node_id)], FitIns(parameters, config)))
        return instructions

    def aggregate_fit(self, server_round: int, results: list[tuple[ClientProxy, FitRes]],
                      failures) -> tuple[Parameters | None, dict[str, Scalar]]:
        """Hand SecAgg+'s unmasked mean (the same in every result) and the clients' clear metrics to the plugins."""
        summed = {proxy.node_id for proxy, _ in results}
        dropped = self.replies.why_left(node for node in self._sampled if node not in summed)
        if not results:  # Flower would go on with the model unchanged: a round that aggregated nothing fails
            self.intercepting.report_failures(server_round, dropped)
            raise FederationError(f"round {server_round + self.intercepting.round_offset}: SecAgg+ completed but "
                                  f"summed no client; see the client-failure events")
        clients = [_contributor(proxy.node_id, fitres, dict(self.replies.info.get(proxy.node_id, {})))
                   for proxy, fitres in results]
        mean = self.named_arrays(results[0][1].parameters)
        arrays, metrics = self.intercepting.aggregate_secure(server_round, {k: v.numpy() for k, v in mean.items()},
                                                             clients, dropped)
        return (self._parameters(arrays) if arrays is not None else None), dict(metrics or {})

    def halted(self, server_round: int, stage: str, state: WorkflowState) -> FederationError:
        """Report the clients that left a halted round to the plugins; the error that ends the run."""
        left = sorted(set(self._sampled) - state.active_node_ids)
        self.intercepting.report_failures(server_round, self.replies.why_left(left))
        return FederationError(
            f"round {server_round + self.intercepting.round_offset}: SecAgg+ halted in its {stage} stage with "
            f"{len(state.active_node_ids)} of {len(self._sampled)} clients left, too few to unmask (each client "
            f"needs {state.threshold} of its neighbours' shares); see the client-failure events, then fix those "
            f"clients or lower secagg.reconstruction-threshold")

    def configure_evaluate(self, server_round: int, parameters: Parameters,
                           client_manager: ClientManager) -> list[tuple[ClientProxy, EvaluateIns]]:
        """None on the legacy path: :meth:`evaluate_clients` runs federated evaluation on the Message API."""
        return []

    def aggregate_evaluate(self, server_round: int, results: list[tuple[ClientProxy, EvaluateRes]],
                           failures) -> tuple[float | None, dict[str, Scalar]]:
        """Nothing to aggregate on the legacy path (see :meth:`configure_evaluate`)."""
        return None, {}

    def evaluate(self, server_round: int, parameters: Parameters) -> tuple[float, dict[str, Scalar]] | None:
        """The server's own evaluation of the global model (the run's ``evaluate_fn``)."""
        metrics = self.evaluate_fn(server_round, self.named_arrays(parameters))
        if metrics is None:
            return None
        return float(metrics.get(protocol.TEST_LOSS, 0.0)), dict(metrics)

    def evaluate_clients(self, grid: Grid, context: Context) -> None:
        """Federated evaluation of the round's global model, on the Message API (the workflow's evaluate step)."""
        server_round = int(context.state.config_records[MAIN_CONFIGS_RECORD][WorkflowKey.CURRENT_ROUND])
        parameters = compat.arrayrecord_to_parameters(context.state.array_records[MAIN_PARAMS_RECORD],
                                                      keep_input=True)
        arrays = self.named_arrays(parameters)
        messages = list(self.intercepting.configure_evaluate(server_round, arrays, ConfigRecord(), grid))
        if messages:
            self.intercepting.aggregate_evaluate(server_round, grid.send_and_receive(messages, timeout=self.timeout))

    def named_arrays(self, parameters: Parameters) -> ArrayRecord:
        """Legacy parameters (a list) as the model's named arrays, in their dtypes (SecAgg+ returns floats)."""
        values = parameters_to_ndarrays(parameters)
        return ArrayRecord({name: Array(_as_dtype(value, dtype))
                            for name, value, dtype in zip(self.names, values, self.dtypes, strict=True)})

    def _parameters(self, arrays: ArrayRecord) -> Parameters:
        return ndarrays_to_parameters([arrays[name].numpy() for name in self.names])


def _as_dtype(value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """``value`` in ``dtype``, rounded for an integer buffer (a counter averaged through SecAgg+'s floats)."""
    return np.rint(value).astype(dtype) if np.issubdtype(dtype, np.integer) else value.astype(dtype, copy=False)


def _contributor(node_id: int, fitres: FitRes, info: dict) -> Contributor:
    """A client summed into the aggregate: its clear metrics (with its sample count) and its client-info record."""
    partition = info.pop(protocol.PARTITION_ID, None)
    metrics = {**fitres.metrics, protocol.NUM_EXAMPLES: fitres.num_examples}
    return Contributor(node_id=node_id, partition_id=partition if isinstance(partition, int) else None,
                       metrics=metrics, info=info)


class SecAggPlusRounds(SecAggPlusWorkflow):
    """Flower's SecAgg+ workflow, whose halted round raises (after reporting who left) instead of passing quietly."""

    def __init__(self, bridge: LegacyBridge, secagg: SecAggConfig, timeout: float) -> None:
        super().__init__(num_shares=secagg.flower_count(secagg.num_shares),
                         reconstruction_threshold=secagg.flower_count(secagg.reconstruction_threshold),
                         max_weight=secagg.max_weight, clipping_range=secagg.clipping_range,
                         quantization_range=secagg.quantization_range, timeout=timeout)
        self.bridge = bridge

    def __call__(self, grid: Grid, context: Context) -> None:
        """Run SecAgg+'s four stages for the current round; raise :class:`FederationError` if one halts."""
        if not isinstance(context, LegacyContext):
            raise TypeError(f"SecAgg+ runs over a LegacyContext, not a {type(context).__name__}")
        server_round = int(context.state.config_records[MAIN_CONFIGS_RECORD][WorkflowKey.CURRENT_ROUND])
        log = self.bridge.begin_round(grid)
        state = WorkflowState()
        for name, stage in ((Stage.SETUP, self.setup_stage), (Stage.SHARE_KEYS, self.share_keys_stage),
                            (Stage.COLLECT_MASKED_VECTORS, self.collect_masked_vectors_stage),
                            (Stage.UNMASK, self.unmask_stage)):
            if not stage(log, context, state):
                raise self.bridge.halted(server_round, name, state)
            if name == Stage.SHARE_KEYS:
                # Only the clients that shared their keys are in anyone's masks. Flower 1.42 keeps the clients that
                # left before as "dead" for the unmask stage, whose clients then fail on a neighbour whose shares
                # they never got (KeyError): a dropout at setup would fail the round that SecAgg+ can complete.
                state.sampled_node_ids = set(state.active_node_ids)


def run_secure(grid: Grid, context: Context, intercepting: InterceptingStrategy, initial_arrays: ArrayRecord,
               num_rounds: int, timeout: float, train_config: ConfigRecord, evaluate_fn: EvaluateFn,
               secagg: SecAggConfig) -> ArrayRecord:
    """Train ``num_rounds`` rounds under SecAgg+ (Flower's legacy workflow); return the final global arrays.

    Each of the protocol's stages, and federated evaluation, waits at most ``timeout`` seconds for replies.
    """
    bridge = LegacyBridge(intercepting, grid, initial_arrays, train_config, evaluate_fn, timeout)
    legacy = LegacyContext(context, config=ServerConfig(num_rounds=num_rounds, round_timeout=timeout),
                           strategy=bridge)
    DefaultWorkflow(fit_workflow=SecAggPlusRounds(bridge, secagg, timeout),
                    evaluate_workflow=bridge.evaluate_clients)(grid, legacy)
    return bridge.named_arrays(compat.arrayrecord_to_parameters(legacy.state.array_records[MAIN_PARAMS_RECORD],
                                                           keep_input=True))
