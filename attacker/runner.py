"""Running the attack on a batch of updates of one round: which attacks apply, the race, where it runs.

The runner owns the victim model (the round's global model, reused across rounds) and, with ``attack.workers``,
the Ray pool. It knows nothing of verdicts: it hands back, per update, why each attack does or does not apply and
its reconstruction (or the error it ended in), and the race's judgements, for the reporter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from attacker.attacks import INVERSIONS, AttackSettings, Reconstruction
from attacker.judge import Judge, Race, Verdict
from attacker.observation import Observation
from attacker.stop import Stop
from attacker.victim import Victim
from fl_sim.config import AttackConfig
from fl_sim.devices import resolve_device
from fl_sim.models import Architecture


@dataclass
class Attempt:
    """What the runner did with a batch of updates (positions in it): reasons, reconstructions, failures, verdicts."""

    victim: Victim
    reasons: list[dict[str, str | None]]
    found: dict[int, Reconstruction] = field(default_factory=dict)
    failed: dict[int, Exception] = field(default_factory=dict)
    judged: dict[int, Verdict] = field(default_factory=dict)


class AttackRunner:
    """Runs ``attack.method`` on updates of one round, in the server (raced by the judge) or on the Ray pool."""

    def __init__(self, attack: AttackConfig, architecture: Architecture, seed: int, ray_address: str = "",
                 engine_ray: bool = False) -> None:
        """Attack as ``attack`` says (its random starts drawn from the run's ``seed``) models of ``architecture``.

        With ``attack.workers`` the pool starts on the Ray already running (Flower's, with ``engine_ray``), on the
        cluster at ``ray_address``, or on a Ray of its own.
        """
        self.architecture = architecture
        self.device = resolve_device(attack.device)
        self.settings = AttackSettings.from_config(attack, seed=seed)
        self.attack = INVERSIONS[self.settings.method]
        self._victim: Victim | None = None
        self._pool = None
        if attack.workers:  # Ray only where there are workers: a deployment's ServerApp need not have it
            from attacker.pool import AttackPool
            self._pool = AttackPool(attack, architecture, ray_address, engine_ray=engine_ray)

    @property
    def parallel(self) -> int:
        """How many updates it attacks at once: its pool's workers, or 1 in the server."""
        return len(self._pool.workers) if self._pool is not None else 1

    def run(self, observations: Sequence[Observation], helds: Sequence[Sequence[int] | None], judge: Judge | None,
            budget_seconds: float, stop: Stop) -> Attempt:
        """Attack the updates ``observations`` (all of one round) that an attack applies to.

        ``budget_seconds`` per update attacked (0: none), shared: here, one optimisation for them all (``auto``
        raced by ``judge`` over the images ``helds``) within the sum; on the pool, one job per worker, each within
        its updates' share. ``stop`` is the run's (set: the run is ending). A failed job is its updates' entry in
        :attr:`Attempt.failed`.
        """
        victim = self._victim = Victim.for_round(self._victim, self.architecture, observations[0].global_arrays,
                                                 self.device)
        attempt = Attempt(victim, [self.attack.reasons(victim, obs) for obs in observations])
        attacked = [i for i, why in enumerate(attempt.reasons) if any(reason is None for reason in why.values())]
        if not attacked:
            return attempt
        chosen = [observations[i] for i in attacked]
        if self._pool is None:
            race = Race(judge, [helds[i] for i in attacked]) if judge is not None else None
            racing = {"settled": race} if self.attack.portfolio and race is not None else {}
            shared = Stop(budget_seconds * len(attacked), parent=stop)
            attempt.found = dict(zip(attacked, self.attack.run(victim, chosen, self.settings, shared, **racing)))
            attempt.judged = {} if race is None else race.verdicts
            return attempt
        for i, result in zip(attacked, self._pool.attack(chosen, self.settings, budget_seconds, stop)):
            if isinstance(result, Exception):
                attempt.failed[i] = result
            else:
                attempt.found[i] = result
        return attempt

    def release_memory(self) -> None:
        """Give back what the attacks held on the GPU, so that a failed attack does not starve the next."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Stop the pool (Flower's backend shuts Ray down once the run returns: the pool goes first)."""
        if self._pool is not None:
            self._pool.close()
            self._pool = None
