"""The judge of a test's data set, built once per data configuration (measuring chance costs a second)."""

from __future__ import annotations

import functools

from attacker.judge import Judge
from fl_sim.config import AttackConfig, DataConfig
from fl_sim.data import load_dataset


@functools.lru_cache(maxsize=4)
def judge_for(data: DataConfig) -> Judge:
    """The judge a run on ``data`` gets with the default attack settings (positions: the training split's)."""
    return Judge.of_dataset(load_dataset(data), AttackConfig(), seed=0)
