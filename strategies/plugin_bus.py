"""The server plugins of a run, called in order for every hook, each isolated from the others' errors.

A plugin that raises is logged, reported to the ``on_plugin_error`` callback and skipped for the rest of the
round; training goes on. Filters (:class:`fl_sim.plugins.UpdateFilter`) see an update before the observers
and may replace or drop it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from fl_sim.plugins import InterceptedUpdate, ServerPlugin, UpdateFilter
from strategies.replies import read_only

logger = logging.getLogger(__name__)

PluginErrorCallback = Callable[[int, str, BaseException], None]


class PluginBus:
    """``plugins`` in order, each hook call guarded: a raising plugin is disabled for the round."""

    def __init__(self, plugins: Sequence[ServerPlugin] = (), on_plugin_error: PluginErrorCallback | None = None):
        self.plugins = list(plugins)
        self.on_plugin_error = on_plugin_error
        self._disabled: set[int] = set()

    def start_round(self) -> None:
        """Enable every plugin again (one that raised was disabled for its round only)."""
        self._disabled = set()

    def show(self, server_round: int, update: InterceptedUpdate) -> InterceptedUpdate | None:
        """Run the filters on ``update``, then show what they kept to the observers; None where a filter dropped it.

        A filter's replacement (new ``client_arrays``) is what the observers see and what is returned.
        """
        for plugin in self._active():
            if not isinstance(plugin, UpdateFilter):
                continue
            ok, result = self._call(server_round, plugin, plugin.filter, update)
            if not ok:
                continue
            if result is None:
                logger.info("round %d: %s dropped the update of node %d", server_round, plugin.name, update.node_id)
                return None
            if result.client_arrays is not update.client_arrays:
                update = dataclasses.replace(result, client_arrays=read_only(result.client_arrays))
        for plugin in self._active():
            self._call(server_round, plugin, plugin.on_update, update)
        return update

    def failures(self, server_round: int, failures: Iterable[tuple[int, str]]) -> None:
        """Tell the plugins of each client (node id, reason) whose training this round failed or never replied."""
        for node_id, reason in failures:
            for plugin in self._active():
                self._call(server_round, plugin, plugin.on_failure, server_round, node_id, reason)

    def evaluate_reply(self, server_round: int, node_id: int, partition_id: int | None,
                       metrics: Mapping[str, Any]) -> None:
        """Show one client's evaluation metrics to the plugins."""
        for plugin in self._active():
            self._call(server_round, plugin, plugin.on_evaluate_reply, server_round, node_id, partition_id, metrics)

    def end_round(self, server_round: int) -> None:
        """Tell the plugins every update of the round was seen (before aggregation)."""
        for plugin in self._active():
            self._call(server_round, plugin, plugin.on_round_end, server_round)

    def names(self) -> list[str]:
        """The plugins' names, in order."""
        return [plugin.name for plugin in self.plugins]

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
