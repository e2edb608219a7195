"""The run configuration: one typed, validated schema for `flwr run .`, `fl-sim run` and the tests.

A configuration is a tree of frozen dataclasses. On the wire (Flower's run config, the
`--set` flags, a TOML file) it is a flat mapping of dotted kebab-case keys such as
``train.lr`` or ``data.partitioner``; :meth:`RunConfig.from_flat` turns such a mapping into
a validated :class:`RunConfig` and :meth:`RunConfig.to_flat` turns it back, so every entry
point speaks the same keys.

Each field declares its type (``Literal`` types list the allowed values) and, where it has
one, its range in the field metadata. Any unknown key or bad value raises
:class:`ConfigError` with one line that names the key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import typing
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from fl_sim.errors import ConfigError

Scalar = bool | int | float | str

#: The largest seed NumPy's legacy seeding, torch and Python's ``random`` all accept alike.
MAX_SEED = 2**32 - 1


def _setting(default: Any, help: str, *, min: float | None = None, max: float | None = None,
             min_exclusive: bool = False) -> Any:
    """Declare one configuration field with its help text and optional numeric range."""
    return field(default=default, metadata={"help": help, "min": min, "max": max,
                                            "min_exclusive": min_exclusive})


@dataclass(frozen=True)
class ServerConfig:
    """How the server samples clients each round (Flower FedAvg settings)."""

    fraction_train: float = _setting(1.0, "share of connected clients trained each round", min=0, max=1)
    fraction_evaluate: float = _setting(1.0, "share of clients asked for federated evaluation", min=0, max=1)
    min_train_nodes: int = _setting(2, "minimum clients trained per round", min=0)
    min_evaluate_nodes: int = _setting(2, "minimum clients evaluated per round", min=0)
    min_available_nodes: int = _setting(2, "clients that must be connected before a round starts", min=1)
    round_timeout: float = _setting(3600.0, "seconds to wait for client replies per round", min=0,
                                    min_exclusive=True)


#: Flower's message-based strategies a run can aggregate with (all wrapped by the interception).
STRATEGIES = ("fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "fedadagrad", "fedmedian", "fedtrimmedavg",
              "krum", "multikrum", "bulyan")


@dataclass(frozen=True)
class StrategyConfig:
    """Which Flower strategy aggregates the (intercepted) updates, and its own parameters."""

    name: Literal[STRATEGIES] = _setting(
        "fedavg", "Flower strategy that aggregates; fedprox's proximal term is train.proximal-mu")
    server_learning_rate: float = _setting(1.0, "fedavgm: server learning rate", min=0, min_exclusive=True)
    server_momentum: float = _setting(0.0, "fedavgm: server momentum", min=0, max=1)
    eta: float = _setting(0.0, "fedadam, fedyogi, fedadagrad: server learning rate; 0 = Flower's default "
                               "(0.1; fedyogi 0.01)", min=0)
    beta_1: float = _setting(0.9, "fedadam, fedyogi: first-moment decay", min=0, max=1)
    beta_2: float = _setting(0.99, "fedadam, fedyogi: second-moment decay", min=0, max=1)
    tau: float = _setting(1e-3, "fedadam, fedyogi, fedadagrad: adaptivity (added to the root of the second moment)",
                          min=0, min_exclusive=True)
    trim_fraction: float = _setting(0.2, "fedtrimmedavg: share of the largest and of the smallest values cut per "
                                         "coordinate (Flower's beta, below 0.5)", min=0, max=0.4999)
    num_malicious_nodes: int = _setting(0, "krum, multikrum, bulyan: Byzantine clients tolerated (f)", min=0)
    num_nodes_to_select: int = _setting(1, "multikrum: updates averaged after selection (m)", min=1)


#: The ``strategy.*`` keys each strategy reads (all others must keep their defaults).
STRATEGY_KEYS = {
    "fedavgm": ("server-learning-rate", "server-momentum"),
    "fedadam": ("eta", "beta-1", "beta-2", "tau"),
    "fedyogi": ("eta", "beta-1", "beta-2", "tau"),
    "fedadagrad": ("eta", "tau"),
    "fedtrimmedavg": ("trim-fraction",),
    "krum": ("num-malicious-nodes",),
    "multikrum": ("num-malicious-nodes", "num-nodes-to-select"),
    "bulyan": ("num-malicious-nodes",),
}


@dataclass(frozen=True)
class DataConfig:
    """Which data set is used and how it is split among clients."""

    dataset: Literal["digits", "faces", "mnist", "fashion-mnist", "cifar10", "cifar100", "imagefolder"] = _setting(
        "digits", "data set; digits and faces (LFW subset: face / non-face) are embedded, fashion-mnist also "
                  "comes from Debian's dataset-fashion-mnist, the others load from data.root")
    root: str = _setting("data", "directory holding torchvision data sets or an image folder")
    image_size: int = _setting(32, "images are resized to image-size x image-size", min=8)
    channels: Literal[1, 3] = _setting(1, "channels served to the model (gray images are repeated to 3)")
    partitioner: Literal["iid", "dirichlet", "classes"] = _setting(
        "iid", "how training samples are split among clients")
    dirichlet_alpha: float = _setting(0.5, "Dirichlet concentration for label skew (smaller = more skew)",
                                      min=0, min_exclusive=True)
    classes_per_client: int = _setting(2, "classes each client holds with partitioner=classes", min=1)
    val_fraction: float = _setting(0.1, "share of each client's partition held out for its evaluation",
                                   min=0, max=0.9)
    test_fraction: float = _setting(0.2, "test share for data sets without their own test split "
                                         "(digits, faces, imagefolder)", min=0.05, max=0.9)


@dataclass(frozen=True)
class ModelConfig:
    """Which network the federation trains."""

    name: Literal["lenet", "convnet", "mlp", "resnet18"] = _setting("lenet", "model architecture")
    init: Literal["default", "dlg"] = _setting(
        "dlg", "weight init: PyTorch's default, or DLG's uniform(-0.5, 0.5) on every parameter")
    norm: Literal["batch", "group"] = _setting("group", "normalisation layers of resnet18")
    width: int = _setting(1024, "hidden units per layer of the MLP", min=1)
    depth: int = _setting(2, "hidden layers of the MLP", min=1)


@dataclass(frozen=True)
class PrecodeConfig:
    """PRECODE's variational bottleneck (Scheliga et al., 2022), added to the model of model.name."""

    enabled: bool = _setting(False, "extend the model with PRECODE's variational bottleneck")
    k: int = _setting(256, "bottleneck size K (paper: 256)", min=1)
    beta: float = _setting(1e-3, "weight of the KL term in the loss (paper: 1e-3)", min=0)
    position: Literal["head", "early"] = _setting(
        "head", "before the classifier (paper) or after the first block (CVB follow-up; lenet, mlp, resnet18)")
    eval_sampling: Literal["sample", "mean"] = _setting(
        "sample", "at evaluation sample z as the official code does, or use its mean")


