"""FedAvg leakage through convolutions: Dimitrov et al.'s grid, SME's setting and Flower's own template.

Every cell trains ``--clients`` clients of Fashion-MNIST (28x28 gray; Debian's ``dataset-fashion-mnist``,
standing in for FEMNIST, which cannot be downloaded here) from a fresh model, on disjoint images, and attacks
each update with every attack of ``--attacks`` that applies to it, one row each (its reason where it does not):

- Dimitrov et al., "Data Leakage in Federated Averaging" (TMLR 2022), Table 1's grid: their FEMNIST CNN
  (``femnist-cnn``), 50 images per client as batches x images of 1 x 50, 5 x 10 and 10 x 5, at 1, 5 and 10 local
  epochs of plain SGD at lr 0.004 (cells ``dimitrov-BxI-E``); they recover more than 45% of the images at
  10 x 5 x 10 with their attack and known labels;
- SME (Zhu et al., ICML 2023, ``femnist_sme.json``): the same CNN, 50 images in batches of 10, 20 epochs (100
  local steps), lr 0.004 (cell ``sme-setting``);
- Flower's ``quickstart-pytorch`` template: its CNN (``flower-cnn``), SGD lr 0.1 with momentum 0.9, batch 32,
  one epoch of 125 steps over 4,000 images (cell ``flower-template``).

Per row: images leaked by the judge (identified above chance, SSIM >= 0.6) and recovered by Dimitrov et al.'s
criterion (Hungarian on PSNR, above 20 dB) side by side, of the images held, and seconds per update on this
machine (1 torch thread). ``fedavg`` is Dimitrov et al.'s attack as their code runs it (400 iterations),
``sme`` SME's surrogate (its published 1,000), ``feature-isolation`` neuron isolation at the CNN's hidden linear
layer with feature inversion (2,000); ``ig replay`` is IG matching a replay of the local training in the simplest
form of Dimitrov et al.'s prior (:mod:`attacker.replay`), at ``--iterations`` Adam steps.

    python benchmarks/fedavg_table.py [--cells dimitrov-10x5-10 sme-setting flower-template ...] [--clients 2]
        [--iterations 400] [--attacks feature-isolation sme fedavg "ig replay"] [--csv fedavg_table.csv]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from csv_rows import RowLog
from leakage_table import FIELDS, measure

#: The stand-in for FEMNIST: Fashion-MNIST at its own 28x28.
DATA = {"data.dataset": "fashion-mnist", "data.image-size": 28}
#: The training of Dimitrov et al.'s and SME's cells: their CNN, plain SGD at lr 0.004, from a fresh model.
PAPERS_TRAINING = {"model.name": "femnist-cnn", "model.init": "default", "train.optimizer": "sgd", "train.lr": 0.004,
                   "train.momentum": 0.0, "train.local-steps": 0, "defense.per-client": "",
                   "attack.budget-seconds": 0.0, "attack.max-images": 100}


def cells() -> dict[str, tuple[dict, int]]:
    """Every cell by name: its settings and the images each client holds."""
    table = {f"dimitrov-{batches}x{images}-{epochs}": (
        {**PAPERS_TRAINING, "train.batch-size": images, "train.local-epochs": epochs}, batches * images)
        for batches, images in ((1, 50), (5, 10), (10, 5)) for epochs in (1, 5, 10)}
    table["sme-setting"] = ({**PAPERS_TRAINING, "train.batch-size": 10, "train.local-epochs": 20}, 50)
    table["flower-template"] = ({**PAPERS_TRAINING, "model.name": "flower-cnn", "train.lr": 0.1, "train.momentum": 0.9,
                                 "train.batch-size": 32, "train.local-epochs": 1}, 4000)
    return table


def main() -> None:
    """Measure the chosen cells and print the table as it grows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", choices=sorted(cells()), default=sorted(cells()))
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=400, help="IG's Adam steps (Dimitrov et al.: 400)")
    parser.add_argument("--tv", type=float, default=0.01)
    parser.add_argument("--attacks", nargs="+", default=["feature-isolation", "sme", "fedavg", "ig replay"])
    parser.add_argument("--csv", type=Path, default=Path("fedavg_table.csv"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    with RowLog(args.csv, ["cell", *FIELDS]) as table:
        for name in args.cells:
            settings, images = cells()[name]
            flat = {**DATA, **settings}
            rows = measure(flat, images, args.clients, args.attacks, args.iterations, args.tv)
            if not any(row["applies"] for row in rows):
                print(f"no attack applies to {name}: nothing is claimed about it", file=sys.stderr)
            for row in rows:
                row.update(cell=name, dataset="fashion-mnist", model=flat["model.name"],
                           optimizer=flat["train.optimizer"], steps=images // flat["train.batch-size"],
                           batch=flat["train.batch-size"], epochs=flat["train.local-epochs"])
                table.add({field: row.get(field, "") for field in ["cell", *FIELDS]})


if __name__ == "__main__":
    main()
