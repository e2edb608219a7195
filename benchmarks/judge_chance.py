"""The judge against chance: what it calls leaked when handed images the client never held, or noisy truths.

For each data set and count N, ``--draws`` times: N images the client "held" and N decoys (real
images of the same data set the client never held) are drawn at random, and the decoys are judged
as if they were the update's reconstructions, against a reference of every other image of the
data set (decoys, reference and the client's images disjoint). The table gives the share of decoy
images and of decoy updates judged leaked (and identified, whatever their SSIM), for random decoys
and for decoys of the same labels as the held images (the harder case). Then the held images with
Gaussian noise at 25 dB PSNR (measured after clipping to [0, 1]) are judged: the share of updates
and of images that leak. Last, the
judge's time for one update of 128 images on one thread, and the one-off cost of measuring chance.

Data: digits (1,797 images), faces (200), Fashion-MNIST at 28x28 (70,000: the FedAvg table's stand-in for FEMNIST,
from Debian's ``dataset-fashion-mnist``); with ``--victims FILE``, PRECODE's 128 CIFAR-10
victims (3 channels; never committed). The judge measures chance on the same data set.

    python benchmarks/judge_chance.py [--datasets digits faces victims] [--draws 100] [--noise-db 25]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from attacker.judge import Judge, Verdict
from attacker.metrics import psnr
from fl_sim.config import AttackConfig, RunConfig
from fl_sim.data import ImageData, load_dataset
from fl_sim.data.convert import load_tensor_images

COUNTS = {"digits": [1, 4, 8, 16, 32, 128], "faces": [1, 4, 8, 16, 32], "victims": [1, 4, 8, 16, 32],
          "fashion-mnist": [1, 10, 50, 100]}
#: The criterion's settings under test: the project's defaults.
DEFAULTS = AttackConfig()


def images_of(name: str, victims: Path) -> ImageData | None:
    """Every image of ``name``; ``None`` (with a line) where the victims' file is absent."""
    if name == "victims":
        if not victims.is_file():
            print(f"skipped victims: {victims} not found")
            return None
        images, labels = load_tensor_images(victims)
        return ImageData((images * 255).round().to(torch.uint8), labels)
    size = {"data.image-size": 28} if name == "fashion-mnist" else {}
    return load_dataset(RunConfig.from_flat({"data.dataset": name, **size}).data).all_images()


def noisy(images: torch.Tensor, target_db: float) -> torch.Tensor:
    """``images`` with Gaussian noise, clipped to [0, 1], at a mean PSNR of ``target_db``.

    The noise's scale is found by bisection on the clipped images.
    """
    noise = torch.randn_like(images)
    low, high = 0.0, 1.0
    for _ in range(40):
        sigma = (low + high) / 2
        low, high = (sigma, high) if psnr((images + sigma * noise).clamp(0, 1), images).mean() > target_db \
            else (low, sigma)
    return (images + sigma * noise).clamp(0, 1)


def rates(verdicts: list[Verdict]) -> tuple[float, float, float, float]:
    """Images leaked, updates leaked, images identified, updates with an image identified: each a share."""
    images = [image for v in verdicts for image in v.images]
    return (np.mean([i.leaked for i in images]), np.mean([v.leaked for v in verdicts]),
            np.mean([i.identified for i in images]), np.mean([v.images_identified > 0 for v in verdicts]))


def same_label_decoys(rng: np.random.Generator, labels: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Positions of unused images with the labels of ``truth`` (any unused image where a label runs out)."""
    free = np.ones(len(labels), dtype=bool)
    free[truth] = False
    chosen = []
    for label in labels[truth]:
        candidates = np.flatnonzero(free & (labels == label))
        pick = rng.choice(candidates) if len(candidates) else rng.choice(np.flatnonzero(free))
        free[pick] = False
        chosen.append(pick)
    return np.asarray(chosen)


def measure(name: str, data: ImageData, draws: int, noise_db: float) -> None:
    """Print one data set's rows: decoys at random, decoys of the same labels, and noisy truths, per N."""
    judge = Judge(data, DEFAULTS.success_ssim, DEFAULTS.false_leak_rate)
    labels = data.labels.numpy()
    print(f"\n{name}: {len(data)} images, {draws} draws per cell; the reference is every image but the "
          f"update's and the decoys")
    print(f"{'N':>4} {'margin dB':>9} | {'random decoys: img leak':>23} {'upd leak':>8} {'img id':>7} {'upd id':>7} | "
          f"{'same-label: img leak':>20} {'upd leak':>8} {'img id':>7} {'upd id':>7} | "
          f"{'noisy: upd leak':>15} {'img leak':>8} {'img id':>7} {'SSIM>=0.6':>9}")
    for count in COUNTS[name]:
        if 3 * count > len(data):
            continue
        rng = np.random.default_rng(count)
        random_decoys, label_decoys, noised = [], [], []
        for _ in range(draws):
            order = rng.permutation(len(data))
            held = order[:count]
            for decoys, verdicts in ((order[count:2 * count], random_decoys),
                                     (same_label_decoys(rng, labels, held), label_decoys)):
                images, decoy_labels = data.subset(decoys).tensors()
                verdicts.append(judge(images, decoy_labels, held, excluded=decoys))
            truth, truth_labels = data.subset(held).tensors()
            noised.append(judge(noisy(truth, noise_db), truth_labels, held))
        margin = noised[0].chance.required_margin_db
        r, s, n = rates(random_decoys), rates(label_decoys), rates(noised)
        above = np.mean([i.scores.ssim >= DEFAULTS.success_ssim for v in noised for i in v.images])
        print(f"{count:>4} {margin:>9.2f} | {r[0]:>23.2%} {r[1]:>8.1%} {r[2]:>7.2%} {r[3]:>7.1%} | "
              f"{s[0]:>20.2%} {s[1]:>8.1%} {s[2]:>7.2%} {s[3]:>7.1%} | {n[1]:>15.1%} {n[0]:>8.1%} {n[2]:>7.1%} "
              f"{above:>9.1%}", flush=True)


def speed(data: ImageData, count: int = 128) -> None:
    """Print the one-off seconds to measure chance at ``count`` and the seconds to judge one update of ``count``."""
    held = np.arange(count)
    truth, labels = data.subset(held).tensors()
    guesses = noisy(truth, 25.0)
    start = time.perf_counter()
    judge = Judge(data, DEFAULTS.success_ssim, DEFAULTS.false_leak_rate)
    judge.chance.at(count, count)
    calibration = time.perf_counter() - start
    times = []
    for _ in range(10):
        start = time.perf_counter()
        judge(guesses, labels, held)
        times.append(time.perf_counter() - start)
    print(f"\njudge speed, 1 thread: one update of {count} images against its truth and the other "
          f"{len(data) - count} images: median {np.median(times) * 1000:.1f} ms over 10 "
          f"(chance at this count, once per run: {calibration:.2f} s)")


def main() -> None:
    """Measure each data set, then the judge's speed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["digits", "faces", "victims"], choices=list(COUNTS))
    parser.add_argument("--victims", type=Path, default=Path("../shared/data/precode-victims/128CIF_RECDATA.dict"))
    parser.add_argument("--draws", type=int, default=100)
    parser.add_argument("--noise-db", type=float, default=25.0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    for name in args.datasets:
        data = images_of(name, args.victims)
        if data is not None:
            measure(name, data, args.draws, args.noise_db)
    speed(images_of("digits", args.victims))


if __name__ == "__main__":
    main()
