"""Batched vs sequential Inverting Gradients on K concurrent LeNet attacks, in one run.

K clients each take one plain-SGD step on one digits image (32x32, DLG's LeNet), as in a
FedSGD round; the server attacks all K updates with Inverting Gradients, either as one
vmap-batched optimisation or as K optimisations one after another (how other tools run them).
Both do the same optimisation (the test suite checks that their results agree), so the
success rates match and only the time differs.

Printed per K, device and mode: wall seconds for all K reconstructions, attack iterations per
second (K x iterations / seconds), the share of reconstructions with SSIM >= 0.6, seconds per
successful reconstruction, and the speed-up over the first device's sequential run of that K
(or over its first row, where sequential is not run).

    python benchmarks/attack_throughput.py [--iterations 500] [--ks 1 4 16 64] [--devices auto]
        [--modes sequential batched]

On a GPU machine, ``--devices cpu cuda`` puts both side by side; ``--modes batched`` skips the
slow sequential runs at large K.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch

from attacker.attacks import ATTACKS, AttackSettings
from attacker.judge import judge
from attacker.observation import Observation
from attacker.victim import Victim
from fl_sim.config import RunConfig
from fl_sim.data import load_dataset
from fl_sim.devices import resolve_device
from lab.offline import intercepted_updates

FEDSGD = {"train.optimizer": "sgd", "train.lr": 0.1, "train.batch-size": 1, "train.local-steps": 1,
          "attack.method": "ig"}


def measure(k: int, iterations: int, batched: bool, device: torch.device) -> dict:
    """Attack K one-image updates; return seconds, iterations/s and successes."""
    config = RunConfig.from_flat(FEDSGD)
    dataset = load_dataset(config.data)
    updates, truths = intercepted_updates(config, [[(7 * i) % len(dataset.train)] for i in range(k)])
    observations = [Observation.from_update(update) for update in updates]
    victim = Victim.from_arrays(config, dataset.input_shape, dataset.num_classes,
                                observations[0].global_arrays, device)
    settings = dataclasses.replace(AttackSettings.from_config(config.attack, seed=0),
                                   iterations=iterations, batched=batched)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    reconstructions = ATTACKS["ig"](victim, observations, settings)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    successes = sum(judge(rec.images, rec.labels, *truth.tensors(), threshold=0.6).leaked
                    for rec, truth in zip(reconstructions, truths))
    return {"seconds": seconds, "its_per_s": k * iterations / seconds, "successes": successes}


def main() -> None:
    """Run the table and print it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--devices", nargs="+", default=["auto"], choices=["auto", "cpu", "cuda"])
    parser.add_argument("--modes", nargs="+", default=["sequential", "batched"], choices=["sequential", "batched"])
    args = parser.parse_args()
    devices = [resolve_device(requested) for requested in args.devices]
    print(f"Inverting Gradients, DLG LeNet, digits 32x32, 1 image per update, {args.iterations} iterations")
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
        print(f"  {device.type}: {name}")
    header = (f"{'K':>3} {'device':>6} {'mode':>10} {'seconds':>9} {'attack it/s':>12} {'SSIM>=0.6':>10} "
              f"{'s/success':>10} {'speed-up':>9}")
    print(header)
    print("-" * len(header))
    for device in devices:
        measure(1, 5, True, device)  # warm-up (allocations, kernels)
    for k in args.ks:
        baseline = None
        for device in devices:
            for mode in args.modes:
                r = measure(k, args.iterations, mode == "batched", device)
                baseline = baseline or r["seconds"]
                per_success = f"{r['seconds'] / r['successes']:.2f}" if r["successes"] else "-"
                print(f"{k:>3} {device.type:>6} {mode:>10} {r['seconds']:>9.2f} {r['its_per_s']:>12.0f} "
                      f"{r['successes']:>5}/{k:<4} {per_success:>10} {baseline / r['seconds']:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
