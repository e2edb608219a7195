"""The attacker as a server plugin: collects each round's updates, attacks them, judges, logs.

Per client and round it writes an ``attack`` event (the client's defense, the attacks that applied
and why the others did not, how far each went, method, iterations, seconds, device, label accuracy,
per-image MSE/PSNR/SSIM and identification margin, the images identified out of the images held,
what chance reaches at those counts, the verdict) and a PNG grid under ``reconstructions/round-<r>/``;
per round an ``attack-round`` event with the attack success rate over images held and over
clients, and the clients per verdict. Each round's attacks share a budget of ``attack.budget-seconds``
per update and end in a verdict: ``leaked``, ``not leaked`` where every attack that applies ran in
full, ``undecided`` where one was cut (:mod:`attacker.outcome`). An undecided update is kept and, after
the last round, attacked on within ``attack.deep-budget-seconds`` (:mod:`attacker.deep_pass`). A failing
attack (an exception, an out-of-memory error) is logged as ``attack-error`` and never reaches the
federated run. A client whose pruning feeds back what it drops (DGP) has its uploads summed over every round it
took part in, attacked or not (:class:`attacker.across_rounds.UploadSums`), for the ``across-rounds`` attack.

The plugin only collects, samples and schedules: :class:`attacker.runner.AttackRunner` runs the attacks,
:class:`attacker.assessor.Assessor` judges and decides, :class:`attacker.reporter.Reporter` writes.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from attacker.across_rounds import UploadSums
from attacker.assessor import Assessor
from attacker.deep_pass import deep_pass, finished_updates
from attacker.judge import Judge
from attacker.lent_images import LentImages, lent
from attacker.observation import Observation
from attacker.reporter import Reporter, central_dp_note
from attacker.runner import AttackRunner
from attacker.stop import AttackStopped, Stop
from attacker.undecided import LENT, UndecidedStore
from attacker.worker import BackgroundWorker
from fl_sim import events, protocol, seeds
from fl_sim.config import RunConfig
from fl_sim.devices import server_threads
from fl_sim.models import Architecture
from fl_sim.plugins import InterceptedUpdate, ServerPlugin
from fl_sim.results import ResultsWriter, load_events


@dataclass
class RoundJob:
    """The updates of one round to attack, each with its simulation-only audit (for the judge only)."""

    server_round: int
    observations: list[Observation]
    audits: list[Mapping[str, Any]]


class AttackerPlugin(ServerPlugin):
    """Runs ``attack.method`` on intercepted updates and logs, per client and round, whether it leaked."""

    name = "attacker"

    def __init__(self, config: RunConfig, writer: ResultsWriter, judge: Judge | None, architecture: Architecture,
                 engine_ray: bool = False, lent_images: LentImages | None = None) -> None:
        """Attack every update; judge with ``judge`` or ``lent_images``, or neither.

        ``judge`` holds the data set (fl-sim's own runs), ``lent_images`` the images clients lend (a user's app in
        simulation, :mod:`clients.audit`); with neither (a deployment) the verdicts are ``no ground truth``.
        """
        self.config = config
        self.attack = config.attack
        self.writer = writer
        self.judge = judge
        sim = config.simulation
        torch.set_num_threads(server_threads(self.attack.threads, sim.num_clients, sim.client_cpus,
                                             clients_here=not sim.ray_address))
        self.runner = AttackRunner(self.attack, architecture, config.seed, sim.ray_address, engine_ray=engine_ray)
        self.reporter = Reporter(writer, self.runner.settings.method, self.runner.device, self.attack.save_images,
                                 notes=central_dp_note(config.central_dp))
        self.assessor = Assessor()
        self.undecided = UndecidedStore(writer.directory)
        self._collected: list[tuple[Observation, Mapping[str, Any]]] = []
        self._upload_sums = UploadSums()
        self._lent = lent_images
        self._worker = None if self.attack.blocking else BackgroundWorker(self._attack_round, self.attack.queue_size)

    @property
    def pending(self) -> int:
        """Rounds queued or being attacked in the background."""
        return self._worker.pending if self._worker else 0

    def on_update(self, update: InterceptedUpdate) -> None:
        """Keep what the server saw of the update (and, apart, its audit) for this round's attack."""
        due = (update.server_round - 1) % self.attack.every == 0
        if not due and not self.config.defense.feeds_back(update.partition_id):
            return  # neither attacked this round nor summed for a later one
        obs = self._upload_sums.with_sum(Observation.under(update, self.config.defense), self.config.defense)
        if due:
            audit = dict(update.audit)
            if self._lent is not None and lent(audit):  # a user's app: the lent images, named in the pool
                audit = {protocol.AUDIT_SAMPLES: self._lent.positions(audit), LENT: True}
            self._collected.append((obs, audit))

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
        """Let pending attacks finish (or cut them at ``attack.end-budget-seconds``), log those cut, run the deep pass.

        The deep pass takes on the updates left undecided within ``attack.deep-budget-seconds`` (none: they stay
        kept for ``fl-sim audit``); then the pool stops.
        """
        try:
            cut = self._worker.close(self.attack.end_budget_seconds) if self._worker is not None else []
            for job in cut:
                self.writer.emit(events.AttackCut(
                    round=job.server_round, clients=len(job.observations),
                    reason=f"end-of-run budget of {self.attack.end_budget_seconds} s spent"))
            if self.attack.deep_budget_seconds and self.undecided.kept():
                if self._lent is not None:
                    self.judge = self._lent.judge()
                deep_pass(self.undecided, self.runner, self.assessor, self.reporter, self.judge,
                          self.attack.deep_budget_seconds,
                          finished=finished_updates(load_events(self.writer.directory)))
        finally:
            self.runner.close()

    def account_for_earlier_rounds(self, earlier: list[events.Event], done: int) -> list[int]:
        """On resume: log ``attack-cut`` for each earlier round that was due an attack and has no outcome.

        Those attacks were pending when the run stopped; the server keeps no updates of a round before its
        attack has judged them, so they cannot be redone, and the results must say so rather than look complete.
        (Updates judged ``undecided`` were kept: the deep pass continues them.) Returns the rounds.
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
        reasons); the budget is the round's, shared: an update settled early leaves its share to the others. At
        the budget, the attacks return their best so far, which is judged; an update left ``undecided`` is kept
        for the deep pass where ground truth can judge it. A failure is logged (``attack-error``) and the round
        skipped, so that the run always goes on.
        """
        start = time.perf_counter()
        if self._lent is not None:
            self.judge = self._lent.judge()
        helds = [audit.get(protocol.AUDIT_SAMPLES) for audit in job.audits]
        try:
            attempt = self.runner.run(job.observations, helds, self.judge, self.attack.budget_seconds, run_stop)
            outcomes = []
            for index, obs in enumerate(job.observations):
                if index in attempt.failed:
                    self.reporter.error(job.server_round, 1, attempt.failed[index], f" (partition {obs.partition_id})")
                    continue
                judged = self.judge is not None and bool(helds[index])
                found = attempt.found.get(index)
                assessment = self.assessor.assess(self.judge, attempt.victim, obs, found, job.audits[index],
                                                  attempt.reasons[index], attempt.judged)
                outcome = self.reporter.report(obs, found, assessment, keep=judged)
                if outcome.verdict == events.UNDECIDED and judged:
                    self.undecided.keep(obs, job.audits[index])
                outcomes.append(outcome)
            self.reporter.summarise(job.server_round, outcomes, round(time.perf_counter() - start, 3),
                                    queue=max(self.pending - 1, 0),
                                    summed=max(obs.clients for obs in job.observations))
        except AttackStopped:
            raise  # the end-of-run budget: the worker logs the round as cut
        except Exception as err:  # noqa: BLE001 - an attack must never stop the federated run
            self.reporter.error(job.server_round, len(job.observations), err)
        finally:
            self.runner.release_memory()

