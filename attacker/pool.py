"""A pool of attack workers on Ray, the engine the simulation already runs on.

``attack.workers`` = N starts N Ray actors, on the simulation's own Ray or on the cluster at
``simulation.ray-address``. Each keeps its victim model (and the optimisation steps built on it)
across rounds; a round's updates are shared out, one job per worker (each batches its share, as the
server's thread batches a round), results come back in any order and are returned in the round's
order. Attack workers reserve a custom resource, ``attack`` (so many
units per worker: ``attack.worker-cpus``), with ``num_cpus=0``: an actor that reserved a CPU would
never be scheduled beside the clients on a small machine, or would starve one of them. The
simulation's private Ray declares as many units as the workers need; a cluster's nodes declare
theirs with ``ray start --resources='{"attack": 4}'``. GPUs are reserved with ``num_gpus``. Under ``flwr run``'s
simulation Flower's backend starts Ray, without that resource: the pool waits for it, and there its workers
reserve no CPU.

The workers never see a client's data: they get what the server observed, and the judge stays in
the server. A worker that dies has its job retried once on a new worker; a second death is its
updates' ``attack-error``. A pool that cannot be scheduled fails at once, in one line that names
the resources it asked for.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import ray
import torch
from ray.exceptions import GetTimeoutError, RayActorError

from attacker.attacks import INVERSIONS, AttackSettings, Reconstruction
from attacker.observation import Observation
from attacker.stop import AttackStopped, Stop
from attacker.victim import Victim
from fl_sim.config import AttackConfig
from fl_sim.devices import resolve_device
from fl_sim.errors import ConfigError
from fl_sim.models import Architecture

#: The custom Ray resource attack workers reserve (one unit per worker CPU).
ATTACK_RESOURCE = "attack"
#: How long the pool waits for its workers to be scheduled before it says it cannot be.
READY_SECONDS = 60.0
#: How often the dispatcher looks whether the run is ending while jobs are out.
POLL_SECONDS = 0.2
#: A job whose worker died is tried this many times in all.
TRIES = 2


class WorkerDied(RuntimeError):
    """The workers that ran an update's attack died, twice: the update's ``attack-error``."""


class AttackWorker:
    """One Ray actor: the run's victim model, attacks of the jobs it is handed."""

    def __init__(self, attack: AttackConfig, architecture: Architecture) -> None:
        torch.set_num_threads(max(1, int(attack.worker_cpus)))
        self.architecture = architecture
        self.device = resolve_device(attack.device)
        self.victim: Victim | None = None

    def ready(self) -> str:
        """Answer once the actor runs: the device it attacks on."""
        return str(self.device)

    def attack(self, observations: list[Observation], settings: AttackSettings,
               budget_seconds: float) -> list[Reconstruction]:
        """``settings.method`` on ``observations`` within ``budget_seconds`` per update (0: none)."""
        self.victim = Victim.for_round(self.victim, self.architecture, observations[0].global_arrays, self.device)
        stop = Stop(budget_seconds * len(observations))
        return INVERSIONS[settings.method].run(self.victim, observations, settings, stop)


@dataclass
class _Job:
    """Updates of a round (their positions in it) attacked together by one worker, as one batched optimisation."""

    indices: list[int]
    observations: list[Observation]
    tries: int = 0