@dataclass(frozen=True)
class TrainConfig:
    """Local training each client runs on its partition; the server sends it every round."""

    optimizer: Literal["sgd", "adam"] = _setting("adam", "local optimizer")
    lr: float = _setting(0.005, "local learning rate", min=0, min_exclusive=True)
    momentum: float = _setting(0.0, "SGD momentum", min=0, max=1)
    weight_decay: float = _setting(0.0, "L2 weight decay", min=0)
    local_epochs: int = _setting(2, "passes over the local partition per round (if local-steps is 0)", min=1)
    local_steps: int = _setting(0, "optimizer steps per round; 0 means use local-epochs", min=0)
    batch_size: int = _setting(16, "local mini-batch size", min=1)
    proximal_mu: float = _setting(0.0, "FedProx's proximal term mu: local loss + mu/2 x squared L2 distance to the "
                                       "global model (Li et al. 2020); needs strategy.name=fedprox (0 = none)", min=0)


@dataclass(frozen=True)
class DefenseConfig:
    """How a client transforms its update before upload (combines with precode.*)."""

    name: Literal["none", "noise", "dp", "dpsgd", "topk", "dgp"] = _setting(
        "none", "update defense; dpsgd is DP-SGD in local training (per-sample clipping and noise, Opacus)")
    noise_std: float = _setting(1e-3, "noise: std of the Gaussian noise added to every update entry", min=0)
    dp_clip: float = _setting(1.0, "dp: L2 norm the whole update is clipped to", min=0, min_exclusive=True)
    dp_noise_multiplier: float = _setting(1.0, "dp: Gaussian noise std = multiplier x clip", min=0)
    topk_prune_ratio: float = _setting(0.9, "topk: share of each layer's smallest-magnitude entries dropped",
                                       min=0, max=1)
    dgp_top_ratio: float = _setting(0.1, "dgp: share of each layer's largest-magnitude entries dropped", min=0, max=1)
    dgp_bottom_ratio: float = _setting(0.8, "dgp: share of each layer's smallest-magnitude entries dropped",
                                       min=0, max=1)
    error_feedback: bool = _setting(True, "dgp: keep what was pruned and add it to the next round's update")
    dpsgd_max_grad_norm: float = _setting(1.0, "dpsgd: L2 norm every per-sample gradient is clipped to", min=0,
                                          min_exclusive=True)
    dpsgd_noise_multiplier: float = _setting(1.0, "dpsgd: Gaussian noise std = multiplier x max-grad-norm, per "
                                                  "batch (used when dpsgd-target-epsilon is 0)", min=0)
    dpsgd_target_epsilon: float = _setting(0.0, "dpsgd: epsilon each client may spend over the whole run; the "
                                                "noise multiplier is derived from it (0 = use the multiplier)", min=0)
    dpsgd_delta: float = _setting(1e-5, "dpsgd: delta of the (epsilon, delta) guarantee", min=0, max=1,
                                  min_exclusive=True)


