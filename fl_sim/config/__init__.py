"""The run configuration: one typed, validated schema for `flwr run .`, `fl-sim run` and the tests.

A configuration is a tree of frozen dataclasses. On the wire (Flower's run config, the
`--set` flags, a TOML file) it is a flat mapping of dotted kebab-case keys such as
``train.lr`` or ``data.partitioner``; :meth:`RunConfig.from_flat` turns such a mapping into
a validated :class:`RunConfig` and :meth:`RunConfig.to_flat` turns it back, so every entry
point speaks the same keys.

The package keeps three jobs apart: :mod:`fl_sim.config.schema` declares the sections, their
fields, defaults, ranges and help; :mod:`fl_sim.config.flat` turns dotted keys into checked,
typed values and back (any unknown key or bad value raises :class:`ConfigError` with one line
that names the key and what is allowed); :mod:`fl_sim.config.rules` rejects settings that are
valid one by one but impossible together.
"""

from fl_sim.config.flat import Scalar, check_path_component, parse_assignment, parse_ids, read_toml
from fl_sim.config.schema import (
    MAX_SEED,
    AttackConfig,
    CentralDpConfig,
    DataConfig,
    DefenseConfig,
    FaultsConfig,
    ModelConfig,
    OutputConfig,
    PrecodeConfig,
    RunConfig,
    SecAggConfig,
    ServerConfig,
    SimulationConfig,
    StrategyConfig,
    TrainConfig,
    all_keys,
    describe,
    train_settings,
)
from fl_sim.strategy_registry import STRATEGIES as _STRATEGY_REGISTRY

#: Flower's message-based strategies a run can aggregate with (all wrapped by the interception).
STRATEGIES = tuple(_STRATEGY_REGISTRY)

__all__ = ["MAX_SEED", "STRATEGIES", "AttackConfig", "CentralDpConfig", "DataConfig", "DefenseConfig",
           "FaultsConfig", "ModelConfig", "OutputConfig", "PrecodeConfig", "RunConfig", "Scalar", "SecAggConfig",
           "ServerConfig", "SimulationConfig", "StrategyConfig", "TrainConfig", "all_keys", "check_path_component",
           "describe", "parse_assignment", "parse_ids", "read_toml", "train_settings"]
