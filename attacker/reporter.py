"""What the curious server writes of its attacks: per update an ``attack`` event and its image, per round a summary.

The reporter writes what the assessor (:mod:`attacker.assessor`) concluded of each update: it saves the
reconstruction grid and emits the ``attack`` event; the round's ``attack-round`` summary counts the verdicts.
It serves the round's attack and the deep pass alike, which is why an event says its ``phase``.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
from dataclasses import dataclass

import torch

from attacker.assessor import Assessment
from attacker.attacks import Reconstruction
from attacker.images import save_grid
from attacker.judge import ImageVerdict, Verdict
from attacker.observation import Observation
from attacker.outcome import why_undecided
from fl_sim import events
from fl_sim.config import CentralDpConfig
from fl_sim.results import ResultsWriter

logger = logging.getLogger(__name__)

_OUT_OF_MEMORY_HINT = ("; lower attack.max-clients (fewer attacks batched together), "
                       "set attack.batched=false, or attack.device=cpu")


@dataclass(frozen=True)
class Outcome:
    """One attacked update's verdict (:data:`fl_sim.events.VERDICTS`), its judgement (None without one), its event."""

    verdict: str
    judged: Verdict | None
    event: events.Attack


class Reporter:
    """Saves reconstructions and writes the attacker's events into ``writer``."""

    def __init__(self, writer: ResultsWriter, method: str, device: torch.device, save_images: bool,
                 notes: list[str] | None = None) -> None:
        """Report attacks of ``method`` run on ``device``; ``notes`` go on every event (e.g. what central DP does)."""
        self.writer = writer
        self.method = method
        self.device = device
        self.save_images = save_images
        self.notes = notes or []

    def report(self, obs: Observation, rec: Reconstruction | None, assessment: Assessment,
               phase: str = events.ROUND_PHASE, keep: bool = False) -> Outcome:
        """Save the grid of ``rec`` (the attack's result on ``obs``, None where none applies) and write its event.

        ``assessment`` is what the assessor concluded of it; ``keep``: an ``undecided`` verdict is provisional, its
        update kept for a deep pass.
        """
        common = {
            "round": obs.server_round, "node_id": obs.node_id, "partition_id": obs.partition_id,
            "method": self.method, "device": str(self.device), "phase": phase,
            "clients": obs.clients if obs.clients > 1 else None, "defense": obs.defense,
            "applied": assessment.applied, "not_applied": assessment.not_applied,
            "label_counts": assessment.label_counts, "label_count_accuracy": assessment.label_count_accuracy}
        if rec is None:
            event = events.Attack(
                attack="", iterations=0, seconds=0.0, images=0, labels=[], loss=None, label_accuracy=None,
                per_image=None, success=None, image=None, portfolio=None, verdict=events.NO_ATTACK_APPLIES,
                notes=[f"{name}: {reason}" for name, reason in assessment.not_applied.items()], **common)
            self.writer.emit(event)
            return Outcome(events.NO_ATTACK_APPLIES, None, event)
        best, verdict, image_path = assessment.best, assessment.judgement, None
        if self.save_images:  # without ground truth (a deployment): the reconstruction alone
            client = obs.partition_id if obs.partition_id is not None else f"node-{obs.node_id}"
            name = "secure-aggregate" if obs.clients > 1 else f"client-{client}"
            image_path = f"reconstructions/round-{obs.server_round}/{name}{'-deep' if phase == 'deep' else ''}.png"
            save_grid(self.writer.directory / image_path, assessment.matched, best.images)
        notes = (best.notes if best is rec else best.notes + rec.notes) + self.notes
        if assessment.verdict == events.UNDECIDED:
            notes.append(why_undecided(assessment.runs) + ("; kept for a deep pass (fl-sim audit)" if keep else ""))
        event = events.Attack(
            attack=best.attack, iterations=best.iterations, seconds=round(rec.seconds, 3), images=len(best.images),
            labels=best.labels.tolist(), loss=best.loss,
            label_accuracy=verdict.label_accuracy if verdict else None,
            per_image=[_image_entry(v) for v in verdict.images] if verdict else None,
            held=verdict.held if verdict else None,
            images_identified=verdict.images_identified if verdict else None,
            iip=verdict.iip if verdict else None,
            chance=verdict.chance.as_event() if verdict else None,
            success=verdict.leaked if verdict else None, image=image_path, notes=notes,
            portfolio=[_portfolio_entry(c, v) for c, v in zip(assessment.candidates, assessment.verdicts)]
            if rec.candidates else None,
            verdict=assessment.verdict, runs=assessment.runs,
            provisional=True if keep and assessment.verdict == events.UNDECIDED else None,
            **common, **assessment.samples)
        self.writer.emit(event)
        return Outcome(assessment.verdict, verdict, event)

    def summarise(self, server_round: int, outcomes: list[Outcome], seconds: float, queue: int,
                  summed: int = 1) -> None:
        """Write the round's ``attack-round`` event: leak rates over the judged updates, the verdicts counted."""
        judged = [o.judged for o in outcomes if o.judged is not None]
        images = [image for v in judged for image in v.images]
        held = sum(v.held for v in judged)
        ssims = [image.scores.ssim for image in images]
        self.writer.emit(events.AttackRound(
            round=server_round, method=self.method, clients=len(outcomes),
            clients_judged=len(judged), clients_leaked=sum(v.leaked for v in judged),
            client_success_rate=sum(v.leaked for v in judged) / len(judged) if judged else None,
            images=len(images), images_held=held, images_leaked=sum(i.leaked for i in images),
            images_identified=sum(i.identified for i in images),
            image_success_rate=sum(i.leaked for i in images) / held if held else None,
            label_accuracy=statistics.mean(v.label_accuracy for v in judged) if judged else None,
            best_ssim=max(ssims, default=None), median_ssim=statistics.median(ssims) if ssims else None,
            best_psnr=max((i.scores.psnr for i in images), default=None),
            median_psnr=statistics.median(i.scores.psnr for i in images) if images else None,
            seconds=seconds, device=str(self.device), queue=queue,
            verdicts={name: sum(o.verdict == name for o in outcomes) for name in events.VERDICTS},
            summed=summed if summed > 1 else None))

    def error(self, server_round: int, clients: int, err: Exception, where: str = "") -> None:
        """Log an attack that failed (``attack-error``), with what to lower when it ran out of memory."""
        hint = _OUT_OF_MEMORY_HINT if isinstance(err, torch.OutOfMemoryError) else ""
        logger.error("round %d: attack %s failed%s: %s%s", server_round, self.method, where, err, hint)
        self.writer.emit(events.AttackError(round=server_round, method=self.method, clients=clients,
                                            error=f"{type(err).__name__}{where}: {err}{hint}"))