@dataclass(frozen=True)
class AttackConfig:
    """The honest-but-curious server: which gradient inversion it runs on intercepted updates."""

    enabled: bool = _setting(False, "run the attacker plugin on every intercepted update")
    method: Literal["auto", "ig", "idlg", "dlg", "analytic"] = _setting(
        "auto", "gradient-inversion attack; auto = every applicable attack of a portfolio, the worst case kept")
    iterations: int = _setting(0, "optimisation steps; 0 = the method's published default "
                                  "(ig 4800 Adam steps, dlg/idlg 300 L-BFGS steps, analytic's feature "
                                  "inversion 2000; for auto it sets the Adam attacks', iDLG keeps 300)", min=0)
    lr: float = _setting(0.0, "attack step size; 0 = the method's default (ig 0.1, dlg/idlg 1.0)", min=0)
    tv: float = _setting(0.1, "ig: total-variation weight (auto tries 0.1, 0.01 and 0.001)", min=0)
    restarts: int = _setting(1, "random restarts per attacked update, lowest final cost kept "
                                "(dlg/idlg restart only while above their stop cost)", min=1)
    multistep: Literal["replay", "approx"] = _setting(
        "replay", "ig on updates other than one plain SGD step: replay the client's local training "
                  "(optimizer, epochs, batches) on dummy images, or approx: gradient = -update/(lr*steps)")
    max_images: int = _setting(32, "replay: at most this many dummy images per epoch (a client with more "
                                   "is modelled with this many, and the event says so)", min=1)
    stochastic: Literal["sample", "omit", "restore"] = _setting(
        "sample", "ig/idlg against PRECODE: sample the bottleneck's noise, omit the bottleneck's and later "
                  "gradients from the matching, or restore (optimise) the noise with the image (ig)")
    device: Literal["auto", "cpu", "cuda"] = _setting("auto", "where attacks run; auto = cuda when present")
    threads: int = _setting(0, "torch threads of the server process, where attacks run; 0 = the cores this "
                               "machine's simulated clients leave free (at least 1)", min=0)
    batched: bool = _setting(True, "ig: optimise all attacks of a round as one vmap-batched problem")
    compile: Literal["auto", "on", "off"] = _setting(
        "auto", "ig, dlg, idlg: compile the optimisation step with torch.compile (CUDA graphs on a GPU); auto = "
                "for attacks of 2000 or more iterations (so not DLG's 300 L-BFGS steps) on a model without "
                "PRECODE, where a C++ compiler or a GPU is present; a failed compile then runs uncompiled "
                "and the event says so")
    blocking: bool = _setting(False, "run attacks inside the round (deterministic) instead of a background worker")
    queue_size: int = _setting(4, "background worker: rounds waiting to be attacked before training waits", min=1)
    end_budget_seconds: float = _setting(0.0, "at the end of a run, seconds to let pending attacks finish; "
                                              "0 = wait for all", min=0)
    timeout_seconds: float = _setting(0.0, "time budget of one round's attack; past it the attack is stopped, "
                                           "logged as attack-timeout and skipped (0 = none)", min=0)
    success_ssim: float = _setting(0.6, "an image leaks when a reconstruction identifies it (closer to it than "
                                        "chance allows, see attack.false-leak-rate) with an SSIM of at least this",
                                   min=0, max=1)
    false_leak_rate: float = _setting(0.005, "the judge's error per update: the identification margin a leak needs "
                                            "is set so that real images the client never held (decoys) would "
                                            "make at most this share of updates of the same size leak", min=0,
                                      max=0.5)
    max_clients: int = _setting(0, "attack at most this many clients per round (0 = all)", min=0)
    every: int = _setting(1, "attack every n-th round", min=1)
    save_images: bool = _setting(True, "save ground truth vs reconstruction PNG grids")


