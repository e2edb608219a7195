"""Inverting Gradients on pruned uploads, with the pruning's bounds on what did not travel and without them.

K clients each take one plain SGD step (lr 0.1) on one image (FedSGD, the papers' setting) of DLG's LeNet on digits,
every one running ``--set`` defense (DGP by default: the largest 10% and the smallest 80% of each layer dropped).
IG alone, at each TV weight of ``auto``'s grid, matches the coordinates that travelled, and holds those that did not
within the pruning's bounds at each weight of ``--weights`` (``attacker.attacks.ig.BOUND_WEIGHT``; 0: no bounds).
Printed per weight and TV: clients leaked (the judge's criterion), mean best SSIM, seconds per update.

    python benchmarks/ig_bounds.py [--clients 8] [--iterations 1000] [--weights 0 0.1 1 10] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import time

import torch

from attacker.attacks import INVERSIONS, AttackSettings, ig
from attacker.attacks.auto import TV_GRID
from attacker.judge import Judge
from attacker.observation import Observation
from attacker.victim import Victim
from fl_sim.config import RunConfig, parse_assignment
from fl_sim.config.presets import FEDSGD
from fl_sim.data import load_dataset
from fl_sim.models import Architecture
from lab.offline import intercepted_updates


def main() -> None:
    """Attack the same updates at every bound weight and TV weight, and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--weights", type=float, nargs="+", default=[0.0, 0.1, 1.0, 10.0])
    parser.add_argument("--set", action="append", default=[], type=parse_assignment, metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = RunConfig.from_flat({**FEDSGD, "defense.name": "dgp", **dict(args.set)})
    dataset = load_dataset(config.data)
    stride = len(dataset.train) // args.clients
    samples = [[c * stride] for c in range(args.clients)]
    updates, _ = intercepted_updates(config, samples)
    observations = [Observation.under(update, config.defense) for update in updates]
    architecture = Architecture.of(config, dataset.input_shape, dataset.num_classes)
    victim = Victim.from_arrays(architecture, observations[0].global_arrays, torch.device("cpu"))
    judge = Judge.of_dataset(dataset, config.attack, seed=0)
    print(f"FedSGD, {config.model.name}, {config.defense.name}, {args.clients} clients, "
          f"IG {args.iterations} iterations")
    for weight in args.weights:
        ig.BOUND_WEIGHT = weight
        for tv in TV_GRID:
            settings = AttackSettings.from_config(config.attack, seed=0).for_method(
                "ig", iterations=args.iterations, lr=ig.IG.entry.lr, tv=tv)
            start = time.perf_counter()
            results = INVERSIONS["ig"].run(victim, observations, settings)
            seconds = (time.perf_counter() - start) / args.clients
            verdicts = [judge(rec.images, rec.labels, held) for rec, held in zip(results, samples)]
            print(f"bound weight {weight:g}, TV {tv:g}: {sum(v.leaked for v in verdicts)}/{args.clients} leaked, "
                  f"mean SSIM {sum(v.best_ssim for v in verdicts) / args.clients:.3f}, {seconds:.1f} s per update",
                  flush=True)


if __name__ == "__main__":
    main()
