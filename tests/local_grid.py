"""An in-process Flower Grid for tests: delivers messages straight to a ClientApp, no Ray, no network.

It lets tests drive the real strategy and the real ClientApp through whole rounds in a
fraction of a second. Nodes are numbered 101, 102, ... and hold partitions 0, 1, ...
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Collection, Iterable

from flwr.app import Context, Message, RecordDict
from flwr.app.error import Error
from flwr.clientapp import ClientApp
from flwr.server.superlink.linkstate.utils import create_message_error_unavailable_res_message
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from clients.client_app import create_client_app
from fl_sim.config import RunConfig
from lab.server_app import run_federation

FIRST_NODE_ID = 101


class LocalGrid(Grid):
    """A Grid whose nodes are in-process calls of ``client_app``.

    As in Flower, a ClientApp that raises answers with an error reply carrying the exception, and
    the nodes in ``unreachable`` are answered for by the SuperLink's own "Node Unavailable" error
    reply (what Flower's SuperLink sends for a node that missed its heartbeats).
    """

    def __init__(self, client_app: ClientApp, num_nodes: int, run_config: dict | None = None,
                 first_node_id: int = FIRST_NODE_ID, unreachable: Collection[int] = ()) -> None:
        self.client_app = client_app
        self.unreachable = set(unreachable)
        self.node_ids = [first_node_id + i for i in range(num_nodes)]
        self.run_config = run_config or {}
        self.contexts: dict[int, Context] = {}
        # Messages take their run and sender from the process's task identity, which a
        # SuperLink would set for a real ServerApp process.
        TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 1, 0, 1

    def set_run(self, run) -> None:
        """Nothing to set in-process."""

    @property
    def run(self) -> Run:
        """Run 1 (Flower's legacy workflow, which SecAgg+ runs on, reads its id)."""
        return Run.create_empty(run_id=1)

    def create_message(self, *args, **kwargs) -> Message:
        """Not used by the lab's ServerApp (its strategy builds messages itself)."""
        raise NotImplementedError

    def _context(self, node_id: int) -> Context:
        """The node's context, created once and kept across rounds (as a SuperNode keeps its state)."""
        if node_id not in self.contexts:
            partition_id = self.node_ids.index(node_id)
            self.contexts[node_id] = Context(
                run_id=1, node_id=node_id,
                node_config={"partition-id": partition_id, "num-partitions": len(self.node_ids)},
                state=RecordDict(), run_config=dict(self.run_config))
        return self.contexts[node_id]

    def get_node_ids(self) -> Iterable[int]:
        """Every node is always connected."""
        return list(self.node_ids)

    def get_nodes(self):
        """Not used by the lab's ServerApp."""
        raise NotImplementedError

    def push_messages(self, messages):
        """Not used: :meth:`send_and_receive` runs each message at once."""
        raise NotImplementedError

    def pull_messages(self, message_ids):
        """Not used: :meth:`send_and_receive` runs each message at once."""
        raise NotImplementedError

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Run each message through the ClientApp of its destination node and return the replies.

        A node that takes longer than ``timeout`` has its reply left out, as a real Grid stops
        waiting for it (the nodes run one after the other here, so each gets the whole timeout).
        """
        replies = []
        for message in messages:
            message.metadata.__dict__["_message_id"] = str(uuid.uuid4())  # Flower's grids id a message when sent
            if message.metadata.dst_node_id in self.unreachable:
                replies.append(create_message_error_unavailable_res_message(message.metadata, "node_unavail"))
                continue
            start = time.monotonic()
            try:  # the node gets its own copy, as over a network (SecAgg+ sends one record to every node)
                reply = self.client_app(copy.deepcopy(message), self._context(message.metadata.dst_node_id))
            except Exception as err:  # noqa: BLE001 - Flower turns a ClientApp exception into an error reply
                reply = Message(Error(code=0, reason=f"{type(err).__name__}: {err}"), reply_to=message)
            if timeout is None or time.monotonic() - start <= timeout:
                replies.append(reply)
        return replies


def run_locally(config: RunConfig, *plugins, grid: Grid | None = None, resume: bool = False):
    """Run the real ServerApp logic of ``config`` on a LocalGrid (or ``grid``) with extra ``plugins``.

    Return the results directory.
    """
    grid = grid or LocalGrid(create_client_app(config), config.simulation.num_clients)
    return run_federation(grid, config, plugins=lambda cfg, writer: list(plugins), resume=resume)