def central_dp_note(dp: CentralDpConfig) -> list[str]:
    """The note every ``attack`` event carries under central DP: its noise is the server's own, added after."""
    if dp.clipping == "off":
        return []
    clipped = " (clipped by the client)" if dp.clipping == "client-fixed" else ""
    return [f"central DP ({dp.clipping} clipping): the server adds its noise to the mean after it has seen this "
            f"update, which is attacked as it arrived{clipped}; its epsilon bounds those who see the global model, "
            f"not the server"]


def _portfolio_entry(rec: Reconstruction, verdict: Verdict | None) -> events.PortfolioEntry:
    """One attack of ``auto``'s portfolio as the event lists it."""
    entry = events.PortfolioEntry(attack=rec.attack, iterations=rec.iterations, seconds=round(rec.seconds, 3),
                                  loss=rec.loss, needed=rec.needed or rec.iterations, complete=rec.complete)
    if verdict is None:
        return entry
    return dataclasses.replace(entry, success=verdict.leaked, images_leaked=verdict.images_leaked,
                               images_identified=verdict.images_identified, best_ssim=verdict.best_ssim,
                               mean_ssim=verdict.mean_ssim, label_accuracy=verdict.label_accuracy)


def _image_entry(image: ImageVerdict) -> events.ImageScore:
    """One judged image as the event lists it."""
    return events.ImageScore(mse=image.scores.mse, psnr=image.scores.psnr, ssim=image.scores.ssim, leaked=image.leaked,
                             margin_db=image.margin_db, identified=image.identified,
                             label_recovered=image.label_recovered)
