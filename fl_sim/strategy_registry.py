"""Every ``strategy.name`` a run can aggregate with, declared once: its Flower class and the settings it reads.

The configuration's allowed values, its help, the rule that a ``strategy.*`` key may be set only
for a strategy that reads it, the Byzantine aggregators' minimum number of updates and the code
that builds the strategy (:func:`strategies.catalog.build_strategy`) all read this table. It
names Flower's classes by import path, so that a configuration is checked without importing
Flower. Adding a strategy is one ``STRATEGIES.register`` call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from fl_sim.registry import Registry


@dataclass(frozen=True)
class StrategyEntry:
    """One strategy: its name, Flower's class (``module:Class``) and the settings its constructor takes.

    Attributes:
        name: the value of ``strategy.name``.
        flower_class: the class to build, by import path; every one derives from Flower's FedAvg
            (client sampling, minimum nodes, weighting).
        settings: configuration key -> the constructor argument it sets.
        default_when_zero: the settings whose 0 means "Flower's own default" (the argument is left out).
        least_updates: the updates per round its rule needs given f = ``strategy.num-malicious-nodes``,
            with the rule as text (e.g. ``2f + 3``); ``None`` where any number will do.
        needs_each_update: its rule reads every client's update (a median, a trimmed mean, Krum's distances), so
            secure aggregation, which hands the server only the weighted mean, cannot serve it; ``False`` for
            FedAvg and the strategies that apply a server optimizer to FedAvg's mean.
        fedavg_aggregation: it aggregates exactly as FedAvg does (Flower's DP accountant accepts no other).
    """

    name: str
    flower_class: str
    settings: Mapping[str, str] = field(default_factory=dict)
    default_when_zero: tuple[str, ...] = ()
    least_updates: tuple[Callable[[int], int], str] | None = None
    needs_each_update: bool = False
    fedavg_aggregation: bool = False


#: Every strategy by name, in the order the help lists them.
STRATEGIES: Registry[StrategyEntry] = Registry("strategy")


_FLOWER = "flwr.serverapp.strategy:"
_ADAPTIVE = {"strategy.beta-1": "beta_1", "strategy.beta-2": "beta_2", "strategy.tau": "tau", "strategy.eta": "eta"}
_KRUM_RULE = (lambda f: 2 * f + 3, "2f + 3")

for _entry in (
    StrategyEntry("fedavg", _FLOWER + "FedAvg", fedavg_aggregation=True),
    StrategyEntry("fedavgm", _FLOWER + "FedAvgM", {"strategy.server-learning-rate": "server_learning_rate",
                                                  "strategy.server-momentum": "server_momentum"}),
    StrategyEntry("fedprox", _FLOWER + "FedProx", {"train.proximal-mu": "proximal_mu"}, fedavg_aggregation=True),
    StrategyEntry("fedadam", _FLOWER + "FedAdam", _ADAPTIVE, ("strategy.eta",)),
    StrategyEntry("fedyogi", _FLOWER + "FedYogi", _ADAPTIVE, ("strategy.eta",)),
    StrategyEntry("fedadagrad", _FLOWER + "FedAdagrad", {"strategy.eta": "eta", "strategy.tau": "tau"},
                  ("strategy.eta",)),
    StrategyEntry("fedmedian", _FLOWER + "FedMedian", needs_each_update=True),
    StrategyEntry("fedtrimmedavg", _FLOWER + "FedTrimmedAvg", {"strategy.trim-fraction": "beta"},
                  needs_each_update=True),
    StrategyEntry("krum", _FLOWER + "Krum", {"strategy.num-malicious-nodes": "num_malicious_nodes"},
                  least_updates=_KRUM_RULE, needs_each_update=True),
    StrategyEntry("multikrum", _FLOWER + "MultiKrum", {"strategy.num-malicious-nodes": "num_malicious_nodes",
                                                      "strategy.num-nodes-to-select": "num_nodes_to_select"},
                  least_updates=_KRUM_RULE, needs_each_update=True),
    StrategyEntry("bulyan", _FLOWER + "Bulyan", {"strategy.num-malicious-nodes": "num_malicious_nodes"},
                  least_updates=(lambda f: 4 * f + 3, "4f + 3"), needs_each_update=True),
):
    STRATEGIES.register(_entry)
