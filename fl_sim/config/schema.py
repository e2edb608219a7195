"""The run's schema: every section of the configuration, its fields, defaults, ranges and help.

Each field declares its type (``Literal`` types list the allowed values) and, where it has one,
its range in the field metadata (:func:`fl_sim.config.flat.setting`); :mod:`fl_sim.config.flat` reads them to turn
flat dotted keys into a validated :class:`RunConfig` and back, and :mod:`fl_sim.config.rules`
checks the settings that depend on each other.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from fl_sim.config.attack import AttackConfig
from fl_sim.config.flat import Scalar, build, check_path_component, fields_of, flatten, parse_ids, resolve_key, setting
from fl_sim.config.flat import all_keys as keys_of
from fl_sim.config.flat import describe as describe_schema
from fl_sim.config.rules import check_combinations
from fl_sim.dataset_registry import DATASETS
from fl_sim.defense_registry import DEFENSES, DefenseEntry
from fl_sim.errors import ConfigError
from fl_sim.model_registry import MODELS
from fl_sim.strategy_registry import STRATEGIES

#: The largest seed NumPy's legacy seeding, torch and Python's ``random`` all accept alike.
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class ServerConfig:
    """How the server samples clients each round (Flower FedAvg settings)."""

    fraction_train: float = setting(1.0, "share of connected clients trained each round", min=0, max=1)
    fraction_evaluate: float = setting(1.0, "share of clients asked for federated evaluation", min=0, max=1)
    min_train_nodes: int = setting(2, "minimum clients trained per round", min=0)
    min_evaluate_nodes: int = setting(2, "minimum clients evaluated per round", min=0)
    min_available_nodes: int = setting(2, "clients that must be connected before a round starts", min=1)
    round_timeout: float = setting(3600.0, "seconds to wait for client replies per round", min=0, min_exclusive=True)


@dataclass(frozen=True)
class StrategyConfig:
    """Which Flower strategy aggregates the (intercepted) updates, and its own parameters."""

    name: Literal[tuple(STRATEGIES)] = setting(
        "fedavg", "Flower strategy that aggregates; fedprox's proximal term is train.proximal-mu")
    server_learning_rate: float = setting(1.0, "fedavgm: server learning rate", min=0, min_exclusive=True)
    server_momentum: float = setting(0.0, "fedavgm: server momentum", min=0, max=1)
    eta: float = setting(0.0, "fedadam, fedyogi, fedadagrad: server learning rate; 0 = Flower's default "
                               "(0.1; fedyogi 0.01)", min=0)
    beta_1: float = setting(0.9, "fedadam, fedyogi: first-moment decay", min=0, max=1)
    beta_2: float = setting(0.99, "fedadam, fedyogi: second-moment decay", min=0, max=1)
    tau: float = setting(1e-3, "fedadam, fedyogi, fedadagrad: adaptivity (added to the root of the second moment)",
                          min=0, min_exclusive=True)
    trim_fraction: float = setting(0.2, "fedtrimmedavg: share of the largest and of the smallest values cut per "
                                         "coordinate (Flower's beta, below 0.5)", min=0, max=0.4999)
    num_malicious_nodes: int = setting(0, "krum, multikrum, bulyan: Byzantine clients tolerated (f)", min=0)
    num_nodes_to_select: int = setting(1, "multikrum: updates averaged after selection (m)", min=1)


@dataclass(frozen=True)
class DataConfig:
    """Which data set is used and how it is split among clients."""

    dataset: str = setting(
        "digits", f"data set: {', '.join(DATASETS)}, or a loader of your own, package.module:loader (no "
                  f"arguments; returns images and labels, or a datasets.Dataset); digits and faces (LFW subset: "
                  f"face / non-face) are embedded, fashion-mnist also comes from Debian's dataset-fashion-mnist, "
                  f"the others load from data.root")
    root: str = setting("data", "directory holding torchvision data sets or an image folder")
    image_size: int = setting(32, "images are resized to image-size x image-size", min=8)
    channels: Literal[1, 3] = setting(1, "channels served to the model (gray images are repeated to 3)")
    partitioner: Literal["iid", "dirichlet", "classes", "shards"] = setting(
        "iid", "how training samples are split among clients (Flower Datasets' IidPartitioner, "
               "DirichletPartitioner, PathologicalPartitioner, ShardPartitioner)")
    dirichlet_alpha: float = setting(0.5, "Dirichlet concentration for label skew (smaller = more skew)",
                                      min=0, min_exclusive=True)
    classes_per_client: int = setting(2, "classes each client holds with partitioner=classes", min=1)
    shards_per_client: int = setting(2, "label-sorted shards each client is dealt with partitioner=shards", min=1)
    val_fraction: float = setting(0.1, "share of each client's partition held out for its evaluation",
                                   min=0, max=0.9)
    test_fraction: float = setting(0.2, "test share for data sets without their own test split "
                                         "(digits, faces, imagefolder)", min=0.05, max=0.9)


@dataclass(frozen=True)
class ModelConfig:
    """Which network the federation trains."""

    name: str = setting("mlp", f"model architecture: {', '.join(MODELS)}, or a builder of your own, "
                               f"package.module:builder (input shape and number of classes -> nn.Module)")
    init: Literal["default", "dlg"] = setting(
        "default", "weight init: PyTorch's default, or DLG's uniform(-0.5, 0.5) on every parameter")
    norm: Literal["batch", "group"] = setting("group", "normalisation layers of resnet18")
    width: int = setting(1024, "hidden units per layer of the MLP", min=1)
    depth: int = setting(1, "hidden layers of the MLP", min=1)


@dataclass(frozen=True)
class PrecodeConfig:
    """PRECODE's variational bottleneck (Scheliga et al., 2022), added to the model of model.name."""

    enabled: bool = setting(False, "extend the model with PRECODE's variational bottleneck")
    k: int = setting(256, "bottleneck size K (paper: 256)", min=1)
    beta: float = setting(1e-3, "weight of the KL term in the loss (paper: 1e-3)", min=0)
    position: Literal["head", "early"] = setting(
        "head", "before the classifier (paper) or after the first block (CVB follow-up; lenet, mlp, resnet18)")
    eval_sampling: Literal["sample", "mean"] = setting(
        "sample", "at evaluation sample z as the official code does, or use its mean")


