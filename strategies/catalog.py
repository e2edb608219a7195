"""Flower's message-based strategies by ``strategy.name``, built from a run's configuration.

What each strategy is (its Flower class, the settings it takes) is declared once, in
:mod:`fl_sim.strategy_registry`; this module only builds it, and wraps it in Flower's central-DP
wrapper that ``central-dp.clipping`` names (with Flower's RdpAccountant where ``central-dp.accountant``).
"""

from __future__ import annotations

from flwr.serverapp import RdpAccountant
from flwr.serverapp import strategy as flower

from fl_sim import protocol
from fl_sim.config import RunConfig
from fl_sim.config.rules import clients_per_round
from fl_sim.privacy import flower_accountant
from fl_sim.registry import load
from fl_sim.strategy_registry import STRATEGIES

#: Flower's central-DP wrapper by ``central-dp.clipping``.
DP_WRAPPERS = {"server-fixed": flower.DifferentialPrivacyServerSideFixedClipping,
               "client-fixed": flower.DifferentialPrivacyClientSideFixedClipping,
               "server-adaptive": flower.DifferentialPrivacyServerSideAdaptiveClipping}


def build_strategy(config: RunConfig) -> flower.Strategy:
    """The Flower strategy ``strategy.name`` names, with the run's sampling settings and its own parameters.

    With ``central-dp.clipping`` it comes wrapped in Flower's DP wrapper. Accounted, its clients weigh equally
    (by their local steps, the same for all under ``train.local-steps``), as Flower's accountant requires.
    """
    server, entry, dp = config.server, STRATEGIES[config.strategy.name], config.central_dp
    accounted = dp.clipping != "off" and dp.accountant
    common = dict(fraction_train=server.fraction_train, fraction_evaluate=server.fraction_evaluate,
                  min_train_nodes=server.min_train_nodes, min_evaluate_nodes=server.min_evaluate_nodes,
                  min_available_nodes=server.min_available_nodes,
                  weighted_by_key=protocol.LOCAL_STEPS if accounted else protocol.NUM_EXAMPLES,
                  arrayrecord_key=protocol.ARRAYS, configrecord_key=protocol.CONFIG)
    values = config.to_flat()
    own = {argument: values[key] for key, argument in entry.settings.items()
           if not (key in entry.default_when_zero and values[key] == 0)}
    strategy = load(entry.flower_class)(**common, **own)
    if dp.clipping == "off":
        return strategy
    per_round = clients_per_round(config)
    if dp.clipping == "server-adaptive":
        return DP_WRAPPERS[dp.clipping](strategy, dp.noise_multiplier, per_round,
                                        initial_clipping_norm=dp.clipping_norm)
    return DP_WRAPPERS[dp.clipping](strategy, dp.noise_multiplier, dp.clipping_norm, per_round,
                                    accountant=accountant(config) if accounted else None)


def accountant(config: RunConfig) -> RdpAccountant:
    """Flower's RDP accountant for the run's central DP: every round a release over ``simulation.num-clients``."""
    dp = config.central_dp
    return flower_accountant(dp.target_delta, config.simulation.num_clients, max_epsilon=dp.max_epsilon or None)
