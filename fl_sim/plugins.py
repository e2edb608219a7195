"""Server plugins: code that sees every client update the server receives, before aggregation.

A plugin is what an honest-but-curious server (or a robust-aggregation defense) would run on
the updates it intercepts. Ordinary plugins *observe*: they get read-only copies, so nothing
they do can change what is aggregated. Plugins that must change or drop updates declare
themselves as :class:`UpdateFilter` and return the update to aggregate, or ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from fl_sim import protocol


@dataclass(frozen=True)
class Contributor:
    """One client whose update a secure aggregate sums, with what it reported in the clear beside its masked update.

    Attributes:
        node_id: Flower's id of its node.
        partition_id: the data partition it reports holding (``None`` if unreported).
        metrics: its reported metrics (loss, accuracy, num-examples, ...): SecAgg+ masks the weights only.
        info: its client-info record less the partition id (e.g. whether it densified a pruned upload).
    """

    node_id: int
    partition_id: int | None
    metrics: Mapping[str, Any]
    info: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class InterceptedUpdate:
    """One client's reply to a training round, as the server sees it.

    Attributes:
        server_round: the round the update belongs to (1-based).
        node_id: Flower's id of the node (SuperNode) that sent it.
        partition_id: the data partition the client reports it holds (``None`` if unreported).
        global_arrays: the global model the server sent this round, by parameter name.
        client_arrays: the arrays the client returned, by parameter name.
        metrics: the client's reported metrics (loss, accuracy, num-examples, ...).
        train_config: the training settings the server sent this round (lr, local epochs, ...).
        audit: simulation-only ground truth the client reported (e.g. which samples it trained
            on). A real server never has it: only judges of attacks may read it, never attacks.
        travelled: for a sparse upload (a pruning defense, :mod:`fl_sim.sparse`), the flat positions of
            the entries that travelled, by array name, as the message carried them; ``None`` for a
            dense upload, in which every entry travelled.
        clients: under secure aggregation, the clients whose updates this one sums (their weighted mean: all the
            server gets); empty for one client's own update. An aggregate has ``node_id`` 0 and no partition id,
            its metrics are the contributors' combined (num-examples summed), its audit their samples together.
    """

    server_round: int
    node_id: int
    partition_id: int | None
    global_arrays: Mapping[str, np.ndarray]
    client_arrays: Mapping[str, np.ndarray]
    metrics: Mapping[str, Any]
    train_config: Mapping[str, Any]
    audit: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    travelled: Mapping[str, np.ndarray] | None = None
    clients: tuple[Contributor, ...] = ()

    @property
    def aggregate(self) -> bool:
        """Whether this is a secure aggregate of several clients' updates, not one client's own."""
        return bool(self.clients)

    @property
    def num_examples(self) -> int:
        """How many samples the client says it trained on (FedAvg's weight)."""
        return int(self.metrics.get(protocol.NUM_EXAMPLES, 0))

    def delta(self) -> dict[str, np.ndarray]:
        """``client - global`` for every floating-point array: the update itself."""
        return {name: self.client_arrays[name] - self.global_arrays[name]
                for name, value in self.global_arrays.items() if np.issubdtype(value.dtype, np.floating)}


class ServerPlugin:
    """Base class of plugins; override the hooks you need. ``name`` identifies it in logs and events."""

    name: str = "plugin"

    def on_update(self, update: InterceptedUpdate) -> None:
        """Called once for every accepted client update of a round, before aggregation."""

    def on_evaluate_reply(self, server_round: int, node_id: int, partition_id: int | None,
                          metrics: Mapping[str, Any]) -> None:
        """Called once for every client's federated-evaluation reply."""

    def on_failure(self, server_round: int, node_id: int, reason: str) -> None:
        """Called once for every client whose training reply is an error (it raised, timed out, dropped out)."""

    def on_round_end(self, server_round: int) -> None:
        """Called after all updates of the round were seen, before aggregation (e.g. to batch work)."""

    def close(self) -> None:
        """Called once when the run ends, successfully or not; finish or cancel pending work here."""


class UpdateFilter(ServerPlugin):
    """A plugin allowed to change what is aggregated: it returns the update to keep, or ``None`` to drop it."""

    def filter(self, update: InterceptedUpdate) -> InterceptedUpdate | None:
        """Return ``update`` (possibly with replaced ``client_arrays``) to keep it, or ``None`` to drop it."""
        return update
