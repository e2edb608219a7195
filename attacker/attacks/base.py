"""What every attack takes and returns."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from attacker.observation import Observation
from attacker.steps import Step, compile_wanted
from attacker.victim import Victim
from fl_sim.attack_registry import ATTACKS as ATTACK_ENTRIES
from fl_sim.config import AttackConfig


@dataclass(frozen=True)
class AttackSettings:
    """An attack's hyperparameters, with the method's defaults filled in."""

    method: str
    iterations: int
    lr: float
    tv: float
    restarts: int
    multistep: str
    stochastic: str
    max_images: int
    batched: bool
    compile: str
    seed: int

    @classmethod
    def from_config(cls, config: AttackConfig, seed: int) -> AttackSettings:
        """Resolve ``attack.*`` settings; 0 means the method's published default."""
        return cls(method=config.method,
                   iterations=config.iterations or ATTACK_ENTRIES[config.method].iterations,
                   lr=config.lr or ATTACK_ENTRIES[config.method].lr,
                   tv=config.tv, restarts=config.restarts, multistep=config.multistep,
                   stochastic=config.stochastic, max_images=config.max_images, batched=config.batched,
                   compile=config.compile, seed=seed)

    def for_method(self, method: str, **changes) -> AttackSettings:
        """These settings for ``method`` (an attack of ``auto``'s portfolio).

        Unset iterations and lr take that method's default.
        """
        entry = ATTACK_ENTRIES[method]
        resolved = dataclasses.replace(self, method=method, iterations=self.iterations or entry.iterations,
                                       lr=self.lr or entry.lr)
        return dataclasses.replace(resolved, **changes)


def victim_step(victim: Victim, settings: AttackSettings, key: tuple, objective: Callable[..., torch.Tensor],
                count: int = 1, batched: bool = False) -> Step:
    """The step of ``objective`` in its first ``count`` arguments, kept on ``victim`` under ``key``.

    It is compiled as ``attack.compile`` decides.

    ``key`` must name everything ``objective`` depends on: the first step built under it is reused by
    later updates and rounds of the same shape (a compiled step is compiled once per shape and run).
    """
    compiled = compile_wanted(settings.compile, settings.iterations, victim.bottleneck is None, victim.device)
    key = (*key, batched, compiled)
    if key not in victim.steps:
        victim.steps[key] = Step(objective, count, batched=batched, compiled=compiled, device=victim.device,
                                 strict=settings.compile == "on")
    return victim.steps[key]


@dataclass
class Reconstruction:
    """An attack's result for one observed update: images in [0, 1] ``[B, C, H, W]`` and labels ``[B]``."""

    observation: Observation
    images: torch.Tensor
    labels: torch.Tensor
    loss: float
    iterations: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    #: which attack and settings made it, e.g. ``ig tv=0.01 replay``
    attack: str = ""
    #: ``auto``: every attack of the portfolio on this update, for the judge to take the worst case
    candidates: list[Reconstruction] = field(default_factory=list)


class NotApplicable(ValueError):
    """The attack cannot run on this model or update (e.g. analytic recovery without a linear first layer)."""
