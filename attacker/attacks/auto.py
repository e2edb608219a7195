"""``auto``: a worst-case verdict per update, AutoAttack's idea (Croce and Hein, ICML 2020) for gradient inversion.

A defense's reported leakage must not hinge on one attack's tuning, nor on an attack that ignores
what the server knows. Per update, every applicable attack of a small, fixed portfolio runs; the
judge scores each, and the verdict is the maximum, logged with the attack and settings that
reached it (every attack's result stays in the event). Choosing the maximum uses the ground
truth, as AutoAttack's per-sample worst case does: the verdict says what the best of these
attacks achieves on this update, an upper bound on any single one of them.

The portfolio, cheapest first (each defense-aware: a pruned upload is matched only where it
travelled, see :mod:`attacker.matching`):

1. ``analytic``: every model of the zoo ends in a linear layer with a bias, so the input of the
   first such layer is recovered exactly for one image (the image itself for an MLP; otherwise a
   feature vector, which PRECODE's encoder sees before its noise, inverted to an image).
2. Inverting Gradients at TV weights :data:`TV_GRID`; for updates other than one plain SGD step
   both ``approx`` and ``replay`` (the client's local training redone); against PRECODE also
   ``omit`` (omit-gradient) and, for one-step updates, ``restore`` (noise-restoring). All of
   them, for all updates of the round, run as vmap-batched optimisations, one per shape.
3. iDLG, for updates of one image and one step (L-BFGS runs update by update); against PRECODE
   with the omit-gradient matching.

``attack.iterations`` and ``attack.lr`` (when set) apply to the Adam-based attacks (IG and the
analytic attack's feature inversion); iDLG keeps its published 300 L-BFGS steps at lr 1.

``noise`` and ``dp`` uploads: no adaptive attack is attempted (the noise is fresh and unknown to
the server); the portfolio matches the noisy update as it is, and the event says so.

``attack.timeout-seconds`` bounds the whole portfolio: when it runs out, the attacks that finished
are judged and the event names the ones that did not run.
"""

from __future__ import annotations

from collections.abc import Callable

from attacker.attacks.analytic import run_analytic
from attacker.attacks.base import AttackSettings, NotApplicable, Reconstruction
from attacker.attacks.dlg import run_idlg
from attacker.attacks.ig import Variant, plan_attack, run_plans
from attacker.observation import Observation
from attacker.stop import AttackStopped, Stop
from attacker.victim import Victim
from fl_sim.attack_registry import ATTACKS as ATTACK_ENTRIES
from fl_sim.defense_registry import DEFENSES

#: Total-variation weights of the IG attacks: IG's default and two weaker priors, which real
#: 32x32 photos need (on them TV 0.1 over-smooths).
TV_GRID = (1e-1, 1e-2, 1e-3)

Stage = Callable[[], list[tuple[int, Reconstruction]]]


def run_auto(victim: Victim, observations: list[Observation], settings: AttackSettings,
             stop: Stop | None = None) -> list[Reconstruction]:
    """Every applicable attack on every update; each result carries all of them as ``candidates``."""
    candidates: list[list[Reconstruction]] = [[] for _ in observations]
    stages = {"analytic": lambda: _analytic(victim, observations, settings, stop),
              "ig": lambda: _inverting_gradients(victim, observations, settings, stop),
              "idlg": lambda: _idlg(victim, observations, settings, stop)}
    notes = [f"{obs.defense}: no adaptive attack for fresh noise; the noisy update is matched as it is"
             for obs in observations[:1] if DEFENSES[obs.defense].adds_noise]
    for name, stage in stages.items():
        try:
            for index, rec in stage():
                candidates[index].append(rec)
        except AttackStopped:
            if stop is None or not stop.timed_out or not all(candidates):
                raise  # the run's end, or nothing to judge for some update: the round is cut or timed out
            notes.append(f"attack.timeout-seconds ran out: {', '.join(list(stages)[list(stages).index(name):])} "
                         f"did not run")
            break
    return [Reconstruction(observation=obs, images=found[0].images, labels=found[0].labels, loss=found[0].loss,
                           iterations=sum(c.iterations for c in found), seconds=sum(c.seconds for c in found),
                           notes=notes, attack="auto", candidates=found)
            for obs, found in zip(observations, candidates)]


def _analytic(victim: Victim, observations: list[Observation], settings: AttackSettings,
              stop: Stop | None) -> list[tuple[int, Reconstruction]]:
    try:
        return list(enumerate(run_analytic(victim, observations, settings.for_method("analytic"), stop)))
    except NotApplicable:
        return []


def _inverting_gradients(victim: Victim, observations: list[Observation], settings: AttackSettings,
                         stop: Stop | None) -> list[tuple[int, Reconstruction]]:
    ig = settings.for_method("ig")
    owners, plans, label_cache = [], [], {}
    for index, obs in enumerate(observations):
        for variant in variants(victim, obs):
            owners.append(index)
            plans.append(plan_attack(victim, obs, variant, ig, label_cache, stop))
    return list(zip(owners, run_plans(victim, plans, ig, stop)))


def variants(victim: Victim, obs: Observation) -> list[Variant]:
    """The IG variants that apply to ``obs``: the TV grid x multi-step handling x PRECODE handling."""
    multisteps = ("approx",) if obs.exact_gradient else ("replay", "approx")
    stochastic = ("sample", "omit", "restore") if victim.bottleneck is not None else ("sample",)
    return [Variant(tv=tv, multistep=multistep, stochastic=mode) for tv in TV_GRID for multistep in multisteps
            for mode in stochastic if not (mode == "restore" and multistep == "replay")]


def _idlg(victim: Victim, observations: list[Observation], settings: AttackSettings,
          stop: Stop | None) -> list[tuple[int, Reconstruction]]:
    chosen = [i for i, obs in enumerate(observations) if obs.batch_size == 1 and obs.local_steps == 1]
    stochastic = "omit" if victim.bottleneck is not None else "sample"
    lbfgs = settings.for_method("idlg", iterations=ATTACK_ENTRIES["idlg"].iterations, lr=ATTACK_ENTRIES["idlg"].lr,
                                stochastic=stochastic)
    results = run_idlg(victim, [observations[i] for i in chosen], lbfgs, stop)
    for rec in results:
        rec.attack = "idlg" + (" omit" if stochastic == "omit" else "")
    return list(zip(chosen, results))
