"""PRECODE's own protocol on PRECODE's own victims, run with this project's attack code.

The official notebook (dAI-SY-Group/PRECODE, ``PRECODE.ipynb``) attacks CIFAR-10 images one at
a time: an untrained MLP (3072-1024-1024-10, ReLU, PyTorch's default init) against the same MLP
with PRECODE's bottleneck (K 256, beta 1e-3) before its output layer; the client's gradient is
that of cross-entropy plus the bottleneck's loss, in train mode, on one normalised image; the
attack is Inverting Gradients with inversefed's settings (Adam lr 0.01 on signed gradients,
7,000 iterations, step decay x0.1 at 3/8, 5/8, 7/8, cosine cost over all layers, TV 1e-6,
randn init in the normalised space, pixels boxed to [0, 1] after de-normalisation, 1 restart
scored by loss). Printed there, over 10 images: mean SSIM MLP 0.9997, VB-MLP 0.0045.

Here: the same models from this project's zoo (``model.name=mlp``, ``model.init=default``,
``precode.enabled``), the same gradient, the same optimisation through ``attacker.engine``
(``--batch`` attacks as one vmap-batched problem), labels recovered by the server
(``attacker.labels``; the notebook hands the attack the true label), and two SSIMs:
- ``ssim``: scikit-image's SSIM on the de-normalised images in [0, 1] (``data_range=1``), as this
  project computes it (``attacker.metrics``), image i against victim i, as the notebook pairs them;
- ``ssim_nb``: the notebook's way, scikit-image on the *normalised* images with the data range
  its old scikit-image assumed for floats (2), the value clipped at 0.

Then the worst case: the analytic attack (``attacker.attacks.analytic``) on every victim's
gradient, handed to it as the server observes it (one plain SGD step on one image), and, with
``--zoo``, ``auto`` against the zoo's LeNet and ConvNet with and without PRECODE (see
``worst_case.py``), on images in [0, 1] as fl-sim's clients train on them.

    python benchmarks/precode_paper.py [--victims FILE] [--images 128] [--batch 16] [--iterations 7000]
        [--start 0] [--time-k 16] [--zoo] [--zoo-clients 16] [--csv FILE]

The victims file is never committed (nor a conversion of it); without it the script says so
in one line and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from skimage.metrics import structural_similarity

from attacker.attacks import INVERSIONS, AttackSettings
from attacker.engine import AdamSchedule, minimize
from attacker.labels import recover_labels
from attacker.metrics import ssim
from attacker.objectives import cosine_distance, total_variation
from attacker.observation import Observation
from attacker.victim import Victim
from fl_sim.config import RunConfig
from fl_sim.config.presets import FEDSGD
from fl_sim.data.convert import CIFAR10_MEAN, CIFAR10_STD
from fl_sim.models import Architecture

from csv_rows import RowLog
from leakage_table import data_settings
from worst_case import attack_all

DEFAULT_VICTIMS = Path("../shared/data/precode-victims/128CIF_RECDATA.dict")
NOTEBOOK = {"mlp": 0.9997, "vb-mlp": 0.0045}
#: inversefed's settings in PRECODE's notebook.
NOTEBOOK_LR, NOTEBOOK_TV = 0.01, 1e-6
FIELDS = ["model", "attack", "images", "iterations", "batch", "mean_ssim", "mean_ssim_nb", "share_ssim_0.6",
          "label_accuracy", "seconds", "notebook_mean_ssim"]
SHAPE = (3, 32, 32)


def notebook_victim(precode: bool, device: torch.device) -> Victim:
    """The notebook's untrained MLP (PyTorch's default init), with PRECODE's bottleneck if ``precode``."""
    config = RunConfig.from_flat({"model.name": "mlp", "model.init": "default", "model.width": 1024,
                                  "model.depth": 2, "precode.enabled": precode, "data.channels": 3})
    model = Architecture.of(config, SHAPE, 10).build(seed=0)
    return Victim.from_arrays(Architecture.of(config, SHAPE, 10), model.state_dict(), device)


def notebook_ssim(reconstruction: np.ndarray, truth: np.ndarray) -> float:
    """SSIM as PRECODE's notebook computed it: normalised ``[C, H, W]`` images, float data range 2, clipped at 0."""
    value = structural_similarity(np.moveaxis(truth, 0, -1), np.moveaxis(reconstruction, 0, -1),
                                  channel_axis=-1, data_range=2.0)
    return max(0.0, float(value))