@dataclass(frozen=True)
class FaultsConfig:
    """Injected client failures, to see how a run copes (simulation and local deployment alike)."""

    partitions: str = _setting("", "comma-separated partition ids that fail, e.g. '0,3' (empty = none)")
    rounds: str = _setting("", "comma-separated rounds in which they fail (empty = every round)")
    mode: Literal["raise", "nan", "timeout", "drop"] = _setting(
        "raise", "raise: training raises; nan: the update is all NaN; timeout: the client sleeps "
                 "faults.delay-seconds before training (set it above server.round-timeout to miss the "
                 "round); drop: the client process exits after training, before uploading")
    delay_seconds: float = _setting(0.0, "timeout: how long the failing client stalls", min=0)

    def fails(self, partition_id: int, server_round: int) -> bool:
        """Whether ``partition_id`` is to fail in ``server_round``."""
        rounds = parse_ids(self.rounds, "faults.rounds")
        return partition_id in parse_ids(self.partitions, "faults.partitions") and (
            not rounds or server_round in rounds)


def parse_ids(text: str, key: str) -> set[int]:
    """The non-negative integers of a comma-separated list such as ``"0, 3"``; '' is the empty set."""
    ids = set()
    for token in filter(None, (t.strip() for t in text.split(","))):
        if not token.isdigit():
            raise ConfigError(f"config key '{key}' must list whole numbers separated by commas, e.g. '0,3'; "
                              f"got {text!r}")
        ids.add(int(token))
    return ids


@dataclass(frozen=True)
class SimulationConfig:
    """Flower Simulation Engine (Ray) settings used by `fl-sim run`."""

    num_clients: int = _setting(10, "virtual clients (SuperNodes), one data partition each", min=1)
    client_cpus: float = _setting(1.0, "CPU cores reserved per client actor", min=0, min_exclusive=True)
    client_gpus: float = _setting(0.0, "GPU share per client actor (0 = CPU only)", min=0)
    ray_address: str = _setting("", "Ray cluster to run the clients on: '' starts a private local Ray, 'auto' "
                                    "joins the cluster of this machine, 'host:port' or 'ray://host:port' a "
                                    "remote one (fl-sim must be installed on every node)")


@dataclass(frozen=True)
class OutputConfig:
    """Where a run writes its results."""

    dir: str = _setting("results", "parent directory of the run's results directory")
    run_id: str = _setting("", "name of the results directory (one path component); empty = a timestamped id")
    report: bool = _setting(True, "write report.html and plots/ at the end of the run")

    def __post_init__(self) -> None:
        check_path_component(self.run_id, "output.run-id")


def check_path_component(name: str, key: str) -> None:
    """Refuse a name that is not one plain path component, so that results stay inside ``output.dir``.

    No separators, no ``.`` or ``..``, no leading or trailing blanks, no control characters;
    the empty name is allowed (it means "pick one").
    """
    problem = None
    if any(sep in name for sep in ("/", "\\")):
        problem = "contains a path separator"
    elif name in (".", ".."):
        problem = "names a directory, not a new one"
    elif name != name.strip():
        problem = "starts or ends with a blank"
    elif any(unicodedata.category(char) == "Cc" for char in name):
        problem = "contains a control character"
    if problem:
        raise ConfigError(f"config key '{key}' must be one folder name such as 'my-run' ({problem}); "
                          f"got {name!r}")


