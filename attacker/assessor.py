"""What the curious server concludes of one attacked update, each part computed once: the assessment.

The assessor judges every result an attack returned (the judge is the only place ground truth enters; the race's
judgements are reused, not redone), keeps the worst case, decides the update's verdict from how far each attack
that applies went (:mod:`attacker.outcome`), estimates and scores its label counts, and banks what exact attacks
read back, so that a sample recovered again in a later round is counted as confirmed
(:mod:`attacker.across_rounds`). The reporter (:mod:`attacker.reporter`) writes what it concludes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from attacker.across_rounds import RecoveredSamples
from attacker.attacks import Reconstruction
from attacker.judge import Judge, Verdict, count_accuracy, worst_case
from attacker.label_counts import update_label_counts
from attacker.observation import Observation
from attacker.outcome import attack_runs, decide
from attacker.victim import Victim
from fl_sim import events, protocol
from fl_sim.attack_registry import ATTACKS as ATTACK_ENTRIES


@dataclass(frozen=True)
class Assessment:
    """One update's assessment: which attacks applied, each result judged, the worst case, the verdict.

    Attributes:
        applied: the attacks that apply to the update; ``not_applied`` the others, with why not.
        label_counts: the images per class the update's bias tells (None where it does not); scored against the
            truth in ``label_count_accuracy`` where there is one.
        candidates: every result the attack returned (``auto``: one per stage that ran; empty where no attack
            applies), ``verdicts`` their judgements (None without ground truth), ``chosen`` the worst case's place.
        matched: the true images the worst case's reconstructions were matched to (None without ground truth).
        runs: how far each attack that applies went; ``verdict`` the outcome (:data:`fl_sim.events.VERDICTS`).
        samples: the event's fields on samples across rounds (leaked, read again, confirmed).
    """

    applied: list[str]
    not_applied: dict[str, str]
    label_counts: list[int] | None
    label_count_accuracy: float | None
    candidates: list[Reconstruction] = field(default_factory=list)
    verdicts: list[Verdict | None] = field(default_factory=list)
    chosen: int = 0
    matched: torch.Tensor | None = None
    runs: list[events.AttackRun] = field(default_factory=list)
    verdict: str = events.NO_ATTACK_APPLIES
    samples: dict[str, Any] = field(default_factory=dict)

    @property
    def best(self) -> Reconstruction:
        """The worst case: the result that identifies the client's images best (without ground truth, the first)."""
        return self.candidates[self.chosen]

    @property
    def judgement(self) -> Verdict | None:
        """The worst case's judgement, or None without ground truth (or where no attack applies)."""
        return self.verdicts[self.chosen] if self.verdicts else None


class Assessor:
    """Assesses attacked updates; holds what exact attacks read back of each client across rounds."""

    def __init__(self) -> None:
        self._recovered = RecoveredSamples()

    def assess(self, judge: Judge | None, victim: Victim, obs: Observation, rec: Reconstruction | None,
               audit: Mapping[str, Any], reasons: Mapping[str, str | None], judged: Mapping[int, Verdict],
               bank: bool = True) -> Assessment:
        """Assess ``rec`` (None where no attack applies to ``obs``), the attack's result on ``obs``.

        ``reasons``: per attack, why it does not apply (None where it does); ``judged``: the race's judgements, by
        result id, which are not redone; ``audit``: the simulation's truth of the update, for the judge alone;
        ``bank``: exact attacks' images are banked (once per update: its round's attack does it).
        """
        applied = [name for name, reason in reasons.items() if reason is None]
        not_applied = {name: reason for name, reason in reasons.items() if reason is not None}
        indices = audit.get(protocol.AUDIT_SAMPLES)
        counts = update_label_counts(victim, obs)
        scored = None if counts is None or judge is None or not indices else round(
            count_accuracy(counts.tolist(), judge.truth(indices).labels.tolist()), 4)
        labels = {"label_counts": None if counts is None else counts.tolist(), "label_count_accuracy": scored}
        if rec is None:
            return Assessment(applied, not_applied, **labels)
        candidates = rec.candidates or [rec]
        verdicts: list[Verdict | None] = [None] * len(candidates)
        chosen, matched = 0, None
        if judge is not None and indices:
            verdicts = [judged.get(id(c)) or judge(c.images, c.labels, held=indices) for c in candidates]
            chosen = worst_case(verdicts)
            matched = judge.truth(indices).tensors()[0][[v.match for v in verdicts[chosen].images]]
        runs = attack_runs(rec, applied)
        return Assessment(applied, not_applied, **labels, candidates=candidates, verdicts=verdicts, chosen=chosen,
                          matched=matched, runs=runs, verdict=decide(verdicts[chosen], runs),
                          samples=self._samples(obs, candidates, verdicts[chosen], indices, bank))

    def _samples(self, obs: Observation, candidates: list[Reconstruction], verdict: Verdict | None,
                 indices: list[int] | None, bank: bool) -> dict[str, Any]:
        """The ``attack`` event's fields on samples across rounds: those leaked, those an exact attack read again."""
        fields: dict[str, Any] = {}
        exact = [c for c in candidates if c.method in ATTACK_ENTRIES and ATTACK_ENTRIES[c.method].exact]
        if exact and bank:
            client = obs.partition_id if obs.partition_id is not None else obs.node_id
            fields["recurring"] = self._recovered.add(client, exact[0].images)
            fields["client_confirmed"] = self._recovered.confirmed(client)
        if verdict is not None:
            held = Judge.positions(indices)
            fields["leaked_samples"] = sorted({held[image.match] for image in verdict.images if image.leaked})
        return fields
