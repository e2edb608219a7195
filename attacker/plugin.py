"""The attacker as a server plugin: collects each round's updates, attacks them, judges, logs.

Per client and round it writes an ``attack`` event (the client's defense, the attacks that applied
and why the others did not, method, iterations, seconds, device, label accuracy, per-image
MSE/PSNR/SSIM and identification margin, the images identified out of the images held, what
chance reaches at those counts, the verdict) and a PNG grid under ``reconstructions/round-<r>/``;
per round an ``attack-round`` event with the attack success rate over images held and over
clients, and the clients per verdict. Each round's attacks run within a budget of
``attack.budget-seconds`` per update and end in a verdict. A failing attack (an exception, an
out-of-memory error) is logged as ``attack-error`` and never reaches the federated run.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attacker.across_rounds import EXACT_ATTACKS, RecoveredSamples
from attacker.attacks import ATTACKS, Attack, AttackSettings, Reconstruction
from attacker.images import save_grid
from attacker.judge import ImageVerdict, Judge, Race, Verdict, count_accuracy, worst_case
from attacker.label_counts import update_label_counts
from attacker.lent_images import LentImages, lent
from attacker.observation import Observation
from attacker.stop import AttackStopped, Stop
from attacker.victim import Victim
from attacker.worker import BackgroundWorker
from fl_sim import events, protocol, seeds
from fl_sim.config import RunConfig
from fl_sim.devices import resolve_device, server_threads
from fl_sim.plugins import InterceptedUpdate, ServerPlugin
from fl_sim.results import ResultsWriter

logger = logging.getLogger(__name__)


_OUT_OF_MEMORY_HINT = ("; lower attack.max-clients (fewer attacks batched together), "
                       "set attack.batched=false, or attack.device=cpu")


@dataclass
class RoundJob:
    """The updates of one round to attack, each with its simulation-only audit (for the judge only)."""

    server_round: int
    observations: list[Observation]
    audits: list[Mapping[str, Any]]


class AttackerPlugin(ServerPlugin):
    """Runs ``attack.method`` on intercepted updates and logs, per client and round, whether it leaked."""

    name = "attacker"

    def __init__(self, config: RunConfig, writer: ResultsWriter, judge: Judge | None,
                 input_shape: tuple[int, int, int], num_classes: int, engine_ray: bool = False,
                 lent_images: LentImages | None = None) -> None:
        """Attack every update; judge with ``judge`` or ``lent_images``, or neither.

        ``judge`` holds the data set (fl-sim's own runs), ``lent_images`` the images clients lend (a user's app in
        simulation, :mod:`clients.audit`); with neither (a deployment) the verdicts are ``no ground truth``.
        """
        self.config = config
        self.attack = config.attack
        self.writer = writer
        self.judge = judge
        self.input_shape = input_shape
        self.num_classes = num_classes
        self.device = resolve_device(self.attack.device)
        sim = config.simulation
        torch.set_num_threads(server_threads(self.attack.threads, sim.num_clients, sim.client_cpus,
                                             clients_here=not sim.ray_address))
        self.settings = AttackSettings.from_config(self.attack, seed=config.seed)
        self._collected: list[tuple[Observation, Mapping[str, Any]]] = []
        self._victim: Victim | None = None
        self._recovered = RecoveredSamples()
        self._lent = lent_images
        self._pool = None
        if self.attack.workers:  # Ray only where there are workers: a deployment's ServerApp need not have it
            from attacker.pool import AttackPool
            self._pool = AttackPool(config, input_shape, num_classes, engine_ray=engine_ray)
        self._worker = None if self.attack.blocking else BackgroundWorker(self._attack_round, self.attack.queue_size)
        dp = config.central_dp
        #: central DP's noise is the server's own, added after this attack: it protects nothing from it
        clipped = " (clipped by the client)" if dp.clipping == "client-fixed" else ""
        self._central_dp_note = [] if dp.clipping == "off" else [
            f"central DP ({dp.clipping} clipping): the server adds its noise to the mean after it has seen this "
            f"update, which is attacked as it arrived{clipped}; its epsilon bounds those who see the global model, "
            f"not the server"]

    @property
    def pending(self) -> int:
        """Rounds queued or being attacked in the background."""
        return self._worker.pending if self._worker else 0

    def on_update(self, update: InterceptedUpdate) -> None:
        """Keep what the server saw of the update (and, apart, its audit) for this round's attack."""
        if (update.server_round - 1) % self.attack.every == 0:
            partitions = [client.partition_id for client in update.clients] or [update.partition_id]
            defense = "+".join(sorted({self.config.defense.of(partition) for partition in partitions}))
            audit = dict(update.audit)
            if self._lent is not None and lent(audit):  # a user's app: the lent images, named in the pool
                audit = {protocol.AUDIT_SAMPLES: self._lent.positions(audit)}
            self._collected.append((Observation.from_update(update, defense), audit))

    def on_round_end(self, server_round: int) -> None:
        """Attack the round's updates, inline (``attack.blocking``) or in the background."""
        chosen = self._sample(server_round, self._collected)
        self._collected = []
        if not chosen:
            return
        job = RoundJob(server_round, [obs for obs, _ in chosen], [audit for _, audit in chosen])
        if self._worker is None:
            self._attack_round(job, Stop())
        else:
            self._worker.submit(job)

    def close(self) -> None:
        """Let pending attacks finish (or cut them at ``attack.end-budget-seconds``), log those cut, stop the pool."""
        cut = self._worker.close(self.attack.end_budget_seconds) if self._worker is not None else []
        for job in cut:
            self.writer.emit(events.AttackCut(round=job.server_round, clients=len(job.observations),
                                              reason=f"end-of-run budget of {self.attack.end_budget_seconds} s spent"))
        if self._pool is not None:  # Flower's backend shuts Ray down once the run returns: the pool goes first
            self._pool.close()

    def account_for_earlier_rounds(self, earlier: list[events.Event], done: int) -> list[int]:
        """On resume: log ``attack-cut`` for each earlier round that was due an attack and has no outcome.

        Those attacks were pending when the run stopped; the server keeps no updates, so they
        cannot be redone, and the results must say so rather than look complete. Returns the rounds.
        """
        ended = {e.round for e in earlier if isinstance(e, (events.AttackRound, *events.ATTACK_ENDS_WITHOUT_SUMMARY))}
        lost = [r for r in range(1, done + 1) if (r - 1) % self.attack.every == 0 and r not in ended]
        for server_round in lost:
            self.writer.emit(events.AttackCut(
                round=server_round, clients=None,
                reason="pending when the run stopped; its updates were not kept, so it cannot be redone"))
        return lost

    def _sample(self, server_round: int, collected: list) -> list:
        limit = self.attack.max_clients
        if not limit or len(collected) <= limit:
            return collected
        rng = np.random.default_rng(seeds.ATTACK_SAMPLING.seed(self.config.seed, server_round))
        return [collected[i] for i in sorted(rng.choice(len(collected), size=limit, replace=False))]

    def _attack_round(self, job: RoundJob, run_stop: Stop) -> None:
        """Attack, judge and log one round, within its budget: ``attack.budget-seconds`` per update attacked.

        Each update is attacked by what applies to it (an update nothing applies to gets that verdict and its
        reasons); at the budget, the attacks return their best so far, which is judged. A failure is logged
        (``attack-error``) and the round skipped, so that the run always goes on.
        """
        start = time.perf_counter()
        attack = ATTACKS[self.settings.method]
        if self._lent is not None:
            self.judge = self._lent.judge()
        try:
            victim = self._victim = Victim.for_round(self._victim, self.config, self.input_shape, self.num_classes,
                                                     job.observations[0].global_arrays, self.device)
            reasons = [attack.reasons(victim, obs) for obs in job.observations]
            attacked = [i for i, why in enumerate(reasons) if any(reason is None for reason in why.values())]
            race = Race(self.judge, [job.audits[i].get(protocol.AUDIT_SAMPLES) for i in attacked]) \
                if self.judge is not None else None
            found, failed = self._reconstruct(job, attack, victim, attacked, run_stop, race)
            judged = {} if race is None else race.verdicts
            outcomes = [self._report(victim, job.observations[i], found.get(i), job.audits[i], reasons[i], judged)
                        for i in range(len(job.observations)) if i not in failed]
            self._summarise(job.server_round, outcomes, round(time.perf_counter() - start, 3),
                            summed=max(obs.clients for obs in job.observations))
        except AttackStopped:
            raise  # the end-of-run budget: the worker logs the round as cut
        except Exception as err:  # noqa: BLE001 - an attack must never stop the federated run
            self._log_error(job.server_round, len(job.observations), err)
        finally:
            if self.device.type == "cuda":
                torch.cuda.empty_cache()  # what a failed attack held must not starve the next

    def _reconstruct(self, job: RoundJob, attack: Attack, victim: Victim, attacked: list[int], run_stop: Stop,
                     race: Race | None) -> tuple[dict[int, Reconstruction], set[int]]:
        """The reconstructions of the updates at ``attacked`` (positions in the round), and those whose attack failed.

        Here, one optimisation for the round (``auto`` raced by the judge) within the round's budget; on the pool,
        one job per worker, each within ``attack.budget-seconds`` per update (a failed job is its updates'
        ``attack-error``).
        """
        if not attacked:
            return {}, set()
        observations = [job.observations[i] for i in attacked]
        if self._pool is None:
            stop = Stop(self.attack.budget_seconds * len(attacked), parent=run_stop)
            racing = {"settled": race} if attack.portfolio and race is not None else {}
            return dict(zip(attacked, attack.run(victim, observations, self.settings, stop, **racing))), set()
        results = self._pool.attack(observations, self.settings, self.attack.budget_seconds, run_stop)
        failed = set()
        for i, result in zip(attacked, results):
            if isinstance(result, Exception):
                failed.add(i)
                self._log_error(job.server_round, 1, result, f" (partition {job.observations[i].partition_id})")
        return {i: rec for i, rec in zip(attacked, results) if i not in failed}, failed

    def _log_error(self, server_round: int, clients: int, err: Exception, where: str = "") -> None:
        """Log an attack that failed (``attack-error``), with what to lower when it ran out of memory."""
        hint = _OUT_OF_MEMORY_HINT if isinstance(err, torch.OutOfMemoryError) else ""
        logger.error("round %d: attack %s failed%s: %s%s", server_round, self.settings.method, where, err, hint)
        self.writer.emit(events.AttackError(round=server_round, method=self.settings.method, clients=clients,
                                            error=f"{type(err).__name__}{where}: {err}{hint}"))

    def _report(self, victim: Victim, obs: Observation, rec: Reconstruction | None, audit: Mapping[str, Any],
                reasons: Mapping[str, str | None], judged: dict[int, Verdict]) -> tuple[str, Verdict | None]:
        """Judge the reconstruction, save its grid and log the ``attack`` event; return the verdict and its scores.

        For ``auto``, every attack of the portfolio is judged and the worst case kept. ``rec`` is None when no
        attack applies to the update. The update's label counts are estimated and judged either way.
        """
        applied = [name for name, reason in reasons.items() if reason is None]
        not_applied = {name: reason for name, reason in reasons.items() if reason is not None}
        indices = audit.get(protocol.AUDIT_SAMPLES)
        counts = update_label_counts(victim, obs)
        protocol_fields = {
            "clients": obs.clients if obs.clients > 1 else None,
            "defense": obs.defense, "applied": applied, "not_applied": not_applied,
            "label_counts": None if counts is None else counts.tolist(),
            "label_count_accuracy": None if counts is None or self.judge is None or not indices else
            round(count_accuracy(counts.tolist(), self.judge.truth(indices).labels.tolist()), 4)}
        if rec is None:
            self.writer.emit(events.Attack(
                round=obs.server_round, node_id=obs.node_id, partition_id=obs.partition_id,
                method=self.settings.method, attack="", iterations=0, seconds=0.0, device=str(self.device), images=0,
                labels=[], loss=None, label_accuracy=None, per_image=None, success=None, image=None,
                notes=[f"{name}: {reason}" for name, reason in not_applied.items()], portfolio=None,
                verdict=events.NO_ATTACK_APPLIES, **protocol_fields))
            return events.NO_ATTACK_APPLIES, None
        candidates = rec.candidates or [rec]
        verdicts: list[Verdict | None] = [None] * len(candidates)
        chosen, image_path = 0, None
        matched = None
        if self.judge is not None and indices:
            verdicts = [judged.get(id(c)) or self.judge(c.images, c.labels, held=indices) for c in candidates]
            chosen = worst_case(verdicts)
            matched = self.judge.truth(indices).tensors()[0][[v.match for v in verdicts[chosen].images]]
        if self.attack.save_images:  # without ground truth (a deployment): the reconstruction alone
            client = obs.partition_id if obs.partition_id is not None else f"node-{obs.node_id}"
            name = "secure-aggregate" if obs.clients > 1 else f"client-{client}"
            image_path = f"reconstructions/round-{obs.server_round}/{name}.png"
            save_grid(self.writer.directory / image_path, matched, candidates[chosen].images)
        best, verdict = candidates[chosen], verdicts[chosen]  # without ground truth: the first attack run
        outcome = events.NO_GROUND_TRUTH if verdict is None else events.LEAKED if verdict.leaked else \
            events.NOT_LEAKED
        self.writer.emit(events.Attack(
            round=obs.server_round, node_id=obs.node_id, partition_id=obs.partition_id,
            method=self.settings.method, attack=best.attack, iterations=best.iterations,
            seconds=round(rec.seconds, 3), device=str(self.device), images=len(best.images),
            labels=best.labels.tolist(), loss=best.loss,
            label_accuracy=verdict.label_accuracy if verdict else None,
            per_image=[_image_entry(v) for v in verdict.images] if verdict else None,
            held=verdict.held if verdict else None,
            images_identified=verdict.images_identified if verdict else None,
            iip=verdict.iip if verdict else None,
            chance=verdict.chance.as_event() if verdict else None,
            success=verdict.leaked if verdict else None, image=image_path,
            notes=(best.notes if best is rec else best.notes + rec.notes) + self._central_dp_note,
            portfolio=[_portfolio_entry(c, v) for c, v in zip(candidates, verdicts)] if rec.candidates else None,
            verdict=outcome, **protocol_fields, **self._samples(obs, candidates, verdict, indices)))
        return outcome, verdict

    def _samples(self, obs: Observation, candidates: list[Reconstruction], verdict: Verdict | None,
                 indices: list[int] | None) -> dict[str, Any]:
        """The ``attack`` event's fields on samples across rounds: those leaked, those an exact attack read again."""
        fields: dict[str, Any] = {}
        exact = [c for c in candidates if c.attack in EXACT_ATTACKS]
        if exact:
            client = obs.partition_id if obs.partition_id is not None else obs.node_id
            fields["recurring"] = self._recovered.add(client, exact[0].images)
            fields["client_confirmed"] = self._recovered.confirmed(client)
        if verdict is not None:
            held = Judge.positions(indices)
            fields["leaked_samples"] = sorted({held[image.match] for image in verdict.images if image.leaked})
        return fields

    def _summarise(self, server_round: int, outcomes: list[tuple[str, Verdict | None]], seconds: float,
                   summed: int = 1) -> None:
        judged = [v for _, v in outcomes if v is not None]
        images = [image for v in judged for image in v.images]
        held = sum(v.held for v in judged)
        ssims = [image.scores.ssim for image in images]
        summary = {
            "round": server_round, "method": self.settings.method, "clients": len(outcomes),
            "clients_judged": len(judged), "clients_leaked": sum(v.leaked for v in judged),
            "client_success_rate": sum(v.leaked for v in judged) / len(judged) if judged else None,
            "images": len(images), "images_held": held, "images_leaked": sum(i.leaked for i in images),
            "images_identified": sum(i.identified for i in images),
            "image_success_rate": sum(i.leaked for i in images) / held if held else None,
            "label_accuracy": statistics.mean(v.label_accuracy for v in judged) if judged else None,
            "best_ssim": max(ssims, default=None), "median_ssim": statistics.median(ssims) if ssims else None,
            "best_psnr": max((i.scores.psnr for i in images), default=None),
            "median_psnr": statistics.median(i.scores.psnr for i in images) if images else None,
            "seconds": seconds, "device": str(self.device), "queue": max(self.pending - 1, 0),
            "verdicts": {name: sum(outcome == name for outcome, _ in outcomes) for name in events.VERDICTS},
            "summed": summed if summed > 1 else None,
        }
        self.writer.emit(events.AttackRound(**summary))


def _portfolio_entry(rec: Reconstruction, verdict: Verdict | None) -> events.PortfolioEntry:
    """One attack of ``auto``'s portfolio as the event lists it."""
    entry = events.PortfolioEntry(attack=rec.attack, iterations=rec.iterations, seconds=round(rec.seconds, 3),
                                  loss=rec.loss)
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
