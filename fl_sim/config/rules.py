"""Cross-field rules: settings that are valid one by one but impossible together.

Each rule raises :class:`fl_sim.errors.ConfigError` with one line that names the keys involved and
what to change. :func:`check_combinations` runs them all on a built configuration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fl_sim.config.flat import flatten
from fl_sim.dataset_registry import DATASETS
from fl_sim.errors import ConfigError
from fl_sim.model_registry import MODELS
from fl_sim.registry import is_import_path
from fl_sim.strategy_registry import STRATEGIES

if TYPE_CHECKING:
    from fl_sim.config.schema import RunConfig

def _check_strategy(config: RunConfig) -> None:
    """Every ``strategy.*`` key set away from its default is one the chosen strategy reads.

    Byzantine-robust aggregators get the updates their rule needs.
    """
    name, chosen = config.strategy.name, dict(flatten(config.strategy, "strategy."))
    for key, value in flatten(type(config.strategy)(), "strategy."):
        if key != "strategy.name" and chosen[key] != value and key not in STRATEGIES[name].settings:
            users = ", ".join(entry.name for entry in STRATEGIES.values() if key in entry.settings)
            raise ConfigError(f"config key '{key}' is set but strategy.name={name} does not use it (it is for "
                              f"{users}); remove it or choose one of those strategies")
    if config.train.proximal_mu > 0 and config.defense.entry().in_local_training:
        raise ConfigError(f"config key 'train.proximal-mu' cannot be combined with defense.name={config.defense.name}: "
                          f"DP-SGD clips per-sample gradients and FedProx's term is not a per-sample loss; set one of "
                          f"them off")
    if config.train.proximal_mu > 0 and "train.proximal-mu" not in STRATEGIES[name].settings:
        users = "/".join(entry.name for entry in STRATEGIES.values() if "train.proximal-mu" in entry.settings)
        raise ConfigError(f"config key 'train.proximal-mu' is FedProx's proximal term but strategy.name={name}; "
                          f"set strategy.name={users} or train.proximal-mu=0")
    malicious, least = config.strategy.num_malicious_nodes, config.server.min_train_nodes
    needed, rule = STRATEGIES[name].least_updates or (lambda _: 0, "")
    if least < needed(malicious):
        raise ConfigError(f"strategy.name={name} with strategy.num-malicious-nodes={malicious} needs at least "
                          f"{rule} = {needed(malicious)} updates per round, but server.min-train-nodes is {least}; "
                          f"raise it (and simulation.num-clients) or lower num-malicious-nodes")
    if "strategy.num-nodes-to-select" in STRATEGIES[name].settings and config.strategy.num_nodes_to_select > least:
        raise ConfigError(f"config key 'strategy.num-nodes-to-select' ({config.strategy.num_nodes_to_select}) "
                          f"exceeds server.min-train-nodes ({least}); lower it")


def _check_dataset(config: RunConfig) -> None:
    """``data.dataset`` is one fl-sim loads or reads as a user's ``package.module:loader``."""
    name = config.data.dataset
    if name not in DATASETS and not is_import_path(name):
        raise ConfigError(f"config key 'data.dataset' must be one of {', '.join(DATASETS)}, or a loader of your own "
                          f"as package.module:loader; got {name!r}")


def _check_model(config: RunConfig) -> None:
    """``model.name`` is one of the zoo or reads as a user's ``package.module:builder``."""
    name = config.model.name
    if name not in MODELS and not is_import_path(name):
        raise ConfigError(f"config key 'model.name' must be one of {', '.join(MODELS)}, or a builder of your own as "
                          f"package.module:builder; got {name!r}")
    if is_import_path(name) and config.precode.enabled and config.precode.position != "head":
        raise ConfigError("config key 'precode.position' early needs a model of the zoo (lenet, mlp, resnet18); "
                          f"for model.name={name} use precode.position=head")


def _check_secure_aggregation(config: RunConfig) -> None:
    """SecAgg+ serves a strategy that needs only the mean, two clients a round or more, and Flower's share rules."""
    secagg = config.secagg
    if not secagg.enabled:
        return
    name = config.strategy.name
    if STRATEGIES[name].needs_each_update:
        fits = ", ".join(entry.name for entry in STRATEGIES.values() if not entry.needs_each_update)
        raise ConfigError(f"secagg.enabled=true hands the server only the round's mean, but strategy.name={name} "
                          f"reads every client's update; choose one of {fits}, or set secagg.enabled=false")
    per_round = clients_per_round(config)
    if per_round < 2:
        raise ConfigError(f"secagg.enabled=true needs at least 2 clients per round, but server.fraction-train and "
                          f"server.min-train-nodes sample {per_round}; raise server.min-train-nodes to 2")
    shares, threshold = secagg.num_shares, secagg.reconstruction_threshold
    for key, value, least in (("num-shares", shares, 3), ("reconstruction-threshold", threshold, 2)):
        if value > 1 and (value != int(value) or value < least):
            raise ConfigError(f"config key 'secagg.{key}' is {value:g}: give a whole count of {least} or more, or a "
                              f"share of at most 1")
    if shares > 1 and threshold > 1 and threshold >= shares:
        raise ConfigError(f"config key 'secagg.reconstruction-threshold' ({threshold:g}) must be below "
                          f"'secagg.num-shares' ({shares:g}); lower it or raise num-shares")
    if secagg.quantization_range >= MODULUS_RANGE:
        raise ConfigError(f"config key 'secagg.quantization-range' ({secagg.quantization_range}) must be below "
                          f"SecAgg+'s modulus 2^32; lower it")


