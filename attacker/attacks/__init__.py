"""The gradient-inversion attacks, one module each, behind one signature.

Every attack is ``run(victim, observations, settings, stop) -> list[Reconstruction]``: it
gets the global model and what the server observed of each update, nothing else. ``auto`` runs
the others as a portfolio and hands every result to the judge.
"""

from __future__ import annotations

from attacker.attacks.analytic import run_analytic
from attacker.attacks.auto import run_auto
from attacker.attacks.base import AttackSettings, NotApplicable, Reconstruction
from attacker.attacks.dlg import run_dlg, run_idlg
from attacker.attacks.ig import run_ig

ATTACKS = {"auto": run_auto, "dlg": run_dlg, "idlg": run_idlg, "ig": run_ig, "analytic": run_analytic}

__all__ = ["ATTACKS", "AttackSettings", "NotApplicable", "Reconstruction"]