def notebook_gradients(victim: Victim, images: torch.Tensor, labels: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """Each image's gradient as the notebook's client computes it: CE (+ the bottleneck's loss), train mode."""
    return [victim.gradient(x.unsqueeze(0).to(victim.device), label.view(1).to(victim.device))
            for x, label in zip(images, labels)]


def notebook_ig(victim: Victim, gradients: list[dict[str, torch.Tensor]], iterations: int, batch: int,
                mean: torch.Tensor, std: torch.Tensor, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, float]:
    """IG with the notebook's settings on each gradient, ``batch`` attacks per vmap-batched problem.

    Returns the normalised reconstructions ``[N, 3, H, W]``, the labels the server recovered and
    the seconds spent optimising.
    """
    schedule = AdamSchedule(iterations=iterations, lr=NOTEBOOK_LR, box=((0 - mean) / std, (1 - mean) / std))

    def cost(x, label, target):
        return cosine_distance(victim.gradient(x, label), target) + NOTEBOOK_TV * total_variation(x)

    found, recovered, seconds = [], [], 0.0
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, len(gradients), batch):
        targets = gradients[start:start + batch]
        labels = torch.stack([recover_labels(t, 1, victim).to(victim.device) for t in targets])
        stacked = {name: torch.stack([t[name] for t in targets]) for name in victim.param_names}
        x0 = torch.randn((len(targets), 1, *SHAPE), generator=generator).to(victim.device)
        begin = time.perf_counter()
        (x,) = minimize(cost, x0, (labels, stacked), schedule, batched=batch > 1).variables
        seconds += time.perf_counter() - begin
        found.append(x[:, 0].cpu())
        recovered.append(labels[:, 0].cpu())
    return torch.cat(found), torch.cat(recovered), seconds


def as_fedsgd_observations(victim: Victim, gradients: list[dict[str, torch.Tensor]]) -> list[Observation]:
    """The gradients as a server observes them: one plain SGD step (lr 0.1) on one image, no defense."""
    train = RunConfig.from_flat(FEDSGD).train
    global_arrays = {name: value.cpu() for name, value in victim.params.items()}
    return [Observation(server_round=1, node_id=i, partition_id=i, global_arrays=global_arrays,
                        update={name: -train.lr * g.cpu() for name, g in gradient.items()}, train=train,
                        num_examples=1, local_steps=1) for i, gradient in enumerate(gradients)]


def run_protocol(images: torch.Tensor, labels: torch.Tensor, args, device: torch.device, log: RowLog) -> None:
    """The notebook's table for MLP and VB-MLP.

    IG with its settings on the first ``--images`` victims, and the analytic attack (the worst case for these models) on
    all of them.
    """
    mean, std = (torch.tensor(v).view(3, 1, 1).to(device) for v in (CIFAR10_MEAN, CIFAR10_STD))

    def pixels(x: torch.Tensor) -> torch.Tensor:
        return (x.to(device) * std + mean).clamp(0, 1).cpu()

    def add_row(name: str, attack: str, rec: torch.Tensor, recovered: torch.Tensor, iterations: int, batch: int,
                seconds: float, first: int = 0) -> None:
        truth = images[first:first + len(rec)]
        ours = ssim(pixels(rec), pixels(truth)).numpy()
        theirs = [notebook_ssim(r, t) for r, t in zip(rec.numpy(), truth.numpy())]
        log.add({"model": name, "attack": attack, "images": len(rec), "iterations": iterations, "batch": batch,
                 "mean_ssim": float(ours.mean()), "mean_ssim_nb": statistics.mean(theirs),
                 "share_ssim_0.6": float((ours >= 0.6).mean()),
                 "label_accuracy": float((recovered == labels[first:first + len(rec)]).float().mean()),
                 "seconds": seconds,
                 "notebook_mean_ssim": NOTEBOOK[name] if attack.startswith("ig") else ""})

    for name, precode in (("mlp", False), ("vb-mlp", True)):
        victim = notebook_victim(precode, device)
        gradients = notebook_gradients(victim, images, labels)
        observations = as_fedsgd_observations(victim, gradients)
        settings = AttackSettings.from_config(RunConfig().attack, seed=0).for_method("analytic")
        begin = time.perf_counter()
        results = INVERSIONS["analytic"].run(victim, observations, settings)
        add_row(name, "analytic", torch.cat([r.images for r in results]), torch.cat([r.labels for r in results]),
                1, len(results), time.perf_counter() - begin)
        if args.images:
            chosen = slice(args.start, args.start + args.images)
            rec, recovered, seconds = notebook_ig(victim, gradients[chosen], args.iterations, args.batch, mean, std)
            add_row(name, f"ig (notebook) from {args.start}", rec, recovered, args.iterations, args.batch, seconds,
                    first=args.start)


