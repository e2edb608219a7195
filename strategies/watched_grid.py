"""Grids that wrap Flower's: one whose waits for replies end as soon as the engine running the clients stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from flwr.app import Message, RecordDict
from flwr.serverapp import Grid
from flwr.supercore.run import Run

from fl_sim.errors import EngineStopped


@dataclass(frozen=True)
class EngineWatch:
    """What the process running a simulation and its ServerApp thread tell each other."""

    #: set by the main thread when Flower's Simulation Engine ended while the ServerApp still ran
    engine_stopped: threading.Event = field(default_factory=threading.Event)
    #: set by the ServerApp thread when the run has recorded its end, however it ended
    server_finished: threading.Event = field(default_factory=threading.Event)


class GridProxy(Grid):
    """A Grid that delegates everything to another; subclasses change what they need (here: ``send_and_receive``)."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid

    def set_run(self, run: Run) -> None:
        """Set the run on the wrapped grid."""
        self._grid.set_run(run)

    @property
    def run(self) -> Run:
        """The wrapped grid's run."""
        return self._grid.run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int, group_id: str,
                       ttl: float | None = None) -> Message:
        """Create a message with the wrapped grid."""
        return self._grid.create_message(content, message_type, dst_node_id, group_id, ttl)

    def get_node_ids(self) -> Iterable[int]:
        """The node ids the wrapped grid knows."""
        return self._grid.get_node_ids()

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Push with the wrapped grid."""
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        """Pull with the wrapped grid."""
        return self._grid.pull_messages(message_ids)

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Send and receive with the wrapped grid."""
        return self._grid.send_and_receive(messages, timeout=timeout)


class WatchedGrid(GridProxy):
    """Delegates to Flower's grid, but ``send_and_receive`` also watches ``engine_stopped``.

    Flower's Simulation Engine runs the clients in the main thread and the ServerApp in
    another; when the engine crashes (e.g. Ray loses its nodes), the ServerApp thread would
    wait out ``server.round-timeout`` for replies that cannot come and keep the process
    alive. With this grid the wait raises :class:`EngineStopped` instead, so the run ends
    ``failed`` at once with what it completed kept for ``--resume``.
    """

    def __init__(self, grid: Grid, engine_stopped: threading.Event, poll_seconds: float = 0.1) -> None:
        super().__init__(grid)
        self._engine_stopped = engine_stopped
        self._poll_seconds = poll_seconds

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None) -> Iterable[Message]:
        """Push ``messages`` and collect replies until all came, ``timeout`` passed, or the engine stopped."""
        waiting = set(self.push_messages(messages))
        deadline = None if timeout is None else time.monotonic() + timeout
        replies: list[Message] = []
        while waiting:
            pulled = list(self.pull_messages(waiting))
            replies.extend(pulled)
            waiting.difference_update(reply.metadata.reply_to_message_id for reply in pulled)
            if not waiting or (deadline is not None and time.monotonic() >= deadline):
                break
            if self._engine_stopped.wait(self._poll_seconds):
                raise EngineStopped(f"the engine running the clients stopped while {len(waiting)} "
                                    f"replies were awaited")
        return replies
