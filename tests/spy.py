"""A server plugin for tests that records everything the strategy shows it."""

from __future__ import annotations

from fl_sim.plugins import InterceptedUpdate, ServerPlugin


class Spy(ServerPlugin):
    """Keeps every update, evaluation reply and round end it is shown, and whether it was closed."""

    name = "spy"

    def __init__(self) -> None:
        self.updates: list[InterceptedUpdate] = []
        self.evaluations: list[tuple[int, int]] = []
        self.round_ends: list[int] = []
        self.closed = False

    @property
    def seen(self) -> list[tuple[int, int]]:
        """(round, partition) of every update shown, in order."""
        return [(update.server_round, update.partition_id) for update in self.updates]

    def on_update(self, update):
        """Record the update."""
        self.updates.append(update)

    def on_evaluate_reply(self, server_round, node_id, partition_id, metrics):
        """Record the evaluation reply."""
        self.evaluations.append((server_round, partition_id))

    def on_round_end(self, server_round):
        """Record the round's end."""
        self.round_ends.append(server_round)

    def close(self):
        """Record the close."""
        self.closed = True