@dataclass(frozen=True)
class RunConfig:
    """Everything one federated run needs. Build it with :meth:`from_flat`."""

    seed: int = _setting(42, "seed for data partitioning, model init and local training (0 to 2^32-1)", min=0,
                         max=MAX_SEED)
    num_server_rounds: int = _setting(20, "federated rounds", min=1)
    server: ServerConfig = field(default_factory=ServerConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    precode: PrecodeConfig = field(default_factory=PrecodeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    defense: DefenseConfig = field(default_factory=DefenseConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    faults: FaultsConfig = field(default_factory=FaultsConfig)
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> RunConfig:
        """Build a validated configuration from dotted keys; missing keys keep their defaults."""
        nested: dict[str, Any] = {}
        for key, value in flat.items():
            path = _resolve_key(key)
            target = nested
            for part in path[:-1]:
                target = target.setdefault(part, {})
            target[path[-1]] = value
        config = _build(cls, nested, prefix="")
        _check_combinations(config)
        return config

    def to_flat(self) -> dict[str, Scalar]:
        """Return the configuration as Flower's flat run config (dotted kebab-case keys)."""
        return dict(_flatten(self, prefix=""))

    def with_overrides(self, flat: Mapping[str, Any]) -> RunConfig:
        """Return a copy with the given dotted keys replaced (validated like :meth:`from_flat`)."""
        return RunConfig.from_flat({**self.to_flat(), **flat})


def train_settings(values: Mapping[str, Any]) -> TrainConfig:
    """Validate ``train.*`` values (unprefixed keys) on their own.

    What a client rebuilds from the round's message. Unknown keys are ignored, checks that involve other sections (e.g.
    the strategy) are not made.
    """
    return _build(TrainConfig, {key: value for key, value in values.items() if key in _fields(TrainConfig)},
                  prefix="train.")


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _fields(cls: type) -> dict[str, dataclasses.Field]:
    return {_kebab(f.name): f for f in dataclasses.fields(cls)}


def _is_section(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp)


def _resolve_key(key: str) -> list[str]:
    """Split a dotted key and check that every part names a field; raise ConfigError if not."""
    parts = key.split(".")
    cls: type = RunConfig
    for depth, part in enumerate(parts):
        fields = _fields(cls)
        hints = typing.get_type_hints(cls)
        prefix = ".".join(parts[:depth])
        if part not in fields:
            allowed = sorted(f"{prefix}.{k}" if prefix else k for k in fields)
            close = difflib.get_close_matches(key, all_keys(), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown config key '{key}'{hint} (allowed here: {', '.join(allowed)})")
        tp = hints[fields[part].name]
        last = depth == len(parts) - 1
        if _is_section(tp) == last:
            what = "a section; set one of its keys, e.g." if last else "not a section:"
            example = f"{key}.{next(iter(_fields(tp)))}" if last else ".".join(parts[: depth + 1])
            raise ConfigError(f"config key '{key}' is {what} '{example}'")
        cls = tp
    return parts


def all_keys(cls: type | None = None, prefix: str = "") -> list[str]:
    """Every dotted key of the schema, in declaration order."""
    cls = cls or RunConfig
    hints = typing.get_type_hints(cls)
    keys: list[str] = []
    for name, f in _fields(cls).items():
        tp = hints[f.name]
        full = f"{prefix}{name}"
        keys.extend(all_keys(tp, full + ".") if _is_section(tp) else [full])
    return keys


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, f in _fields(cls).items():
        if name not in values:
            continue
        tp = hints[f.name]
        if _is_section(tp):
            kwargs[f.name] = _build(tp, values[name], prefix=f"{prefix}{name}.")
        else:
            kwargs[f.name] = _coerce(f"{prefix}{name}", values[name], tp, f.metadata)
    return cls(**kwargs)


def _coerce(key: str, value: Any, tp: Any, meta: Mapping[str, Any]) -> Scalar:
    """Check one value against its declared type and range; return it in the declared type."""
    if typing.get_origin(tp) is Literal:
        allowed = typing.get_args(tp)
        if isinstance(value, str) and all(isinstance(a, int) for a in allowed) and value.isdigit():
            value = int(value)
        if value not in allowed or isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be one of {', '.join(map(str, allowed))}; got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false; got {value!r}")
        return value
    if tp is str:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)  # `--set faults.partitions=1` and `--run-config` parse a lone number as one
        if not isinstance(value, str):
            raise ConfigError(f"config key '{key}' must be a string; got {value!r}")
        return value
    converted = _to_number(value, tp)
    if converted is None:
        raise ConfigError(f"config key '{key}' must be {'an integer' if tp is int else 'a number'}; got {value!r}")
    if not math.isfinite(converted):
        raise ConfigError(f"config key '{key}' must be a finite number; got {converted}")
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and (converted < lo or (meta.get("min_exclusive") and converted == lo)):
        op = ">" if meta.get("min_exclusive") else ">="
        raise ConfigError(f"config key '{key}' must be {op} {lo}; got {converted}")
    if hi is not None and converted > hi:
        raise ConfigError(f"config key '{key}' must be <= {hi}; got {converted}")
    return converted


def _to_number(value: Any, tp: type) -> int | float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = tomllib.loads(f"v = {value}")["v"]
        except tomllib.TOMLDecodeError:
            return None
    if tp is int:
        return value if isinstance(value, int) and not isinstance(value, bool) else None
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _flatten(obj: Any, prefix: str):
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        key = f"{prefix}{_kebab(f.name)}"
        if dataclasses.is_dataclass(value):
            yield from _flatten(value, key + ".")
        else:
            yield key, value


def _check_strategy(config: RunConfig) -> None:
    """Every ``strategy.*`` key set away from its default is one the chosen strategy reads.

    Byzantine-robust aggregators get the updates their rule needs.
    """
    name, chosen = config.strategy.name, dict(_flatten(config.strategy, "strategy."))
    for key, value in _flatten(StrategyConfig(), "strategy."):
        short = key.removeprefix("strategy.")
        if short != "name" and chosen[key] != value and short not in STRATEGY_KEYS.get(name, ()):
            users = ", ".join(s for s, keys in STRATEGY_KEYS.items() if short in keys)
            raise ConfigError(f"config key '{key}' is set but strategy.name={name} does not use it (it is for "
                              f"{users}); remove it or choose one of those strategies")
    if config.train.proximal_mu > 0 and config.defense.name == "dpsgd":
        raise ConfigError("config key 'train.proximal-mu' cannot be combined with defense.name=dpsgd: DP-SGD clips "
                          "per-sample gradients and FedProx's term is not a per-sample loss; set one of them off")
    if config.train.proximal_mu > 0 and name != "fedprox":
        raise ConfigError(f"config key 'train.proximal-mu' is FedProx's proximal term but strategy.name={name}; "
                          f"set strategy.name=fedprox or train.proximal-mu=0")
    malicious, least = config.strategy.num_malicious_nodes, config.server.min_train_nodes
    needed = {"krum": 2 * malicious + 3, "multikrum": 2 * malicious + 3, "bulyan": 4 * malicious + 3}.get(name, 0)
    if least < needed:
        rule = "4f + 3" if name == "bulyan" else "2f + 3"
        raise ConfigError(f"strategy.name={name} with strategy.num-malicious-nodes={malicious} needs at least "
                          f"{rule} = {needed} updates per round, but server.min-train-nodes is {least}; raise it "
                          f"(and simulation.num-clients) or lower num-malicious-nodes")
    if name == "multikrum" and config.strategy.num_nodes_to_select > least:
        raise ConfigError(f"config key 'strategy.num-nodes-to-select' ({config.strategy.num_nodes_to_select}) "
                          f"exceeds server.min-train-nodes ({least}); lower it")


def _check_combinations(config: RunConfig) -> None:
    """Reject settings that are valid one by one but impossible together."""
    _check_strategy(config)
    server = config.server
    if server.min_available_nodes > config.simulation.num_clients:
        raise ConfigError(
            f"config key 'server.min-available-nodes' ({server.min_available_nodes}) exceeds "
            f"'simulation.num-clients' ({config.simulation.num_clients}); lower it or add clients")
    failing = parse_ids(config.faults.partitions, "faults.partitions")
    parse_ids(config.faults.rounds, "faults.rounds")
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


def parse_assignment(text: str) -> tuple[str, Any]:
    """Parse one ``key=value`` override (the CLI's ``--set``); values are read as TOML scalars."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override '{text}' must look like key=value, e.g. train.lr=0.05")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()  # a bare word such as dirichlet is a string
    return key.strip(), value


def read_toml(path: Path) -> dict[str, Any]:
    """Read a TOML config file (sections or dotted keys) as a flat mapping of dotted keys."""
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist; pass the path of a TOML file")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file '{path}' is not valid TOML: {err}") from err
    return dict(_flatten_mapping(data, prefix=""))


def _flatten_mapping(data: Mapping[str, Any], prefix: str):
    for key, value in data.items():
        if isinstance(value, Mapping):
            yield from _flatten_mapping(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def describe() -> list[tuple[str, Scalar, str]]:
    """(key, default, help) for every key, as the README's and `fl-sim config` tables show them."""
    defaults = RunConfig().to_flat()
    rows = []
    for key in all_keys():
        cls: type = RunConfig
        parts = key.split(".")
        for part in parts[:-1]:
            cls = typing.get_type_hints(cls)[_fields(cls)[part].name]
        f = _fields(cls)[parts[-1]]
        tp = typing.get_type_hints(cls)[f.name]
        choices = " | ".join(map(str, typing.get_args(tp))) if typing.get_origin(tp) is Literal else ""
        help_text = f.metadata["help"] + (f" ({choices})" if choices else "")
        rows.append((key, defaults[key], help_text))
    return rows
