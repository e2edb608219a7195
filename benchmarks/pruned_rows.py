"""What pruning leaves of the rows that isolate one image: why no isolation attack reads the main job's pruned uploads.

A neuron of the MLP's first layer that fired for one image of a client's local training has the update row
``c x`` (:mod:`attacker.attacks.isolation`). For ``--clients`` clients of the main job's round 1 (digits, 128 images
each, 16 plain SGD steps of 8 at lr 0.1, the global model fresh), this script finds those rows in the client's own
dense update (the ground truth: every row within 1e-3 of a held image, pixel RMS, once divided by its bias) and
counts, under each pruning cell of ``benchmarks/pruning_table.py``, how many of them kept any entry, and how many
kept the 16 an attack needs to compare rows; and their largest entry (``c`` for a digit, whose brightest pixel is 1)
over the smallest entry the layer kept.

    python benchmarks/pruned_rows.py [--clients 6] [--cells topk-50 topk-90 dgp-90-10 ...]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from attacker.attacks.pruned_isolation import MIN_COMMON
from clients.defenses import kept_by_magnitude
from fl_sim.config import RunConfig
from fl_sim.data import load_dataset
from lab.offline import intercepted_updates

from pruning_table import cells

#: A row is an image's where ``dW_r / db_r`` is this close to a held image (root mean square over the pixels).
ISOLATED = 1e-3


def main() -> None:
    """Count the isolated rows of round-1 updates and what each pruning cell keeps of them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--cells", nargs="+", default=list(cells()), choices=list(cells()))
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = RunConfig.from_flat({"defense.name": "none", "defense.per-client": ""})
    dataset = load_dataset(config.data)
    rng = np.random.default_rng(0)
    samples = [sorted(rng.choice(len(dataset.train), 128, replace=False).tolist()) for _ in range(args.clients)]
    updates, data = intercepted_updates(config, samples)
    layers = []
    for update, local in zip(updates, data):
        delta = update.delta()
        weight, bias = (torch.from_numpy(delta[name]).double() for name in list(delta)[:2])
        pixels = local.images.flatten(1).double() / 255
        moved = bias.abs() > 0
        candidates = weight[moved] / bias[moved, None]
        distance, image = torch.cdist(candidates, pixels).min(dim=1)
        close = distance / pixels.shape[1] ** 0.5 < ISOLATED
        layers.append((weight, torch.nonzero(moved).flatten()[close], len(set(image[close].tolist()))))
    found = [len(isolated) for _, isolated, _ in layers]
    print(f"round 1, {args.clients} clients of 128 images: rows that isolate one image per update {found} "
          f"(distinct images: {[images for *_, images in layers]})")
    print(f"{'cell':11} {'rows with any entry kept':>24} {f'with >= {MIN_COMMON} kept':>16} "
          f"{'median peak / smallest kept':>28}")
    for name in args.cells:
        settings = cells()[name]
        top = settings.get("defense.dgp-top-ratio", 0.0)
        bottom = settings.get("defense.dgp-bottom-ratio", settings.get("defense.topk-prune-ratio"))
        any_kept = enough = 0
        ratios = []
        for weight, isolated, _ in layers:
            kept = kept_by_magnitude(weight, top, bottom)
            threshold = weight.abs()[kept].min()
            rows = kept[isolated].sum(dim=1)
            any_kept += int((rows > 0).sum())
            enough += int((rows >= MIN_COMMON).sum())
            ratios += (weight[isolated].abs().max(dim=1).values / threshold).tolist()
        print(f"{name:11} {f'{any_kept}/{sum(found)}':>24} {f'{enough}/{sum(found)}':>16} "
              f"{statistics.median(ratios) if ratios else float('nan'):28.2f}")


if __name__ == "__main__":
    main()
