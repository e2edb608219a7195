"""What pruning leaves of the rows that isolate one image: why no isolation attack reads the main job's pruned uploads.

A neuron of the MLP's first layer that fired for one image of a client's local training has the update row
``c x`` (:mod:`attacker.attacks.isolation`). For ``--clients`` clients of the main job's round 1 (digits, 128 images
each, 16 plain SGD steps of 8 at lr 0.1, the global model fresh), this script finds those rows in the client's own
dense update (the ground truth: every row within 1e-3 of a held image, pixel RMS, once divided by its bias) and
counts, under each pruning cell of ``benchmarks/pruning_table.py``, how many of them kept any entry, and how many
kept the 16 an attack needs to compare rows; and their largest entry (``c`` for a digit, whose brightest pixel is 1)
over the smallest entry the layer kept.

What travels of the other rows mixes images (``dW = A^T X``, of rank at most the 128 images the update holds). Any
attack on the mixtures (unmixing, gradient matching) first needs them whole, and no completion determines a
rank-``r`` matrix from fewer entries than its ``r (m + n - r)`` degrees of freedom (Candes and Recht, "Exact Matrix
Completion via Convex Optimization", 2009): the script counts, per cell, the rows that kept at least ``r`` entries
(fewer leave a row's ``r`` coefficients open), the entries they kept, and those degrees of freedom. With ``--cpa`` it
also runs CPA (:mod:`attacker.attacks.unmixing`, its published 25,000 Adam steps) on each client's dense update, as
the judge sees it: what a perfect completion would give any unmixing of these uploads, at most.

    python benchmarks/pruned_rows.py [--clients 6] [--cells topk-50 topk-90 dgp-90-10 ...] [--cpa]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from attacker.attacks.base import AttackSettings
from attacker.attacks.pruned_isolation import MIN_COMMON
from attacker.attacks.unmixing import CPA
from attacker.completion import coverage
from attacker.judge import Judge
from attacker.observation import Observation
from attacker.victim import Victim
from clients.defenses import kept_by_magnitude
from fl_sim.config import RunConfig
from fl_sim.data import load_dataset
from fl_sim.models import Architecture
from lab.offline import intercepted_updates

from pruning_table import cells

#: Images per client: the main job's 16 steps of 8.
IMAGES = 128
#: A row is an image's where ``dW_r / db_r`` is this close to a held image (root mean square over the pixels).
ISOLATED = 1e-3


def main() -> None:
    """Count the isolated rows of round-1 updates and what each pruning cell keeps of them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--cells", nargs="+", default=list(cells()), choices=list(cells()))
    parser.add_argument("--cpa", action="store_true", help="also unmix each dense update with CPA, judged")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = RunConfig.from_flat({"defense.name": "none", "defense.per-client": ""})
    dataset = load_dataset(config.data)
    rng = np.random.default_rng(0)
    samples = [sorted(rng.choice(len(dataset.train), IMAGES, replace=False).tolist()) for _ in range(args.clients)]
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
    print(f"round 1, {args.clients} clients of {IMAGES} images: rows that isolate one image per update {found} "
          f"(distinct images: {[images for *_, images in layers]})")
    rank = min(IMAGES, layers[0][0].shape[0])
    print(f"{'cell':11} {'rows with any entry kept':>24} {f'with >= {MIN_COMMON} kept':>16} "
          f"{'median peak / smallest kept':>28} {f'rows with >= {rank} kept':>20} {'their entries kept':>19} "
          f"{f'rank-{rank} degrees of freedom':>27}")
    for name in args.cells:
        settings = cells()[name]
        top = settings.get("defense.dgp-top-ratio", 0.0)
        bottom = settings.get("defense.dgp-bottom-ratio", settings.get("defense.topk-prune-ratio"))
        any_kept = enough = 0
        ratios, completable = [], []
        for weight, isolated, _ in layers:
            kept = kept_by_magnitude(weight, top, bottom)
            threshold = weight.abs()[kept].min()
            rows = kept[isolated].sum(dim=1)
            any_kept += int((rows > 0).sum())
            enough += int((rows >= MIN_COMMON).sum())
            ratios += (weight[isolated].abs().max(dim=1).values / threshold).tolist()
            completable.append(coverage(kept, rank))
        needed = _spread([c.needed for c in completable]) if min(c.rows for c in completable) >= rank else \
            f"< {rank} rows: none"
        print(f"{name:11} {f'{any_kept}/{sum(found)}':>24} {f'{enough}/{sum(found)}':>16} "
              f"{statistics.median(ratios) if ratios else float('nan'):28.2f} "
              f"{_spread([c.rows for c in completable]):>20} {_spread([c.entries for c in completable]):>19} "
              f"{needed:>27}")
    if args.cpa:
        _unmix_dense(config, updates, samples)


def _spread(values: list[int]) -> str:
    """The least and the largest of ``values`` over the clients."""
    return f"{min(values):,}-{max(values):,}"


def _unmix_dense(config: RunConfig, updates: list, samples: list[list[int]]) -> None:
    """CPA on every client's dense update, judged: the most a completion of its pruned uploads could give unmixing."""
    dataset = load_dataset(config.data)
    architecture = Architecture.of(config, dataset.input_shape, dataset.num_classes)
    judge = Judge.of_dataset(dataset, config.attack, seed=0)
    observations = [Observation.from_update(update, "none") for update in updates]
    victim = Victim.from_arrays(architecture, observations[0].global_arrays, torch.device("cpu"))
    settings = AttackSettings.from_config(config.attack, seed=0).for_method(
        "cpa", iterations=CPA.entry.iterations, lr=CPA.entry.lr)
    leaked, best = [], []
    start = time.perf_counter()
    for obs, held in zip(observations, samples):
        [result] = CPA.run(victim, [obs], settings)
        verdict = judge(result.images, result.labels, held)
        leaked.append(verdict.images_leaked)
        best.append(verdict.best_ssim)
    print(f"cpa on the dense updates (a perfect completion): {sum(leaked)}/{IMAGES * len(samples)} images leaked "
          f"({leaked} per update; best SSIM {min(best):.2f}-{max(best):.2f}), "
          f"{(time.perf_counter() - start) / len(samples):.1f} s per update")


if __name__ == "__main__":
    main()
