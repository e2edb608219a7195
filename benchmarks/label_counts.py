"""How well the server counts each client's labels from its update (:func:`attacker.labels.count_labels`).

For each setting, ``--clients`` clients each train the global model on their own random sample of the
digits training split, as the setting's local training does; the server estimates the images per class
from the update alone and the table gives the mean count accuracy (``sum_c min(estimate_c, true_c) / N``,
iLRG's) and the share of updates counted exactly, beside what a guess of equal counts per class reaches
(the samples are drawn uniformly, so that guess is strong), against a fresh global model (round 1) and against
one trained centrally for ``--pretrain-steps`` SGD steps on the whole split (a later round's model).
Where :func:`attacker.labels.update_label_counts` does not apply (Adam), the estimator is forced, to
show what it would say, and the row says so.

Settings: the main job's MLP at its former 8 SGD steps on batches of 8 (64 images); the former
default (LeNet, Adam, 2 epochs of batches of 16 over 129 images); the main job's MLP with 2 SGD epochs of
batches of 16 over 129 images.

    python benchmarks/label_counts.py [--clients 10] [--pretrain-steps 300]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from attacker.judge import count_accuracy
from attacker.label_counts import update_label_counts
from attacker.labels import count_labels
from attacker.observation import Observation
from attacker.victim import Victim
from fl_sim.config import RunConfig, TrainConfig
from fl_sim.data import load_dataset
from fl_sim.models import Architecture
from fl_sim.training import train_local
from lab.offline import intercepted_updates

#: name: (settings over the defaults, images per client)
SETTINGS = {
    "MLP, SGD, 8 steps x batch 8 (the main job's until 2026-12-06)": ({"train.local-steps": 8}, 64),
    "former default (LeNet, Adam, 2 epochs x batch 16)": (
        {"model.name": "lenet", "model.init": "dlg", "train.optimizer": "adam", "train.lr": 0.005,
         "train.local-steps": 0, "train.local-epochs": 2, "train.batch-size": 16}, 129),
    "MLP, SGD, 2 epochs x batch 16": ({"train.local-steps": 0, "train.local-epochs": 2, "train.batch-size": 16}, 129),
}


def pretrained_state(config: RunConfig, steps: int) -> dict[str, torch.Tensor]:
    """The run's model after ``steps`` SGD steps (lr 0.1, batches of 32) on the whole training split."""
    dataset = load_dataset(config.data)
    model = Architecture.of(config, dataset.input_shape, dataset.num_classes).build(seed=0)
    train_local(model, dataset.train, TrainConfig(optimizer="sgd", lr=0.1, local_steps=steps, batch_size=32), seed=0)
    return model.state_dict()


def measure(flat: dict, images: int, clients: int, pretrain_steps: int) -> tuple[float, float, float, bool]:
    """Mean count accuracy, share of updates counted exactly, a uniform guess's accuracy, and whether it applies."""
    config = RunConfig.from_flat({"defense.per-client": "", **flat})
    dataset = load_dataset(config.data)
    rng = np.random.default_rng(0)
    samples = [rng.choice(len(dataset.train), size=images, replace=False).tolist() for _ in range(clients)]
    state = pretrained_state(config, pretrain_steps) if pretrain_steps else None
    updates, data = intercepted_updates(config, samples, global_state=state)
    accuracies, uniform, applies = [], [], True
    for update, local in zip(updates, data):
        obs = Observation.from_update(update)
        architecture = Architecture.of(config, dataset.input_shape, dataset.num_classes)
        victim = Victim.from_arrays(architecture, obs.global_arrays, torch.device("cpu"))
        counts = update_label_counts(victim, obs)
        if counts is None:
            applies = False
            head = [f"{victim.head}.weight", f"{victim.head}.bias"]
            counts = count_labels(obs.gradient_estimate(head), obs.most_images, victim)
        accuracies.append(count_accuracy(counts.tolist(), local.labels.tolist()))
        classes = victim.num_classes
        even = [images // classes + (c < images % classes) for c in range(classes)]
        uniform.append(count_accuracy(even, local.labels.tolist()))
    return (statistics.mean(accuracies), sum(a == 1.0 for a in accuracies) / len(accuracies),
            statistics.mean(uniform), applies)


def main() -> None:
    """Print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--pretrain-steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| setting | model | count accuracy | updates counted exactly | a uniform guess | applies |\n"
          "|---|---|---|---|---|---|")
    for name, (flat, images) in SETTINGS.items():
        for label, steps in (("fresh (round 1)", 0), (f"trained ({args.pretrain_steps} steps)", args.pretrain_steps)):
            accuracy, exact, uniform, applies = measure(flat, images, args.clients, steps)
            print(f"| {name} | {label} | {accuracy:.3f} | {exact:.0%} | {uniform:.3f} | "
                  f"{'yes' if applies else 'no (Adam): forced'} |", flush=True)


if __name__ == "__main__":
    main()
