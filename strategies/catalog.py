"""Flower's message-based strategies by ``strategy.name``, built from a run's configuration.

What each strategy is (its Flower class, the settings it takes) is declared once, in
:mod:`fl_sim.strategy_registry`; this module only builds it.
"""

from __future__ import annotations

from flwr.serverapp import strategy as flower

from fl_sim import protocol
from fl_sim.config import RunConfig
from fl_sim.registry import load
from fl_sim.strategy_registry import STRATEGIES


def build_strategy(config: RunConfig) -> flower.FedAvg:
    """The Flower strategy ``strategy.name`` names, with the run's sampling settings and its own parameters."""
    server, entry = config.server, STRATEGIES[config.strategy.name]
    common = dict(fraction_train=server.fraction_train, fraction_evaluate=server.fraction_evaluate,
                  min_train_nodes=server.min_train_nodes, min_evaluate_nodes=server.min_evaluate_nodes,
                  min_available_nodes=server.min_available_nodes, weighted_by_key=protocol.NUM_EXAMPLES,
                  arrayrecord_key=protocol.ARRAYS, configrecord_key=protocol.CONFIG)
    values = config.to_flat()
    own = {argument: values[key] for key, argument in entry.settings.items()
           if not (key in entry.default_when_zero and values[key] == 0)}
    return load(entry.flower_class)(**common, **own)