class AttackPool:
    """``workers`` attack actors, and the dispatcher that hands them a round's jobs over ``ray.wait``."""

    def __init__(self, attack: AttackConfig, architecture: Architecture, ray_address: str = "",
                 engine_ray: bool = False) -> None:
        """``attack.workers`` workers on the Ray already running, on Flower's (``engine_ray``), or on their own.

        ``engine_ray``: the ServerApp runs in Flower's simulation runtime (``flwr run``), whose backend starts
        Ray beside it; the pool waits for that Ray, which declares no ``attack`` resource, so its workers
        reserve no CPU at all there. Otherwise, with no Ray running (a deployment's ServerApp), the pool starts
        a private one (or joins the cluster at ``ray_address``, ``simulation.ray-address``).
        """
        self.attack_config, self.architecture = attack, architecture
        self.options = {"num_cpus": 0, "num_gpus": attack.worker_gpus}
        if engine_ray:
            _wait_for_engine_ray()
        else:
            self.options["resources"] = {ATTACK_RESOURCE: attack.worker_cpus}
        if not ray.is_initialized():
            address = ray_address or "local"  # a cluster's nodes declare their own resources
            own = {"resources": pool_resources(attack), "include_dashboard": False} if address == "local" else {}
            ray.init(address=address, log_to_driver=False, **own)
        self._remote = ray.remote(AttackWorker)
        self.workers = [self._start() for _ in range(attack.workers)]
        try:
            self.devices = ray.get([w.ready.remote() for w in self.workers], timeout=READY_SECONDS)
        except GetTimeoutError:
            self.close()
            raise ConfigError(
                f"attack.workers={attack.workers} could not be scheduled within {READY_SECONDS:.0f} s: each worker "
                f"asks Ray for {{'{ATTACK_RESOURCE}': {attack.worker_cpus}, 'GPU': {attack.worker_gpus}}} and "
                f"the cluster has {ray.available_resources()}; lower attack.workers, attack.worker-cpus or "
                f"attack.worker-gpus, or start nodes with `ray start --resources='{{\"{ATTACK_RESOURCE}\": N}}'`"
            ) from None

    def attack(self, observations: Sequence[Observation], settings: AttackSettings, budget_seconds: float,
               run_stop: Stop) -> list[Reconstruction | Exception]:
        """Each update's reconstruction (or the error its attack ended in), in order.

        The updates are shared out in one job per worker (each batches its share, as the server's thread batches a
        round). Raises :class:`AttackStopped` when ``run_stop`` is set while jobs are out (the run is ending).
        """
        share = -(-len(observations) // len(self.workers))
        queue = [_Job(list(range(start, min(start + share, len(observations)))),
                      list(observations[start:start + share])) for start in range(0, len(observations), share)]
        results: list[Reconstruction | Exception | None] = [None] * len(observations)
        idle, out = list(self.workers), {}
        while queue or out:
            while queue and idle:
                job, worker = queue.pop(0), idle.pop()
                job.tries += 1
                out[worker.attack.remote(job.observations, settings, budget_seconds)] = (worker, job)
            done, _ = ray.wait(list(out), num_returns=1, timeout=POLL_SECONDS)
            if run_stop.is_set():
                raise AttackStopped(f"stopped with {len(out)} jobs out and {len(queue)} waiting")
            for ref in done:
                worker, job = out.pop(ref)
                try:
                    found: list[Reconstruction | Exception] = ray.get(ref)
                    idle.append(worker)
                except RayActorError as err:
                    idle.append(self._replace(worker))
                    if job.tries < TRIES:
                        queue.append(job)
                        continue
                    found = [WorkerDied(f"the attack worker died {job.tries} times on these updates "
                                        f"({str(err).splitlines()[0]})")] * len(job.indices)
                except Exception as err:  # noqa: BLE001 - the attack raised: these updates' error, not the pool's
                    idle.append(worker)
                    found = [err] * len(job.indices)
                for index, result in zip(job.indices, found):
                    results[index] = result
        return results  # type: ignore[return-value]

    def close(self) -> None:
        """Stop every worker (what they were doing is not wanted any more)."""
        for worker in self.workers:
            ray.kill(worker)
        self.workers = []

    def _start(self):
        return self._remote.options(**self.options).remote(self.attack_config, self.architecture)

    def _replace(self, dead):
        """A new worker in the place of ``dead`` (a job it ran is retried there)."""
        ray.kill(dead)
        fresh = self._start()
        self.workers = [fresh if worker is dead else worker for worker in self.workers]
        return fresh


def _wait_for_engine_ray() -> None:
    """Wait until Flower's simulation backend has started Ray (starting one here would race its ``ray.init``)."""
    deadline = time.monotonic() + READY_SECONDS
    while not ray.is_initialized():
        if time.monotonic() > deadline:
            raise ConfigError(f"attack.workers needs Ray, and Flower's simulation engine did not start it within "
                              f"{READY_SECONDS:.0f} s; set attack.workers=0 to attack in the ServerApp's thread")
        time.sleep(POLL_SECONDS)


def pool_resources(attack: AttackConfig) -> dict[str, float]:
    """The custom resources a private Ray must declare for ``attack.workers`` (none without workers)."""
    return {ATTACK_RESOURCE: attack.workers * attack.worker_cpus} if attack.workers else {}