def time_batched_vs_one_by_one(images: torch.Tensor, k: int, iterations: int, device: torch.device) -> None:
    """Seconds per iteration of K attacks batched vs one by one, extrapolated to 128 images x 7,000 iterations."""
    mean, std = (torch.tensor(v).view(3, 1, 1).to(device) for v in (CIFAR10_MEAN, CIFAR10_STD))
    for name, precode in (("mlp", False), ("vb-mlp", True)):
        victim = notebook_victim(precode, device)
        gradients = notebook_gradients(victim, images[:k], torch.zeros(k, dtype=torch.long))
        per_iteration = {}
        for batch in (1, k):
            _, _, seconds = notebook_ig(victim, gradients, iterations, batch, mean, std)
            per_iteration[batch] = seconds / iterations
        hours = {mode: per_iteration[mode] * 7000 * 128 / k / 3600 for mode in (1, k)}
        print(f"{name}: {k} attacks, s/iteration one by one {per_iteration[1]:.3f}, batched {per_iteration[k]:.3f} "
              f"({per_iteration[1] / per_iteration[k]:.2f}x); 128 images x 7,000 iterations: one by one "
              f"{hours[1]:.1f} h, batched {hours[k]:.1f} h", flush=True)


def main() -> None:
    """Run what the flags ask for; every finished row is printed (and appended to ``--csv``)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--victims", type=Path, default=DEFAULT_VICTIMS)
    parser.add_argument("--images", type=int, default=128, help="first N victims attacked with the notebook's IG "
                                                               "(0 = only the analytic attack, on all)")
    parser.add_argument("--start", type=int, default=0, help="first victim of the IG attacks (to split a long run)")
    parser.add_argument("--batch", type=int, default=16, help="attacks per vmap-batched problem (1 = one by one)")
    parser.add_argument("--iterations", type=int, default=7000)
    parser.add_argument("--time-k", type=int, default=0, help="also time K attacks batched vs one by one")
    parser.add_argument("--time-iterations", type=int, default=20)
    parser.add_argument("--zoo", action="store_true", help="also auto against LeNet and ConvNet, with and without "
                                                           "PRECODE, on --zoo-clients victims")
    parser.add_argument("--zoo-clients", type=int, default=16)
    parser.add_argument("--zoo-iterations", type=int, default=0, help="auto's Adam steps (0 = published defaults)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--csv", type=Path)
    args = parser.parse_args()
    if not args.victims.is_file():
        print(f"skipped: {args.victims} not found (PRECODE's 128CIF_RECDATA.dict; pass --victims FILE)")
        return
    torch.set_num_threads(1)
    device = torch.device(args.device)
    data = torch.load(args.victims, map_location="cpu", weights_only=False)
    workdir = Path(tempfile.mkdtemp(prefix="fl-sim-precode-paper-"))
    log = RowLog(args.csv or workdir / "precode_paper.csv", FIELDS)
    if args.time_k:
        time_batched_vs_one_by_one(data["images"].float(), args.time_k, args.time_iterations, device)
    run_protocol(data["images"].float(), data["labels"].long(), args, device, log)
    if args.zoo:
        for model in ("lenet", "convnet"):
            for precode in (False, True):
                print(f"\n{model}{' + PRECODE' if precode else ''}: auto on {args.zoo_clients} FedSGD updates",
                      flush=True)
                attack_all({**data_settings("victims", args.victims, workdir), **FEDSGD, "model.name": model,
                            "precode.enabled": precode}, args.zoo_clients, args.zoo_iterations)


if __name__ == "__main__":
    sys.exit(main())
