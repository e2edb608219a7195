"""Leakage against local training: a row per attack, and where no attack applies, the reason.

Every cell trains K clients on disjoint images for ``epochs`` local epochs of ``steps`` batches of
``batch`` images each (so N = steps x batch images per client), with plain SGD (lr 0.1) or Adam (lr
0.005, the former default job's), as fl-sim's clients do, then attacks each update with every attack
that applies to it, one row each:

- ``isolation`` (closed form) and ``cpa`` (the Cocktail Party Attack's unmixing, its published 25,000
  Adam steps; all the cell's updates together), where the model's first layer is fully connected;
- Inverting Gradients (``--iterations`` Adam steps, TV ``--tv``), matching ``-update/(lr x steps)`` as one
  batch (``ig approx``) and replaying the local training (``ig replay``); one step of one image is
  FedSGD, where both are the same attack.

An attack that does not apply to the cell's updates gets a row with its reason (``applies`` false),
and a cell where none applies says so: "nothing leaked" is never claimed there. Leaks are the judge's
(identified above chance, SSIM >= 0.6); the ``old_`` columns count what the criterion before it (SSIM >=
0.6 alone) called leaked on the same reconstructions, ``dimitrov_images`` what Dimitrov et al.'s (Hungarian on PSNR,
above 20 dB) counts. ``--default-job`` adds the former default job's
training (Adam lr 0.005, 2 epochs of batch 16 on 128 images; the replay models 32 images per epoch).

Model: ``--model lenet`` (DLG's LeNet: a convolution first, the papers' model) or ``--model mlp`` (the
main job's ReLU MLP, default init: a fully connected first layer). Data: digits at 32x32 (1 channel),
and, with ``--victims FILE``, PRECODE's 128 CIFAR-10 victim images (3 channels, converted to a temporary
image folder; never committed).

    python benchmarks/leakage_table.py [--model lenet|mlp] [--datasets digits victims] [--victims FILE]
        [--clients 8] [--iterations 1000] [--steps 1 2 5 10] [--batches 1 4] [--epochs 1 2]
        [--optimizers sgd adam] [--default-job] [--csv FILE]

Each finished row is appended to ``--csv`` at once and printed.
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

from attacker.attacks import INVERSIONS, AttackSettings
from attacker.attacks.base import Reconstruction
from attacker.attacks.ig import Variant, plan_attack, run_plans
from attacker.judge import Judge, Verdict
from attacker.observation import Observation
from attacker.victim import Victim
from fl_sim.config import RunConfig
from fl_sim.config.presets import PAPERS
from fl_sim.data import ImageData, load_dataset
from fl_sim.data.convert import load_tensor_images, write_image_folder
from fl_sim.models import Architecture
from lab.offline import intercepted_updates

from csv_rows import RowLog
from dimitrov_criterion import recovered_images
from figures import Row, matched, save_rows
from old_criterion import old_leaks

FIELDS = ["dataset", "model", "optimizer", "steps", "batch", "epochs", "attack", "applies", "clients_leaked",
          "clients", "images_leaked", "images_identified", "images_held", "old_clients_leaked", "old_images_leaked",
          "dimitrov_images", "iip", "mean_ssim", "label_accuracy", "seconds_per_update", "why_not"]
#: The models of the table: the papers' LeNet, or the main job's MLP (default init).
MODELS = {"lenet": PAPERS, "mlp": {**PAPERS, "model.name": "mlp", "model.init": "default", "model.depth": 1}}
#: The local optimizers: plain SGD at the papers' lr, Adam at the former default job's.
OPTIMIZERS = {"sgd": {"train.optimizer": "sgd", "train.lr": 0.1},
              "adam": {"train.optimizer": "adam", "train.lr": 0.005}}
#: The attacks of a row each, in the order they are tried.
ATTACK_ROWS = ("isolation", "cpa", "ig approx", "ig replay")


def data_settings(name: str, victims: Path | None, workdir: Path) -> dict | None:
    """The ``data.*`` settings of ``name``; ``None`` (with a line on stderr) where its file is absent."""
    if name in ("digits", "faces"):  # embedded: nothing to find
        return {"data.dataset": name}
    if victims is None or not victims.is_file():
        print(f"skipped victims: {victims} not found (pass --victims ../shared/data/precode-victims/"
              f"128CIF_RECDATA.dict)", file=sys.stderr)
        return None
    folder = workdir / "victims"
    if not folder.exists():
        write_image_folder(*load_tensor_images(victims), folder)
    return {"data.dataset": "imagefolder", "data.root": str(folder), "data.channels": 3, "data.test-fraction": 0.05}


def measure(flat: dict, images_per_client: int, clients: int, attacks: list[str], iterations: int,
            tv: float, figure: list[Row] | None = None) -> list[dict]:
    """Attack ``clients`` updates of the training in ``flat`` with each of ``attacks``; one row per attack.

    An attack that does not apply gets a row with its reason. With ``figure``, the first client's images
    (once) and each attack's reconstructions of them, under the image each was matched to, are appended to it.
    """
    config = RunConfig.from_flat(flat)
    dataset = load_dataset(config.data)
    order = np.random.default_rng(0).permutation(len(dataset.train))  # classes mixed, as an IID partition
    samples = [[int(order[(c * images_per_client + i) % len(order)]) for i in range(images_per_client)]
               for c in range(clients)]  # disjoint while there are enough images
    updates, truths = intercepted_updates(config, samples)
    observations = [Observation.under(update, config.defense) for update in updates]
    architecture = Architecture.of(config, dataset.input_shape, dataset.num_classes)
    victim = Victim.from_arrays(architecture, observations[0].global_arrays, torch.device("cpu"))
    settings = AttackSettings.from_config(config.attack, seed=0)
    judge = Judge.of_dataset(dataset, config.attack, seed=0)
    rows, drawn = [], False
    for attack in attacks:
        method, _, mode = attack.partition(" ")
        reason = INVERSIONS[method].why_not(victim, observations[0])
        if reason is not None:
            rows.append({"attack": attack, "applies": False, "why_not": reason})
            continue
        start = time.perf_counter()
        if method == "ig":
            ig = settings.for_method("ig", iterations=iterations)
            plans = [plan_attack(victim, obs, Variant(tv=tv, multistep=mode), ig) for obs in observations]
            recs = run_plans(victim, plans, ig)
        else:
            recs = INVERSIONS[method].run(victim, observations, settings.for_method(method))
        seconds = (time.perf_counter() - start) / clients
        verdicts = [judge(rec.images, rec.labels, held) for rec, held in zip(recs, samples)]
        images = [image for verdict in verdicts for image in verdict.images]
        old = [old_leaks(rec.images, truth.tensors()[0]) for rec, truth in zip(recs, truths)]
        recovered = [recovered_images(rec.images, truth.tensors()[0]) for rec, truth in zip(recs, truths)]
        if figure is not None:
            _add_to_figure(figure, flat, attack, truths[0], recs[0], verdicts[0], with_truth=not drawn)
            drawn = True
        rows.append({"attack": attack, "applies": True, "clients_leaked": sum(v.leaked for v in verdicts),
                     "clients": len(verdicts), "images_leaked": sum(i.leaked for i in images),
                     "images_identified": sum(i.identified for i in images),
                     "images_held": sum(v.held for v in verdicts),
                     "old_clients_leaked": sum(n > 0 for n in old), "old_images_leaked": sum(old),
                     "dimitrov_images": sum(recovered),
                     "iip": round(statistics.mean(v.iip for v in verdicts), 3),
                     "mean_ssim": round(statistics.mean(i.scores.ssim for i in images), 3) if images else 0.0,
                     "label_accuracy": round(statistics.mean(v.label_accuracy for v in verdicts), 3),
                     "seconds_per_update": round(seconds, 2)})
    return rows


def _add_to_figure(figure: list[Row], flat: dict, attack: str, truth: ImageData, rec: Reconstruction,
                   verdict: Verdict, with_truth: bool) -> None:
    images = truth.tensors()[0]
    if with_truth:
        steps = f"{len(images) // flat['train.batch-size']} steps x batch {flat['train.batch-size']}"
        figure.append((f"{flat['train.local-epochs']} ep, {steps}", images, None))
    shown, slots = matched(rec.images, [image.match for image in verdict.images], len(images))
    scores = [0.0] * len(images)
    for image in verdict.images:
        if image.match in slots:
            scores[image.match] = image.scores.ssim
    figure.append((f"{flat['train.optimizer']} {attack}", shown, scores))


def main() -> None:
    """Measure every cell and print the table as it grows."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="lenet")
    parser.add_argument("--datasets", nargs="+", default=["digits", "victims"], choices=["digits", "faces", "victims"])
    parser.add_argument("--victims", type=Path, default=Path("../shared/data/precode-victims/128CIF_RECDATA.dict"))
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=1000, help="IG's Adam steps")
    parser.add_argument("--tv", type=float, default=0.01)
    parser.add_argument("--max-images", type=int, default=64, help="attack.max-images (the default job's cell "
                                                                   "uses 32, the default)")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 5, 10])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--optimizers", nargs="+", choices=sorted(OPTIMIZERS), default=["sgd"])
    parser.add_argument("--attacks", nargs="+", choices=ATTACK_ROWS, default=list(ATTACK_ROWS))
    parser.add_argument("--default-job", action="store_true", help="add the former default job's training (Adam)")
    parser.add_argument("--csv", type=Path, default=Path("leakage_table.csv"))
    parser.add_argument("--figure", type=Path, help="also write a PNG: the first client's images over each "
                                                    "cell's reconstructions")
    args = parser.parse_args()
    figure: list[Row] | None = [] if args.figure else None
    torch.set_num_threads(1)
    workdir = Path(tempfile.mkdtemp(prefix="fl-sim-leakage-"))
    with RowLog(args.csv, FIELDS) as table:
        for name in args.datasets:
            data = data_settings(name, args.victims, workdir)
            if data is None:
                continue
            cells = [(OPTIMIZERS[optimizer], steps, batch, epochs) for optimizer in args.optimizers
                     for epochs in args.epochs for batch in args.batches for steps in args.steps]
            if args.default_job:
                cells.append(({**OPTIMIZERS["adam"], "train.batch-size": 16, "attack.max-images": 32}, 8, 16, 2))
            for training, steps, batch, epochs in cells:
                flat = {**data, **MODELS[args.model], "attack.max-images": args.max_images, **training,
                        "train.batch-size": batch, "train.local-steps": 0, "train.local-epochs": epochs}
                fedsgd = steps == epochs == batch == 1 and flat["train.optimizer"] == "sgd"
                attacks = [a for a in args.attacks if not (fedsgd and a == "ig replay")]  # the same attack there
                rows = measure(flat, steps * batch, args.clients, attacks, args.iterations, args.tv, figure)
                if not any(row["applies"] for row in rows):
                    print(f"no attack applies to {name} {flat['train.optimizer']} {steps} steps x batch {batch} x "
                          f"{epochs} epochs: nothing is claimed about it", file=sys.stderr)
                for row in rows:
                    row.update(dataset=name, model=args.model, optimizer=flat["train.optimizer"], steps=steps,
                               batch=batch, epochs=epochs)
                    table.add({field: row.get(field, "") for field in FIELDS})
    if figure:
        title = (f"{args.model}: attacks against local training\nfirst client, SSIM under each image")
        print(f"figure: {save_rows(args.figure, figure, title)}")


if __name__ == "__main__":
    main()