def clients_per_round(config: RunConfig) -> int:
    """How many clients the strategy samples each round (Flower's FedAvg: a share of them, at least the minimum)."""
    return max(int(config.simulation.num_clients * config.server.fraction_train), config.server.min_train_nodes)


def _check_central_dp(config: RunConfig) -> None:
    """Flower's DP wrappers run on the Message API, and its accountant only where its analysis holds."""
    dp = config.central_dp
    if dp.clipping == "off":
        return
    if config.secagg.enabled:
        raise ConfigError(f"central-dp.clipping={dp.clipping} wraps a Message-API strategy, but SecAgg+ runs on "
                          f"Flower's legacy path (and has no accountant there); set one of central-dp.clipping=off "
                          f"or secagg.enabled=false")
    pruning = [entry.name for entry in config.defense.in_use() if entry.prunes]
    if dp.clipping == "client-fixed" and pruning:
        raise ConfigError(f"central-dp.clipping=client-fixed clips the client's dense weights, but defense "
                          f"{'/'.join(pruning)} uploads them sparse; set defense.name and defense.per-client to "
                          f"dense defenses, or central-dp.clipping=server-fixed")
    if dp.clipping == "server-adaptive" and dp.noise_multiplier >= clients_per_round(config) / 10:
        raise ConfigError(f"central-dp.clipping=server-adaptive also noises the count of clipped updates (std clients "
                          f"per round / 20, Andrew et al. 2021), which leaves room for central-dp.noise-multiplier "
                          f"below {clients_per_round(config) / 10:g} only; lower it or sample more clients per round")
    if not dp.accountant:
        return
    if dp.clipping == "server-adaptive":
        raise ConfigError("central-dp.accountant=true: Flower's RdpAccountant accounts fixed clipping only; set "
                          "central-dp.clipping=server-fixed or client-fixed, or central-dp.accountant=false")
    if not STRATEGIES[config.strategy.name].fedavg_aggregation:
        fits = "/".join(entry.name for entry in STRATEGIES.values() if entry.fedavg_aggregation)
        raise ConfigError(f"central-dp.accountant=true needs FedAvg's aggregation, but strategy.name="
                          f"{config.strategy.name}; set strategy.name={fits} or central-dp.accountant=false")
    if config.train.local_steps == 0:
        raise ConfigError("central-dp.accountant=true needs equal client weights: set train.local-steps (every "
                          "client then weighs its same number of steps) or central-dp.accountant=false")
    if dp.noise_multiplier == 0:
        raise ConfigError("central-dp.accountant=true needs noise: set central-dp.noise-multiplier above 0")


#: SecAgg+'s mask modulus (Flower's default and its largest): sums of quantised weights wrap around at it.
MODULUS_RANGE = 2**32


def check_combinations(config: RunConfig) -> None:
    """Reject settings that are valid one by one but impossible together."""
    _check_dataset(config)
    _check_model(config)
    _check_strategy(config)
    _check_secure_aggregation(config)
    _check_central_dp(config)
    server = config.server
    if server.min_available_nodes > config.simulation.num_clients:
        raise ConfigError(
            f"config key 'server.min-available-nodes' ({server.min_available_nodes}) exceeds "
            f"'simulation.num-clients' ({config.simulation.num_clients}); lower it or add clients")
    failing = config.faults.failing_partitions
    if failing and max(failing) >= config.simulation.num_clients:
        raise ConfigError(f"config key 'faults.partitions' names partition {max(failing)} but there are only "
                          f"{config.simulation.num_clients} clients (0..{config.simulation.num_clients - 1})")
    if config.faults.mode == "timeout" and config.faults.delay_seconds == 0:
        raise ConfigError("config key 'faults.mode' is timeout but 'faults.delay-seconds' is 0; set it above "
                          f"server.round-timeout ({server.round_timeout}) to make the client miss the round")
    if config.defense.dgp_top_ratio + config.defense.dgp_bottom_ratio > 1:
        raise ConfigError(f"config keys 'defense.dgp-top-ratio' + 'defense.dgp-bottom-ratio' "
                          f"({config.defense.dgp_top_ratio} + {config.defense.dgp_bottom_ratio}) exceed 1; "
                          f"lower them so that something is uploaded")
    if config.data.val_fraction == 0 and server.fraction_evaluate > 0:
        raise ConfigError("config key 'data.val-fraction' is 0, so clients have nothing to evaluate on; "
                          "set server.fraction-evaluate=0 or a val-fraction above 0")
    if server.min_train_nodes > config.simulation.num_clients:
        raise ConfigError(
            f"config key 'server.min-train-nodes' ({server.min_train_nodes}) exceeds "
            f"'simulation.num-clients' ({config.simulation.num_clients}); lower it or add clients")
