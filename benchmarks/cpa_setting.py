"""The Cocktail Party Attack in its own FedAvg setting, as far as it fits here: images leaked per attack.

CPA's FedAvg experiment (facebookresearch/cocktail_party_attack, ``src/collect_updates.py``): a fully
connected network of one hidden layer of 256 ReLU units (``fc2``), each update 10 local epochs of plain SGD
at lr 0.001 on batches of 32 over 32 to 256 samples. Here: the same network (fresh, default init: theirs
is trained first), training and batch, ``--samples`` images per update, ``--clients`` updates per cell, on
digits at 32x32 and PRECODE's 128 CIFAR-10 victims; each update attacked by neuron isolation and by CPA's
unmixing at its published 25,000 Adam steps (lr 0.001), all updates of a cell unmixed together. Leaks are
the judge's (identified above chance, SSIM >= 0.6), signs and scales chosen without the ground truth (CPA's
own evaluation picks each source's sign with it).

    python benchmarks/cpa_setting.py [--datasets digits victims] [--samples 32 64] [--clients 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from attacker.attacks import INVERSIONS, AttackSettings
from attacker.judge import Judge
from attacker.observation import Observation
from attacker.victim import Victim
from fl_sim.config import RunConfig
from fl_sim.data import load_dataset
from fl_sim.models import Architecture
from lab.offline import intercepted_updates

from leakage_table import data_settings

#: CPA's FedAvg client (``collect_updates.py`` defaults), on this project's keys.
CPA_FEDAVG = {"model.name": "mlp", "model.width": 256, "model.depth": 1, "model.init": "default",
              "train.optimizer": "sgd", "train.lr": 0.001, "train.batch-size": 32, "train.local-steps": 0,
              "train.local-epochs": 10, "defense.per-client": ""}


def measure(flat: dict, samples: int, clients: int) -> list[dict]:
    """Attack ``clients`` updates of ``samples`` images each with isolation and CPA; one row per attack."""
    config = RunConfig.from_flat(flat)
    dataset = load_dataset(config.data)
    order = np.random.default_rng(0).permutation(len(dataset.train))
    held = [[int(order[(c * samples + i) % len(order)]) for i in range(samples)] for c in range(clients)]
    updates, _ = intercepted_updates(config, held)
    observations = [Observation.from_update(update) for update in updates]
    architecture = Architecture.of(config, dataset.input_shape, dataset.num_classes)
    victim = Victim.from_arrays(architecture, observations[0].global_arrays, torch.device("cpu"))
    judge = Judge.of_dataset(dataset, config.attack, seed=0)
    settings = AttackSettings.from_config(config.attack, seed=0)
    rows = []
    for attack in ("isolation", "cpa"):
        start = time.perf_counter()
        results = INVERSIONS[attack].run(victim, observations, settings.for_method(attack))
        seconds = (time.perf_counter() - start) / clients
        verdicts = [judge(rec.images, rec.labels, h) for rec, h in zip(results, held)]
        rows.append({"attack": attack, "leaked": sum(v.images_leaked for v in verdicts),
                     "identified": sum(v.images_identified for v in verdicts), "held": sum(v.held for v in verdicts),
                     "ssim": statistics.mean(v.mean_ssim for v in verdicts), "seconds": seconds})
    return rows


def main() -> None:
    """Measure every cell and print the table as it grows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["digits", "victims"], choices=["digits", "victims"])
    parser.add_argument("--victims", type=Path, default=Path("../shared/data/precode-victims/128CIF_RECDATA.dict"))
    parser.add_argument("--samples", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| data | samples per update | attack | images leaked / identified / held | mean SSIM | s per update |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.datasets:
            data = data_settings(name, args.victims, Path(workdir))
            if data is None:
                continue
            for samples in args.samples:
                for row in measure({**CPA_FEDAVG, **data}, samples, args.clients):
                    print(f"| {name} | {samples} | {row['attack']} | {row['leaked']} / {row['identified']} / "
                          f"{row['held']} | {row['ssim']:.3f} | {row['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
