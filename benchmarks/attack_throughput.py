"""Sequential, batched and compiled Inverting Gradients on K concurrent LeNet attacks, in one run.

K clients each take one plain-SGD step on one digits image (32x32, DLG's LeNet), as in a
FedSGD round; the server attacks all K updates with Inverting Gradients: as K optimisations one
after another (how other tools run them), as one vmap-batched optimisation, or batched with the
step compiled (``attack.compile=on``: inductor on the CPU, CUDA graphs on a GPU). All do the same
optimisation (the test suite checks that their steps agree), so the success rates match up to
rounding and only the time differs.

Printed per K, device and mode: wall seconds for all K reconstructions (a compiled step is
compiled before the clock starts; the compile's seconds have a column of their own), attack
iterations per second (K x iterations / seconds), on a GPU the share of wall time the GPU is
busy running kernels (profiled over 20 further iterations), the share of reconstructions with
SSIM >= 0.6, seconds per successful reconstruction, and the speed-up over the first row of
that K.

    python benchmarks/attack_throughput.py [--iterations 500] [--ks 1 4 16 64] [--devices auto]
        [--modes sequential batched compiled]

On a GPU machine, ``--devices cpu cuda`` puts both side by side; ``--modes batched compiled``
skips the slow sequential runs at large K.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from torch.profiler import ProfilerActivity, profile

from attacker.attacks import INVERSIONS, AttackSettings
from attacker.judge import Judge
from attacker.observation import Observation
from attacker.victim import Victim
from fl_sim.config import RunConfig
from fl_sim.config.presets import FEDSGD
from fl_sim.data import load_dataset
from fl_sim.devices import resolve_device
from fl_sim.models import Architecture
from lab.offline import intercepted_updates

ATTACKED = {**FEDSGD, "attack.method": "ig"}


def measure(k: int, iterations: int, mode: str, device: torch.device, dataset: str = "digits") -> dict:
    """Attack K one-image updates in ``mode``; seconds, iterations/s, compile seconds, GPU busy share, successes."""
    config = RunConfig.from_flat({**ATTACKED, "data.dataset": dataset})
    dataset = load_dataset(config.data)
    samples = [[(7 * i) % len(dataset.train)] for i in range(k)]
    updates, _ = intercepted_updates(config, samples)
    observations = [Observation.from_update(update) for update in updates]
    architecture = Architecture.of(config, dataset.input_shape, dataset.num_classes)
    victim = Victim.from_arrays(architecture, observations[0].global_arrays, device)
    settings = dataclasses.replace(AttackSettings.from_config(config.attack, seed=0), iterations=iterations,
                                   batched=mode != "sequential", compile="on" if mode == "compiled" else "off")
    compile_seconds = warm_up(victim, observations, settings) if mode == "compiled" else None
    reconstructions, seconds = timed(lambda: INVERSIONS["ig"].run(victim, observations, settings), device)
    short = dataclasses.replace(settings, iterations=20)
    busy = gpu_busy_share(lambda: INVERSIONS["ig"].run(victim, observations, short), device)
    judge = Judge.of_dataset(dataset, config.attack, seed=0)
    successes = sum(judge(rec.images, rec.labels, held).leaked for rec, held in zip(reconstructions, samples))
    return {"seconds": seconds, "its_per_s": k * iterations / seconds, "compile_seconds": compile_seconds,
            "busy": busy, "successes": successes}


def warm_up(victim: Victim, observations: list[Observation], settings: AttackSettings) -> float:
    """Compile the IG step of ``observations`` before the clock starts; its seconds.

    The step is kept on the victim, so the timed runs that follow reuse it.
    """
    before = set(victim.steps)
    INVERSIONS["ig"].run(victim, observations, dataclasses.replace(settings, iterations=2))
    return sum(victim.steps[key].compile_seconds or 0.0 for key in set(victim.steps) - before)


def timed(run, device: torch.device):
    """``run()``'s result and its wall seconds, GPU work included."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def gpu_busy_share(run, device: torch.device) -> float | None:
    """The share of ``run()``'s wall time in which the GPU runs kernels (None on the CPU)."""
    if device.type != "cuda":
        return None
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        _, seconds = timed(run, device)
    kernel_us = sum(event.device_time_total for event in prof.events()
                    if event.device_type == torch.autograd.DeviceType.CUDA)
    return kernel_us / 1e6 / seconds


def main() -> None:
    """Run the table and print it."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--ks", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--devices", nargs="+", default=["auto"], choices=["auto", "cpu", "cuda"])
    parser.add_argument("--modes", nargs="+", default=["sequential", "batched", "compiled"],
                        choices=["sequential", "batched", "compiled"])
    parser.add_argument("--dataset", default="digits", choices=["digits", "faces"],
                        help="faces needs only scikit-image (digits needs scikit-learn)")
    args = parser.parse_args()
    devices = [resolve_device(requested) for requested in args.devices]
    print(f"Inverting Gradients, DLG LeNet, {args.dataset} 32x32, 1 image per update, {args.iterations} iterations")
    for device in devices:
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
        print(f"  {device.type}: {name}")
    header = (f"{'K':>4} {'device':>6} {'mode':>10} {'seconds':>9} {'attack it/s':>12} {'compile s':>9} "
              f"{'GPU busy':>8} {'SSIM>=0.6':>10} {'s/success':>10} {'speed-up':>9}")
    print(header)
    print("-" * len(header))
    for device in devices:
        measure(1, 5, "batched", device, args.dataset)  # warm-up (allocations, kernels)
    for k in args.ks:
        baseline = None
        for device in devices:
            for mode in args.modes:
                r = measure(k, args.iterations, mode, device, args.dataset)
                baseline = baseline or r["seconds"]
                per_success = f"{r['seconds'] / r['successes']:.2f}" if r["successes"] else "-"
                compiling = f"{r['compile_seconds']:.1f}" if r["compile_seconds"] is not None else "-"
                busy = f"{r['busy']:.0%}" if r["busy"] is not None else "-"
                print(f"{k:>4} {device.type:>6} {mode:>10} {r['seconds']:>9.2f} {r['its_per_s']:>12.0f} {compiling:>9} "
                      f"{busy:>8} {r['successes']:>5}/{k:<4} {per_success:>10} {baseline / r['seconds']:>8.2f}x",
                      flush=True)


if __name__ == "__main__":
    main()
