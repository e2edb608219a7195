"""``auto``'s worst case against each attack of its portfolio alone, and what it costs.

K clients each take one plain SGD step (lr 0.1) on one image (FedSGD, the papers' setting) of
DLG's LeNet at 32x32; every update is attacked by ``auto`` (analytic + IG at three TV weights +
iDLG, defense-aware, published iterations unless ``--iterations``), every attack's result is
judged, and the table gives, per attack alone and for the per-update maximum, the share of
clients whose image leaked (identified above chance, SSIM >= 0.6; beside it the old criterion,
SSIM >= 0.6 alone), the mean SSIM and IIP; updates only the old criterion called leaked are
listed with their margins. It also times ``ig`` alone (its defaults: TV 0.1) on the same updates,
and ``auto`` raced (cheapest attack first; an update leaves the portfolio at the first image the
judge finds leaked), for the cost of the worst case in seconds per update, and the
images the raced and the full portfolio identify.

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
from dataclasses import dataclass
from pathlib import Path

import torch

from attacker.attacks import INVERSIONS, AttackSettings
from attacker.attacks.base import Reconstruction
from attacker.judge import Judge, Race, Verdict, worst_case
from attacker.observation import Observation
from attacker.victim import Victim
from fl_sim.config import RunConfig, parse_assignment
from fl_sim.config.presets import FEDSGD
from fl_sim.data import ImageData, load_dataset
from fl_sim.devices import resolve_device
from fl_sim.models import Architecture
from lab.offline import intercepted_updates

from leakage_table import data_settings
from old_criterion import old_leaks

#: The row of the per-update worst case over the portfolio.
WORST = "auto (worst case)"


@dataclass
class WorstCase:
    """``auto`` on every update: each portfolio attack's verdicts, the per-update worst case, and timings."""

    truths: list[ImageData]
    best: list[Reconstruction]
    best_verdicts: list[Verdict]
    per_attack: dict[str, list[Verdict]]
    #: per attack and for the worst case, per update: whether the old criterion called it leaked
    old_leaked: dict[str, list[bool]]
    auto_seconds: float
    ig_seconds: float | None
    #: the raced ``auto`` (an update leaves the portfolio at its first leaked image): its seconds
    #: per update and the images its worst case identifies; the full portfolio's images identified beside
    raced_seconds: float | None
    raced_identified: int | None
    raced_leaked: int | None
    full_identified: int
    full_leaked: int


def attack_worst_case(flat: dict, clients: int, iterations: int, time_ig: bool = True) -> WorstCase:
    """Run ``auto`` (and, with ``time_ig``, ``ig`` alone and the raced ``auto``, for their cost) on FedSGD updates."""
    config = RunConfig.from_flat(flat)
    dataset = load_dataset(config.data)
    stride = max(1, len(dataset.train) // clients)
    samples = [[c * stride] for c in range(clients)]
    updates, truths = intercepted_updates(config, samples)
    observations = [Observation.under(update, config.defense) for update in updates]

    def fresh_victim() -> Victim:  # each timing builds (and compiles) its own steps: none inherits another's
        architecture = Architecture.of(config, dataset.input_shape, dataset.num_classes)
        return Victim.from_arrays(architecture, observations[0].global_arrays, resolve_device(config.attack.device))

    settings = AttackSettings.from_config(config.attack, seed=0).for_method("auto", iterations=iterations)
    judge = Judge.of_dataset(dataset, config.attack, seed=0)
    start = time.perf_counter()
    results = INVERSIONS["auto"].run(fresh_victim(), observations, settings)
    auto_seconds = (time.perf_counter() - start) / clients
    ig_seconds = raced_seconds = raced_identified = raced_leaked = None
    if time_ig:
        start = time.perf_counter()
        INVERSIONS["ig"].run(fresh_victim(), observations, settings.for_method("ig", iterations=iterations or 0))
        ig_seconds = (time.perf_counter() - start) / clients
        race = Race(judge, samples)
        judge.chance.at(1, 1)  # chance is measured once per count: not part of the race's cost
        start = time.perf_counter()
        raced = INVERSIONS["auto"].run(fresh_victim(), observations, settings, settled=race)
        raced_seconds = (time.perf_counter() - start) / clients
        raced_verdicts = [[race.verdicts[id(c)] for c in rec.candidates] for rec in raced]
        raced_identified = sum(max(v.images_identified for v in verdicts) for verdicts in raced_verdicts)
        raced_leaked = sum(max(v.images_leaked for v in verdicts) for verdicts in raced_verdicts)
    per_attack: dict[str, list[Verdict]] = {}
    old_leaked: dict[str, list[bool]] = {}
    best, best_verdicts = [], []
    for rec, held, truth in zip(results, samples, truths):
        verdicts = [judge(c.images, c.labels, held) for c in rec.candidates]
        olds = [old_leaks(c.images, truth.tensors()[0]) > 0 for c in rec.candidates]
        for candidate, verdict, old in zip(rec.candidates, verdicts, olds):
            per_attack.setdefault(candidate.attack, []).append(verdict)
            old_leaked.setdefault(candidate.attack, []).append(old)
        old_leaked.setdefault(WORST, []).append(any(olds))
        winner = worst_case(verdicts)
        best.append(rec.candidates[winner])
        best_verdicts.append(verdicts[winner])
    return WorstCase(truths, best, best_verdicts, per_attack, old_leaked, auto_seconds, ig_seconds, raced_seconds,
                     raced_identified, raced_leaked, sum(v.images_identified for v in best_verdicts),
                     sum(v.images_leaked for v in best_verdicts))


def attack_all(flat: dict, clients: int, iterations: int) -> None:
    """Run auto and ig alone on ``clients`` FedSGD updates; print the per-attack table and the timings."""
    found = attack_worst_case(flat, clients, iterations)
    print(f"{'attack':<26} {'clients leaked':>15} {'old criterion':>14} {'mean SSIM':>10} {'IIP':>6}")
    for name, verdicts in [*found.per_attack.items(), (WORST, found.best_verdicts)]:
        leaked, old = sum(v.leaked for v in verdicts), sum(found.old_leaked[name])
        print(f"{name:<26} {f'{leaked}/{len(verdicts)}':>15} {f'{old}/{len(verdicts)}':>14} "
              f"{statistics.mean(v.mean_ssim for v in verdicts):>10.3f} "
              f"{statistics.mean(v.iip for v in verdicts):>6.2f}")
    for client, (verdict, old) in enumerate(zip(found.best_verdicts, found.old_leaked[WORST])):
        if old and not verdict.leaked:
            image = verdict.images[0]
            print(f"  client {client}: leaked by the old criterion only: SSIM {image.scores.ssim:.3f}, margin "
                  f"{image.margin_db:.2f} dB where chance needs {verdict.chance.required_margin_db:.2f} dB")
    print(f"seconds per update: ig alone {found.ig_seconds:.1f}; auto, full portfolio {found.auto_seconds:.1f} "
          f"({found.auto_seconds / found.ig_seconds:.1f}x), images identified {found.full_identified}/{clients}, "
          f"leaked {found.full_leaked}/{clients}; auto raced {found.raced_seconds:.1f} "
          f"({found.raced_seconds / found.ig_seconds:.1f}x), images identified {found.raced_identified}/{clients}, "
          f"leaked {found.raced_leaked}/{clients}", flush=True)


def main() -> None:
    """Measure each data set."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["digits", "victims"], choices=["digits", "faces", "victims"])
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
