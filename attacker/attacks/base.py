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
from fl_sim.attack_registry import AttackEntry
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
                   compile=_compile_mode(config), seed=seed)

    def for_method(self, method: str, **changes) -> AttackSettings:
        """These settings for ``method`` (an attack of ``auto``'s portfolio).

        Unset iterations and lr take that method's default.
        """
        entry = ATTACK_ENTRIES[method]
        resolved = dataclasses.replace(self, method=method, iterations=self.iterations or entry.iterations,
                                       lr=self.lr or entry.lr)
        return dataclasses.replace(resolved, **changes)


#: The smallest budget per update under which ``attack.compile=auto`` compiles: compiling a step costs tens of
#: seconds per shape on a CPU, more than a short budget holds (it pays off over many rounds of long attacks).
COMPILE_MIN_BUDGET = 60.0


def _compile_mode(config: AttackConfig) -> str:
    """``attack.compile``, with ``auto`` turned ``off`` under a budget per update too short to pay for compiling."""
    short = 0 < config.budget_seconds < COMPILE_MIN_BUDGET
    return "off" if config.compile == "auto" and short else config.compile


def victim_step(victim: Victim, settings: AttackSettings, key: tuple, objective: Callable[..., torch.Tensor],
                count: int = 1, batched: bool = False, evaluations: int = 1) -> Step:
    """The step of ``objective`` in its first ``count`` arguments, kept on ``victim`` under ``key``.

    It is compiled as ``attack.compile`` decides, for an optimiser that evaluates it ``evaluations`` times per
    iteration (L-BFGS up to 20): the evaluations, not the iterations, are what a compile pays back over.

    ``key`` must name everything ``objective`` depends on: the first step built under it is reused by
    later updates and rounds of the same shape (a compiled step is compiled once per shape and run).
    """
    compiled = _compiles(victim, settings, evaluations)
    key = (*key, batched, compiled)
    if key not in victim.steps:
        victim.steps[key] = Step(objective, count, batched=batched, compiled=compiled, device=victim.device,
                                 strict=settings.compile == "on")
    return victim.steps[key]


def _compiles(victim: Victim, settings: AttackSettings, evaluations: int = 1) -> bool:
    """Whether ``attack.compile`` compiles a step on ``victim`` evaluated ``evaluations`` times per iteration."""
    return compile_wanted(settings.compile, settings.iterations * evaluations, victim.bottleneck is None,
                          victim.device)


def batch_slots(victim: Victim, settings: AttackSettings, tries: int) -> int:
    """How many tries a batched step of ``tries`` is built for: ``tries``, or the next power of two where it compiles.

    A compiled step is compiled once per batch size (tens of seconds on a CPU), and ``auto``'s race hands each
    stage whatever updates are left: rounding up to powers of two bounds the compiles at a few sizes, for at most
    twice the arithmetic of the tries themselves (the padding repeats a try and is dropped).
    """
    if not (_compiles(victim, settings) and settings.batched) or tries <= 1:
        return tries
    return 1 << (tries - 1).bit_length()


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
    #: the ``attack.method`` it is a run of (``ig`` for ``ig tv=0.01 replay``); empty: the settings' method
    method: str = ""
    #: the iterations its setting asks for (0: as many as it ran); the run is cut where it ran fewer
    needed: int = 0
    #: False where the budget stopped it before its setting's end (or its own stopping criterion)
    complete: bool = True
    #: ``auto``: the stages of attacks that apply to the update but never started on it, as (method, stage)
    unstarted: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True)
class InversionAttack:
    """One gradient-inversion attack (or a portfolio of them): how it runs, and on which updates it is known to work.

    ``entry`` is its declaration in :mod:`fl_sim.attack_registry` (its name, defaults and what it is); ``run(victim,
    observations, settings, stop) -> list[Reconstruction]`` gets the global model and what the server observed of
    each update, nothing else. ``why_not(victim, observation)`` says why the attack does not apply to an update (its
    published setting does not cover it), or ``None`` when it does; a portfolio (``auto``) has its attacks'
    instead. An attack runs only where it applies, and a verdict of "not leaked" needs one that did.
    """

    entry: AttackEntry
    run: Callable[..., list[Reconstruction]]
    why_not: Callable[[Victim, Observation], str | None] | None = None
    portfolio: tuple[InversionAttack, ...] = ()

    @property
    def name(self) -> str:
        """Its ``attack.method``, as its entry declares it."""
        return self.entry.name

    def reasons(self, victim: Victim, obs: Observation) -> dict[str, str | None]:
        """For this attack, or each of its portfolio, why it does not apply to ``obs`` (``None`` where it does)."""
        if self.portfolio:
            return {attack.name: attack.why_not(victim, obs) for attack in self.portfolio}
        return {self.name: self.why_not(victim, obs)}

    def applies(self, victim: Victim, obs: Observation) -> bool:
        """Whether this attack (or one of its portfolio) applies to ``obs``."""
        return any(reason is None for reason in self.reasons(victim, obs).values())


def plain_sgd_reason(obs: Observation) -> str | None:
    """Why ``obs``'s local training is not SGD that keeps every step a linear combination of the inputs' gradients."""
    if obs.train.optimizer != "sgd":
        return f"local {obs.train.optimizer} rescales every entry of the update on its own"
    if obs.train.weight_decay:
        return "weight decay adds the weights themselves to the update"
    return None
