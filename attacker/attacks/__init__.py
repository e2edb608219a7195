"""The gradient-inversion attacks, one module each, behind one interface (:class:`InversionAttack`).

Every attack runs as ``run(victim, observations, settings, stop) -> list[Reconstruction]``: it gets
the global model and what the server observed of each update, nothing else; ``why_not(victim,
observation)`` says where it does not apply. ``auto`` races the others as a portfolio and hands every
result to the judge. Which attack a name means, and its defaults, are declared once in
:mod:`fl_sim.attack_registry`.
"""

from __future__ import annotations

from attacker.attacks.base import AttackSettings, InversionAttack, Reconstruction
from fl_sim.attack_registry import ATTACKS as ATTACK_ENTRIES
from fl_sim.registry import load

#: Every attack by ``attack.method``, as :mod:`fl_sim.attack_registry` declares them.
INVERSIONS: dict[str, InversionAttack] = {entry.name: load(entry.attack) for entry in ATTACK_ENTRIES.values()}

__all__ = ["INVERSIONS", "InversionAttack", "AttackSettings", "Reconstruction"]