@dataclass(frozen=True)
class TrainConfig:
    """Local training each client runs on its partition; the server sends it every round."""

    optimizer: Literal["sgd", "adam"] = setting("sgd", "local optimizer")
    lr: float = setting(0.1, "local learning rate", min=0, min_exclusive=True)
    momentum: float = setting(0.0, "SGD momentum", min=0, max=1)
    weight_decay: float = setting(0.0, "L2 weight decay", min=0)
    local_epochs: int = setting(2, "passes over the local partition per round (if local-steps is 0)", min=1)
    local_steps: int = setting(16, "optimizer steps per round; 0 means use local-epochs", min=0)
    batch_size: int = setting(8, "local mini-batch size", min=1)
    proximal_mu: float = setting(0.0, "FedProx's proximal term mu: local loss + mu/2 x squared L2 distance to the "
                                       "global model (Li et al. 2020); needs strategy.name=fedprox (0 = none)", min=0)

    def steps(self, num_samples: int) -> int:
        """The optimizer steps one round of this training takes on ``num_samples``: local-steps, or the epochs'."""
        if self.local_steps:
            return self.local_steps
        return self.local_epochs * -(-num_samples // max(1, min(self.batch_size, num_samples)))


@dataclass(frozen=True)
class DefenseConfig:
    """How a client transforms its update before upload (combines with precode.*)."""

    name: Literal[tuple(DEFENSES)] = setting(
        "none", "update defense; dpsgd is DP-SGD in local training (per-sample clipping and noise, Opacus)")
    noise_std: float = setting(1e-3, "noise: std of the Gaussian noise added to every update entry", min=0)
    dp_clip: float = setting(1.0, "dp: L2 norm the whole update is clipped to", min=0, min_exclusive=True)
    dp_noise_multiplier: float = setting(1.0, "dp: Gaussian noise std = multiplier x clip (above 0: the server "
                                              "accounts each client's epsilon with Flower's RdpAccountant)", min=0)
    dp_delta: float = setting(1e-5, "dp: delta the client's epsilon is reported at", min=0, max=1, min_exclusive=True)
    topk_prune_ratio: float = setting(0.9, "topk: share of each layer's smallest-magnitude entries dropped",
                                       min=0, max=1)
    dgp_top_ratio: float = setting(0.1, "dgp: share of each layer's largest-magnitude entries dropped", min=0, max=1)
    dgp_bottom_ratio: float = setting(0.8, "dgp: share of each layer's smallest-magnitude entries dropped",
                                       min=0, max=1)
    error_feedback: bool = setting(True, "dgp: keep what was pruned and add it to the next round's update")
    dpsgd_max_grad_norm: float = setting(1.0, "dpsgd: L2 norm every per-sample gradient is clipped to", min=0,
                                          min_exclusive=True)
    dpsgd_noise_multiplier: float = setting(1.0, "dpsgd: Gaussian noise std = multiplier x max-grad-norm, per "
                                                  "batch (used when dpsgd-target-epsilon is 0)", min=0)
    dpsgd_target_epsilon: float = setting(0.0, "dpsgd: epsilon each client may spend over the whole run; the "
                                                "noise multiplier is derived from it (0 = use the multiplier)", min=0)
    dpsgd_delta: float = setting(1e-5, "dpsgd: delta of the (epsilon, delta) guarantee", min=0, max=1,
                                  min_exclusive=True)
    per_client: str = setting(
        "dgp:6,7;topk:8,9", "partitions that run another update defense than defense.name, as 'name:ids;name:ids' "
                            "(part of the protocol: the server knows it; not dpsgd; ids beyond simulation.num-clients "
                            "are not run; '' = every client runs defense.name)")

    def __post_init__(self) -> None:
        self.assigned()

    def assigned(self) -> dict[int, str]:
        """The partitions ``per-client`` assigns a defense, and its name."""
        return dict(self._assignment)

    @functools.cached_property
    def _assignment(self) -> dict[int, str]:
        """``per-client`` parsed once (checked when the configuration is built)."""
        assigned: dict[int, str] = {}
        for group in filter(None, (g.strip() for g in self.per_client.split(";"))):
            name, _, ids = group.partition(":")
            allowed = [entry.name for entry in DEFENSES.values() if not entry.in_local_training]
            if name.strip() not in allowed:
                raise ConfigError(f"config key 'defense.per-client' names defense {name.strip()!r}; allowed: "
                                  f"{', '.join(allowed)} (each as 'name:partition,partition', groups split by ';')")
            for partition_id in parse_ids(ids, "defense.per-client"):
                if partition_id in assigned:
                    raise ConfigError(f"config key 'defense.per-client' assigns partition {partition_id} twice")
                assigned[partition_id] = name.strip()
        return assigned

    def of(self, partition_id: int | None) -> str:
        """The update defense partition ``partition_id`` runs: its ``per-client`` one, else ``defense.name``."""
        return self.assigned().get(partition_id, self.name) if partition_id is not None else self.name

    def entry(self, partition_id: int | None = None) -> DefenseEntry:
        """The registry entry of the defense partition ``partition_id`` runs (None: of ``defense.name``)."""
        return DEFENSES[self.of(partition_id)]

    def drops_largest(self, partition_id: int | None = None) -> bool:
        """Whether partition ``partition_id``'s pruning also drops each layer's largest entries (DGP, top ratio > 0).

        Part of the protocol, so the server knows it: an entry that did not travel may then lie above every one its
        layer kept; otherwise it lies below them all.
        """
        share = self.entry(partition_id).largest_share
        return share is not None and getattr(self, share) > 0

    def feeds_back(self, partition_id: int | None = None) -> bool:
        """Whether partition ``partition_id``'s pruning adds what it dropped to its next update (DGP's error feedback).

        Part of the protocol: the server then reads a client's uploads summed over its rounds.
        """
        switch = self.entry(partition_id).feedback
        return switch is not None and bool(getattr(self, switch))

    def in_use(self) -> list[DefenseEntry]:
        """The registry entries of every defense some client runs: ``defense.name`` and the ``per-client`` ones."""
        names = {self.name, *self.assigned().values()}
        return [entry for entry in DEFENSES.values() if entry.name in names]


@dataclass(frozen=True)
class FaultsConfig:
    """Injected client failures, to see how a run copes (simulation and local deployment alike)."""

    partitions: str = setting("", "comma-separated partition ids that fail, e.g. '0,3' (empty = none)")
    rounds: str = setting("", "comma-separated rounds in which they fail (empty = every round)")
    mode: Literal["raise", "nan", "timeout", "drop"] = setting(
        "raise", "raise: training raises; nan: the update is all NaN; timeout: the client sleeps "
                 "faults.delay-seconds before training (set it above server.round-timeout to miss the "
                 "round); drop: the client process exits after training, before uploading")
    delay_seconds: float = setting(0.0, "timeout: how long the failing client stalls", min=0)

    def __post_init__(self) -> None:
        _ = self.failing_partitions, self.failing_rounds  # parsed, and checked, when the configuration is built

    def fails(self, partition_id: int, server_round: int) -> bool:
        """Whether ``partition_id`` is to fail in ``server_round``."""
        return partition_id in self.failing_partitions and (
            not self.failing_rounds or server_round in self.failing_rounds)

    @functools.cached_property
    def failing_partitions(self) -> frozenset[int]:
        """``partitions``, parsed once."""
        return frozenset(parse_ids(self.partitions, "faults.partitions"))

    @functools.cached_property
    def failing_rounds(self) -> frozenset[int]:
        """``rounds``, parsed once (empty: every round)."""
        return frozenset(parse_ids(self.rounds, "faults.rounds"))


@dataclass(frozen=True)
class SecAggConfig:
    """Secure aggregation with Flower's SecAgg+ (its legacy workflow and client mod): the server sees only the sum.

    Each of the protocol's four stages waits for replies up to ``server.round-timeout``.
    """

    enabled: bool = setting(False, "aggregate with SecAgg+: the server (and its attacker) sees only the round's "
                                   "unmasked weighted mean, never one client's update")
    num_shares: float = setting(1.0, "SecAgg+ shares of each client's key: a count (3 or more), or at most 1, a "
                                     "share of the round's clients (1 = every client)", min=0, min_exclusive=True)
    reconstruction_threshold: float = setting(
        0.6, "shares needed to rebuild a key (to unmask a client that dropped out): a count (2 or more, below "
             "num-shares), or at most 1, a share of num-shares; a round with clients whose neighbours left fewer "
             "fails", min=0, min_exclusive=True)
    clipping_range: float = setting(8.0, "model weights are clipped to +-this before quantisation", min=0,
                                     min_exclusive=True)
    quantization_range: int = setting(4194304, "integer levels a clipped weight is quantised to (2^22)", min=2)
    max_weight: float = setting(1000.0, "the largest num-examples a client may weigh by; larger values cost "
                                        "precision (Flower's default 1000)", min=0, min_exclusive=True)

    def flower_count(self, value: float) -> int | float:
        """A count (a whole number above 1) as an int, a share (at most 1) as a float, as SecAgg+ takes them."""
        return int(value) if value > 1 else float(value)


@dataclass(frozen=True)
class CentralDpConfig:
    """Central differential privacy with Flower's strategy wrappers: clip the updates, noise their mean at the server.

    The noise is added by the server, after it has seen every update: it bounds what those who see the global
    model learn, never what the server (the attacker here) learns. Noise that protects against the server is
    added on the client: ``defense.name=dp`` or ``dpsgd``.
    """

    clipping: Literal["off", "server-fixed", "client-fixed", "server-adaptive"] = setting(
        "off", "Flower's DP wrapper: who clips each update to the clipping norm (the server, or the client with "
               "fixedclipping_mod), and whether the norm adapts (Andrew et al. 2021); the server adds the noise")
    noise_multiplier: float = setting(1.0, "Gaussian noise std on the mean = multiplier x clipping norm / clients "
                                           "per round", min=0)
    clipping_norm: float = setting(1.0, "L2 norm every update is clipped to (adaptive: the initial norm)", min=0,
                                    min_exclusive=True)
    accountant: bool = setting(True, "account the epsilon spent per round with Flower's RdpAccountant (fixed "
                                     "clipping, FedAvg or FedProx, equal client weights: train.local-steps set)")
    target_delta: float = setting(1e-5, "delta the accountant reports epsilon at", min=0, max=1, min_exclusive=True)
    max_epsilon: float = setting(0.0, "stop the run with an error before a round whose release would take the "
                                      "epsilon above this (0 = no limit)", min=0)


@dataclass(frozen=True)
class SimulationConfig:
    """Flower Simulation Engine (Ray) settings used by `fl-sim run`."""

    num_clients: int = setting(10, "virtual clients (SuperNodes), one data partition each", min=1)
    client_cpus: float = setting(1.0, "CPU cores reserved per client actor", min=0, min_exclusive=True)
    client_gpus: float = setting(0.0, "GPU share per client actor (0 = CPU only)", min=0)
    ray_address: str = setting("", "Ray cluster to run the clients on: '' starts a private local Ray, 'auto' "
                                    "joins the cluster of this machine, 'host:port' or 'ray://host:port' a "
                                    "remote one (fl-sim must be installed on every node)")


@dataclass(frozen=True)
class OutputConfig:
    """Where a run writes its results."""

    dir: str = setting("results", "parent directory of the run's results directory")
    run_id: str = setting("", "name of the results directory (one path component); empty = a timestamped id")
    report: bool = setting(True, "write report.html and plots/ at the end of the run")
    tensorboard: bool = setting(False, "also log accuracy, loss, leak rates, SSIM and each round's reconstructions "
                                       "to <run dir>/tensorboard/ (needs the tensorboard package)")

    def __post_init__(self) -> None:
        check_path_component(self.run_id, "output.run-id")


@dataclass(frozen=True)
class RunConfig:
    """Everything one federated run needs. Build it with :meth:`from_flat`."""

    seed: int = setting(42, "seed for data partitioning, model init and local training (0 to 2^32-1)", min=0,
                         max=MAX_SEED)
    num_server_rounds: int = setting(15, "federated rounds", min=1)
    server: ServerConfig = field(default_factory=ServerConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    precode: PrecodeConfig = field(default_factory=PrecodeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    secagg: SecAggConfig = field(default_factory=SecAggConfig)
    central_dp: CentralDpConfig = field(default_factory=CentralDpConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> RunConfig:
        """Build a validated configuration from dotted keys; missing keys keep their defaults."""
        nested: dict[str, Any] = {}
        for key, value in flat.items():
            path = resolve_key(cls, key)
            target = nested
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = value
        config = build(cls, nested, prefix="")
        check_combinations(config)
        return config

    def of_client(self, partition_id: int) -> RunConfig:
        """This configuration as partition ``partition_id`` runs it: with its own update defense."""
        own = self.defense.of(partition_id)
        return self if own == self.defense.name else dataclasses.replace(
            self, defense=dataclasses.replace(self.defense, name=own, per_client=""))

    def to_flat(self) -> dict[str, Scalar]:
        """Return the configuration as Flower's flat run config (dotted kebab-case keys)."""
        return dict(flatten(self, prefix=""))

    def with_overrides(self, flat: Mapping[str, Any]) -> RunConfig:
        """Return a copy with the given dotted keys replaced (validated like :meth:`from_flat`)."""
        return RunConfig.from_flat({**self.to_flat(), **flat})


def train_settings(values: Mapping[str, Any]) -> TrainConfig:
    """Validate ``train.*`` values (unprefixed keys) on their own.

    What a client rebuilds from the round's message. Unknown keys are ignored, checks that involve other sections (e.g.
    the strategy) are not made.
    """
    return build(TrainConfig, {key: value for key, value in values.items() if key in fields_of(TrainConfig)},
                 prefix="train.")


def all_keys() -> list[str]:
    """Every dotted key of the run's configuration, in declaration order."""
    return keys_of(RunConfig)


def describe() -> list[tuple[str, Scalar, str]]:
    """(key, default, help) for every key, as `fl-sim config` and docs/configuration.md show them."""
    return describe_schema(RunConfig)
