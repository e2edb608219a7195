"""``auto``'s worst case against each attack of its portfolio alone, and what it costs.

K clients each take one plain SGD step (lr 0.1) on one image (FedSGD, the papers' setting) of
DLG's LeNet at 32x32; every update is attacked by ``auto`` (analytic + IG at three TV weights +
iDLG, defense-aware, published iterations unless ``--iterations``), every attack's result is
judged, and the table gives, per attack alone and for the per-update maximum, the share of
clients whose image leaked (SSIM >= 0.6) and the mean SSIM. It also times ``ig`` alone (its
defaults: TV 0.1) on the same updates, for the cost of the worst case in seconds per update.

Data: digits, and, with ``--victims FILE``, PRECODE's 128 CIFAR-10 victims (3 channels;
converted to a temporary image folder, never committed). ``--set key=value`` changes the run
(e.g. ``precode.enabled=true`` or ``defense.name=dgp``).

    python benchmarks/worst_case.py [--datasets digits victims] [--clients 16] [--iterations N] [--set k=v ...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from attacker.attacks import ATTACKS, AttackSettings
from attacker.judge import judge, worst_case
from attacker.observation import Observation
from attacker.victim import Victim
from fl_sim.config import RunConfig, parse_assignment
from fl_sim.data import load_dataset
from fl_sim.offline import intercepted_updates
from leakage_table import data_settings

FEDSGD = {"train.optimizer": "sgd", "train.lr": 0.1, "train.batch-size": 1, "train.local-steps": 1}


def attack_all(flat: dict, clients: int, iterations: int) -> None:
    """Run auto and ig alone on ``clients`` FedSGD updates; print the per-attack table and the timings."""
    config = RunConfig.from_flat(flat)
    dataset = load_dataset(config.data)
    stride = max(1, len(dataset.train) // clients)
    updates, truths = intercepted_updates(config, [[c * stride] for c in range(clients)])
    observations = [Observation.from_update(update, config.defense.name) for update in updates]
    victim = Victim.from_arrays(config, dataset.input_shape, dataset.num_classes, observations[0].global_arrays,
                                torch.device("cpu"))
    settings = AttackSettings.from_config(config.attack, seed=0)
    start = time.perf_counter()
    results = ATTACKS["auto"](victim, observations, settings.for_method("auto", iterations=iterations))
    auto_seconds = (time.perf_counter() - start) / clients
    start = time.perf_counter()
    ATTACKS["ig"](victim, observations, settings.for_method("ig", iterations=iterations or 0))
    ig_seconds = (time.perf_counter() - start) / clients
    per_attack: dict[str, list] = {}
    best = []
    for rec, truth in zip(results, truths):
        verdicts = [judge(c.images, c.labels, *truth.tensors(), config.attack.success_ssim) for c in rec.candidates]
        for candidate, verdict in zip(rec.candidates, verdicts):
            per_attack.setdefault(candidate.attack, []).append(verdict)
        best.append(verdicts[worst_case(verdicts)])
    print(f"{'attack':<26} {'clients leaked':>15} {'mean SSIM':>10}")
    for name, verdicts in [*per_attack.items(), ("auto (worst case)", best)]:
        leaked = sum(v.leaked for v in verdicts)
        print(f"{name:<26} {f'{leaked}/{len(verdicts)}':>15} {statistics.mean(v.mean_ssim for v in verdicts):>10.3f}")
    print(f"seconds per update: auto {auto_seconds:.1f}, ig alone {ig_seconds:.1f} "
          f"({auto_seconds / ig_seconds:.1f}x)", flush=True)


def main() -> None:
    """Measure each data set."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["digits", "victims"], choices=["digits", "victims"])
    parser.add_argument("--victims", type=Path, default=Path("../shared/data/precode-victims/128CIF_RECDATA.dict"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=0, help="Adam steps of IG and feature inversion "
                                                                  "(0 = published defaults)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    torch.set_num_threads(1)
    overrides = dict(parse_assignment(item) for item in args.set)
    workdir = Path(tempfile.mkdtemp(prefix="fl-sim-worst-case-"))
    for name in args.datasets:
        data = data_settings(name, args.victims, workdir)
        if data is not None:
            print(f"\n{name}: {args.clients} FedSGD updates, {overrides or 'no defense'}")
            attack_all({**data, **FEDSGD, **overrides}, args.clients, args.iterations)


if __name__ == "__main__":
    main()
