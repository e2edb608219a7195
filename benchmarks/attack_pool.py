"""Updates judged per minute by the attacker: in the server's thread, and on a pool of 1 and 2 Ray workers.

A fixed set of K FedSGD updates (one SGD step on one digit each, DLG's LeNet: the papers' setting),
no federation; each is attacked by ``ig`` at ``--iterations`` (no budget) and judged. Rows:

- ``server thread``: what ``attack.workers=0`` does, the round's updates as one batched optimisation;
- ``pool, 1 worker`` and ``pool, 2 workers``: ``attack.workers=1, 2`` on a private Ray of this machine,
  one job per worker, each batching its share of the updates (each worker one torch thread);
- with ``--cluster``, ``2 workers, two nodes``: a Ray cluster of two ``ray start`` nodes on this
  machine, each declaring one unit of the ``attack`` resource, joined at ``simulation.ray-address``.

    python benchmarks/attack_pool.py [--updates 8] [--iterations 200] [--cluster]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import ray
import torch

from attacker.attacks import INVERSIONS, AttackSettings
from attacker.judge import Judge
from attacker.observation import Observation
from attacker.pool import AttackPool
from attacker.stop import Stop
from attacker.victim import Victim
from fl_sim.config import RunConfig
from fl_sim.config.presets import FEDSGD
from fl_sim.data import load_dataset
from fl_sim.models import Architecture
from lab.offline import intercepted_updates

ATTACKED = {**FEDSGD, "attack.method": "ig", "attack.compile": "off"}
#: The head node's port of the two-node cluster (``--cluster``).
CLUSTER_PORT = 6391


def measure(flat: dict, updates: int, iterations: int) -> tuple[float, int]:
    """Updates judged per minute, and how many of them leaked, for ``attack.workers`` as ``flat`` sets it."""
    config = RunConfig.from_flat({**ATTACKED, **flat, "attack.iterations": iterations})
    dataset = load_dataset(config.data)
    samples = [[c * (len(dataset.train) // updates)] for c in range(updates)]
    intercepted, _ = intercepted_updates(config, samples)
    observations = [Observation.from_update(u) for u in intercepted]
    settings = AttackSettings.from_config(config.attack, seed=0)
    judge = Judge.of_dataset(dataset, config.attack, seed=0)
    start = time.perf_counter()
    if config.attack.workers:
        pool = AttackPool(config.attack, Architecture.of(config, dataset.input_shape, dataset.num_classes))
        start = time.perf_counter()  # the workers are up: what is measured is the attacks
        results = pool.attack(observations, settings, 0.0, Stop())
        pool.close()
    else:
        architecture = Architecture.of(config, dataset.input_shape, dataset.num_classes)
        victim = Victim.from_arrays(architecture, observations[0].global_arrays, torch.device("cpu"))
        results = INVERSIONS["ig"].run(victim, observations, settings, Stop())
    leaked = sum(judge(rec.images, rec.labels, held=sample).leaked for rec, sample in zip(results, samples))
    return updates / ((time.perf_counter() - start) / 60), leaked


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--cluster", action="store_true", help="also measure 2 workers on a two-node Ray cluster")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = {"server thread": {"attack.workers": 0}, "pool, 1 worker": {"attack.workers": 1},
            "pool, 2 workers": {"attack.workers": 2}}
    figures = {}
    for name, flat in rows.items():
        figures[name] = measure(flat, args.updates, args.iterations)
        ray.shutdown()
    if args.cluster:
        ray_cli = str(Path(sys.executable).with_name("ray"))  # the venv's, next to this Python
        head = [ray_cli, "start", "--head", f"--port={CLUSTER_PORT}", "--num-cpus=1", '--resources={"attack": 1}',
                "--include-dashboard=false"]
        node = [ray_cli, "start", f"--address=127.0.0.1:{CLUSTER_PORT}", "--num-cpus=1", '--resources={"attack": 1}']
        subprocess.run(head, check=True, capture_output=True)
        subprocess.run(node, check=True, capture_output=True)
        try:
            figures["2 workers, two nodes"] = measure(
                {"attack.workers": 2, "simulation.ray-address": f"127.0.0.1:{CLUSTER_PORT}"}, args.updates,
                args.iterations)
        finally:
            ray.shutdown()
            subprocess.run([ray_cli, "stop", "--force"], capture_output=True)
    one = figures["pool, 1 worker"][0]
    print(f"{args.updates} FedSGD updates, ig at {args.iterations} iterations, 1 torch thread per worker")
    print(f"{'attacker':24s} {'updates/min':>12s} {'vs 1 worker':>12s} {'leaked':>8s}")
    for name, (rate, leaked) in figures.items():
        print(f"{name:24s} {rate:12.1f} {rate / one:11.2f}x {leaked:5d}/{args.updates}")


if __name__ == "__main__":
    main()
