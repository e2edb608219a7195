"""Flower's message-based strategies by ``strategy.name``, built from a run's configuration."""

from __future__ import annotations

from typing import Any

from flwr.serverapp import strategy as flower

from fl_sim import protocol
from fl_sim.config import RunConfig

#: ``strategy.name`` -> Flower's class (every one derives from FedAvg: sampling, minimum nodes, weighting).
STRATEGY_CLASSES: dict[str, type[flower.FedAvg]] = {
    "fedavg": flower.FedAvg, "fedavgm": flower.FedAvgM, "fedprox": flower.FedProx, "fedadam": flower.FedAdam,
    "fedyogi": flower.FedYogi, "fedadagrad": flower.FedAdagrad, "fedmedian": flower.FedMedian,
    "fedtrimmedavg": flower.FedTrimmedAvg, "krum": flower.Krum, "multikrum": flower.MultiKrum,
    "bulyan": flower.Bulyan,
}


def build_strategy(config: RunConfig) -> flower.FedAvg:
    """The Flower strategy ``strategy.name`` names, with the run's sampling settings and its own parameters."""
    server, chosen = config.server, config.strategy
    common = dict(fraction_train=server.fraction_train, fraction_evaluate=server.fraction_evaluate,
                  min_train_nodes=server.min_train_nodes, min_evaluate_nodes=server.min_evaluate_nodes,
                  min_available_nodes=server.min_available_nodes, weighted_by_key=protocol.NUM_EXAMPLES,
                  arrayrecord_key=protocol.ARRAYS, configrecord_key=protocol.CONFIG)
    own: dict[str, Any] = {
        "fedavgm": dict(server_learning_rate=chosen.server_learning_rate, server_momentum=chosen.server_momentum),
        "fedprox": dict(proximal_mu=config.train.proximal_mu),
        "fedadam": dict(beta_1=chosen.beta_1, beta_2=chosen.beta_2, tau=chosen.tau),
        "fedyogi": dict(beta_1=chosen.beta_1, beta_2=chosen.beta_2, tau=chosen.tau),
        "fedadagrad": dict(tau=chosen.tau),
        "fedtrimmedavg": dict(beta=chosen.trim_fraction),
        "krum": dict(num_malicious_nodes=chosen.num_malicious_nodes),
        "multikrum": dict(num_malicious_nodes=chosen.num_malicious_nodes,
                          num_nodes_to_select=chosen.num_nodes_to_select),
        "bulyan": dict(num_malicious_nodes=chosen.num_malicious_nodes),
    }.get(chosen.name, {})
    if chosen.eta and chosen.name in ("fedadam", "fedyogi", "fedadagrad"):
        own["eta"] = chosen.eta
    return STRATEGY_CLASSES[chosen.name](**common, **own)
