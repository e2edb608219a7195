"""The gradient-inversion attacks, one module each, behind one signature.

Every attack is ``run(victim, observations, settings, stop) -> list[Reconstruction]``: it
gets the global model and what the server observed of each update, nothing else. ``auto`` runs
the others as a portfolio and hands every result to the judge. Which runner a name means, and its
defaults, are declared once in :mod:`fl_sim.attack_registry`.
"""

from __future__ import annotations

from attacker.attacks.base import AttackSettings, NotApplicable, Reconstruction
from fl_sim.attack_registry import ATTACKS as ATTACK_ENTRIES
from fl_sim.registry import load

#: Every attack's runner by ``attack.method``, as :mod:`fl_sim.attack_registry` declares them.
ATTACKS = {entry.name: load(entry.runner) for entry in ATTACK_ENTRIES.values()}

__all__ = ["ATTACKS", "AttackSettings", "NotApplicable", "Reconstruction"]
