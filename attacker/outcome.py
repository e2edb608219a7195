"""Which verdict an attacked update earns, and on what ground: the one place the three outcomes are decided.

- ``leaked``: a reconstruction of an attack that applied identifies one of the update's images above chance, at
  the SSIM threshold (:mod:`attacker.judge`), however far the other attacks went;
- ``not leaked``: none does, and every attack that applies ran to the end of its setting (its published one, or
  the project's documented one: IG's iterations, CPA's 25,000 steps, iDLG's 300 L-BFGS steps) or stopped by its
  own criterion;
- ``undecided``: none does, and an attack that applies was cut short by the budget or never started. A deep pass
  (:mod:`attacker.deep_pass`) may settle it later.

``no attack applies`` and ``no ground truth`` are decided before (:class:`attacker.plugin.AttackerPlugin`).
"""

from __future__ import annotations

from attacker.attacks.base import Reconstruction
from attacker.judge import Verdict
from fl_sim import events


def attack_runs(rec: Reconstruction, applied: list[str]) -> list[events.AttackRun]:
    """Per attack that applied to ``rec``'s update, how far it went: the fewest iterations any of its stages ran.

    An attack with no result and no stage left unstarted did not run because the update had leaked first (the
    race); it counts as not complete, which only a ``leaked`` verdict allows.
    """
    results = rec.candidates or [rec]
    runs = []
    for name in applied:
        own = [c for c in results if (c.method or rec.method) == name]
        unstarted = [stage for method, stage in rec.unstarted if method == name]
        iterations = 0 if unstarted or not own else min(c.iterations for c in own)
        runs.append(events.AttackRun(
            attack=name, iterations=iterations, needed=max((c.needed or c.iterations for c in own), default=0),
            seconds=round(sum(c.seconds for c in own), 3), complete=bool(own) and not unstarted and all(
                c.complete for c in own), unstarted=unstarted))
    return runs


def decide(verdict: Verdict | None, runs: list[events.AttackRun]) -> str:
    """The update's verdict (one of :data:`fl_sim.events.VERDICTS`) from its judgement and its attacks' runs."""
    if verdict is None:
        return events.NO_GROUND_TRUTH
    if verdict.leaked:
        return events.LEAKED
    return events.NOT_LEAKED if runs and all(run.complete for run in runs) else events.UNDECIDED


def why_undecided(runs: list[events.AttackRun]) -> str:
    """The note of an ``undecided`` verdict: each attack that applies and did not run in full, and how far it got."""
    return "undecided: nothing leaked, but " + "; ".join(_how_far(run) for run in runs if not run.complete)


def _how_far(run: events.AttackRun) -> str:
    """How far an attack that was cut got: its iterations of those it needs, and its stages that never started."""
    if not run.needed:
        return f"{run.attack} never started"
    unstarted = f" ({', '.join(run.unstarted)} never started)" if run.unstarted else ""
    return f"{run.attack} ran {run.iterations} of its {run.needed} iterations{unstarted}"
