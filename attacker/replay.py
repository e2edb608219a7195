"""Differentiable replay of a client's local training: what the server knows it did, redone on dummy data.

The server sent the training settings (optimizer, lr, momentum, weight decay, batch size, local
epochs or steps, FedProx's proximal term) and the client reported how many examples it holds and
how many steps it took. :func:`simulate_update` redoes exactly that training on dummy images,
differentiably, as :func:`fl_sim.training.train_local` does it: a fresh optimizer every round
(torch's SGD with momentum and weight decay, or Adam), and per batch the mean cross-entropy plus
the model's penalty (PRECODE's KL) plus FedProx's proximal term. Matching the simulated update
with the observed one is the FedAvg attack of Dimitrov et al., "Data Leakage in Federated
Averaging" (TMLR 2022): simulate the client's training, with the unobserved intermediate weights
it generates.

Unknown batch order (the client reshuffles every epoch with its own randomness). We follow the
same paper: every epoch gets its own copy of the N dummy images, split into batches in a fixed
order (for one epoch any fixed order is as good as the true one, the dummies being free), and an
epoch-order-invariant prior ties the copies together: per recovered label, each copy's mean
image is pulled towards the mean over copies (a statistic that no reordering within an epoch
changes). The reconstruction is the average of the copies, each matched to the first one by an
optimal assignment within labels. This is the simplest form of the paper's prior and matching,
not its exact one.

Labels are counted from the update (:mod:`attacker.labels`), but which step trained on which
label matters as much as the images (the classifier's update is mostly the labels'): before the
images are optimised, :func:`search_labels` swaps labels between steps, and changes single
labels, while that lowers the matching cost of a replay on neutral grey images (a greedy
search; at most 256 replays without double backward, fewer for long local training).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from attacker.stop import Stop
from attacker.victim import Victim
from fl_sim.config import TrainConfig

#: torch.optim.Adam's defaults, which :func:`fl_sim.training.make_optimizer` keeps.
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8
#: Weight of the epoch-order-invariant prior (squared distance of per-label mean images, per pixel).
EPOCH_PRIOR_WEIGHT = 0.1
#: Passes of the greedy label search, and its budget in replayed local steps (256 replays of 20 steps).
LABEL_SEARCH_PASSES = 2
LABEL_SEARCH_STEPS = 5120

Arrays = dict[str, torch.Tensor]


@dataclass(frozen=True)
class ReplaySchedule:
    """Which dummy images each replayed local step trains on.

    ``copies`` epochs each have ``images`` dummy images (slots ``e * images ... (e + 1) * images - 1``);
    ``batches[s]`` lists the slots of step ``s``.
    """

    images: int
    copies: int
    batches: tuple[tuple[int, ...], ...]

    @property
    def slots(self) -> int:
        """Dummy images optimised in all: one copy per epoch."""
        return self.images * self.copies


def replay_schedule(num_examples: int, batch_size: int, local_steps: int, max_images: int) -> ReplaySchedule:
    """The batches of ``local_steps`` steps over ``num_examples`` images in batches of ``batch_size``.

    As :func:`fl_sim.training.batch_schedule` draws them: full passes with a smaller last batch,
    and, in local-steps mode, only as many batches as steps. With more than ``max_images``
    distinct images, each copy holds ``max_images`` and batches cycle through them.
    """
    batch = max(1, min(batch_size, num_examples))
    steps_per_epoch = math.ceil(num_examples / batch)
    copies = math.ceil(local_steps / steps_per_epoch)
    images = min(num_examples, local_steps * batch, max_images)
    batches = []
    for step in range(local_steps):
        epoch, index = divmod(step, steps_per_epoch)
        start = index * batch
        batches.append(tuple(epoch * images + i % images for i in range(start, min(start + batch, num_examples))))
    return ReplaySchedule(images=images, copies=copies, batches=tuple(batches))


def simulate_update(victim: Victim, x: torch.Tensor, labels: torch.Tensor, train: TrainConfig,
                    batches: tuple[tuple[int, ...], ...]) -> Arrays:
    """``params_after - params_before`` of the client's local training on ``x`` ``[slots, C, H, W]``.

    Differentiable in ``x`` (and ``vmap``-able): every step is a functional optimizer step.
    """
    params = dict(victim.params)
    state: dict[str, Arrays] = {}
    for step, rows in enumerate(batches, start=1):
        index = torch.tensor(rows, device=x.device)
        grads = victim.gradient(x[index], labels[index], params)
        if train.proximal_mu:  # FedProx's term, whose gradient is mu (w - w_global)
            grads = {n: g + train.proximal_mu * (params[n] - victim.params[n]) for n, g in grads.items()}
        params = _optimizer_step(params, grads, state, step, train)
    return {n: params[n] - victim.params[n] for n in victim.param_names}


def _optimizer_step(params: Arrays, grads: Arrays, state: dict[str, Arrays], step: int,
                    train: TrainConfig) -> Arrays:
    """One step of torch's SGD (momentum, no dampening, L2 weight decay) or Adam, without in-place ops."""
    grads = {n: g + train.weight_decay * params[n] for n, g in grads.items()} if train.weight_decay else grads
    if train.optimizer == "sgd":
        if train.momentum:
            previous = state.get("momentum")
            grads = grads if previous is None else {n: train.momentum * previous[n] + g for n, g in grads.items()}
            state["momentum"] = grads
        return {n: params[n] - train.lr * g for n, g in grads.items()}
    beta1, beta2 = ADAM_BETAS
    first = {n: (1 - beta1) * g + (beta1 * state["m"][n] if "m" in state else 0) for n, g in grads.items()}
    second = {n: (1 - beta2) * g * g + (beta2 * state["v"][n] if "v" in state else 0) for n, g in grads.items()}
    state["m"], state["v"] = first, second
    step_size = train.lr / (1 - beta1 ** step)
    root_correction = math.sqrt(1 - beta2 ** step)
    return {n: params[n] - step_size * first[n] / (_safe_sqrt(second[n]) / root_correction + ADAM_EPS)
            for n in grads}


def _safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    """``sqrt(v)`` whose derivative is 0, not infinite, where ``v`` is 0 (a coordinate with no gradient)."""
    positive = v > 0
    return torch.where(positive, v, torch.ones_like(v)).sqrt() * positive


def search_labels(cost: Callable[[torch.Tensor], float], labels: torch.Tensor, schedule: ReplaySchedule,
                  num_classes: int, stop: Stop | None = None) -> torch.Tensor:
    """Per-slot labels (each epoch copy its own order) after greedy moves that lower ``cost``.

    ``cost(labels)`` is the matching cost of a replay with those labels. Moves: swap two labels
    between steps within a copy (the order), and, with one copy, change one slot's label to
    another class (the counts, which the bias-gradient estimate can get wrong when the model
    moves between steps). Moves that change nothing or were tried are skipped; at most
    :data:`LABEL_SEARCH_STEPS` local steps are replayed in all (16 to 256 replays), fewer when ``stop``'s
    budget is spent first (the best labels so far are kept).
    """
    step_of = {slot: step for step, rows in enumerate(schedule.batches) for slot in rows}
    best_labels, best = labels.clone(), cost(labels)
    budget = min(256, max(16, LABEL_SEARCH_STEPS // len(schedule.batches)))

    def consider(trial: torch.Tensor) -> bool:
        nonlocal best_labels, best, budget
        if stop is not None and stop.spent:
            budget = 0
            return False
        budget -= 1
        value = cost(trial)
        if value < best:
            best_labels, best = trial, value
            return True
        return False

    for _ in range(LABEL_SEARCH_PASSES):
        improved, tried = False, set()
        for copy in range(schedule.copies):
            slots = [s for s in range(copy * schedule.images, (copy + 1) * schedule.images) if s in step_of]
            for i, a in enumerate(slots):
                for b in slots[i + 1:]:
                    key = (step_of[a], int(best_labels[a]), step_of[b], int(best_labels[b]))
                    if step_of[a] == step_of[b] or key[1] == key[3] or key in tried or budget <= 0:
                        continue
                    tried.add(key)
                    trial = best_labels.clone()
                    trial[[a, b]] = best_labels[[b, a]]
                    improved |= consider(trial)
        for slot in range(schedule.images):
            for label in range(num_classes):
                key = (slot, int(best_labels[slot]), label)
                if label == key[1] or key in tried or budget <= 0:
                    continue
                tried.add(key)
                improved |= consider(_relabelled(best_labels, slot, label, schedule))
        if not improved:
            break
    return best_labels


def _relabelled(labels: torch.Tensor, slot: int, label: int, schedule: ReplaySchedule) -> torch.Tensor:
    """``labels`` with slot ``slot`` of the first copy set to ``label``, and the same change in every copy.

    In every later copy the first slot that held the same old label changes, so that every copy keeps the
    same multiset of labels.
    """
    trial, old = labels.clone(), int(labels[slot])
    trial[slot] = label
    for copy in range(1, schedule.copies):
        own = trial[copy * schedule.images:(copy + 1) * schedule.images]
        own[int((own == old).nonzero()[0])] = label
    return trial


def epoch_prior(x: torch.Tensor, labels: torch.Tensor, schedule: ReplaySchedule, num_classes: int) -> torch.Tensor:
    """Mean squared distance of every copy's per-label mean image to the mean over copies (0 for one copy)."""
    if schedule.copies == 1:
        return x.new_zeros(())
    classes = torch.arange(num_classes, device=labels.device)
    per_label = (labels[:, None] == classes).to(x.dtype).reshape(schedule.copies, schedule.images, num_classes)
    per_label = per_label / per_label.sum(dim=1, keepdim=True).clamp(min=1)
    copies = x.reshape(schedule.copies, schedule.images, -1)
    means = torch.einsum("eic,eip->ecp", per_label, copies)
    return EPOCH_PRIOR_WEIGHT * (means - means.mean(dim=0)).pow(2).mean() * schedule.copies


def squared_distances(first: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``[N, M]`` summed squared differences between flattened images ``first`` ``[N, P]`` and ``other`` ``[M, P]``."""
    return ((first[:, None, :] - other[None, :, :]) ** 2).sum(-1)


def negative_psnr(first: np.ndarray, other: np.ndarray) -> np.ndarray:
    """``[N, M]`` minus the PSNR (data range 1) of every pair: Dimitrov et al.'s matching of epoch copies."""
    mse = squared_distances(first, other) / first.shape[1]
    return 10 * np.log10(np.maximum(mse, 1e-12))


def merge_copies(x: torch.Tensor, labels: torch.Tensor, schedule: ReplaySchedule,
                 distance: Callable[[np.ndarray, np.ndarray], np.ndarray] = squared_distances,
                 within_labels: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One image per distinct dummy, with its label: the copies averaged, each matched to the first.

    By an optimal assignment of ``distance`` between every later copy's images and the first's, within labels
    unless ``within_labels`` is off (the labels are then the first copy's).
    """
    first_labels = labels[: schedule.images]
    if schedule.copies == 1:
        return x, first_labels
    copies = x.reshape(schedule.copies, schedule.images, *x.shape[1:])
    copy_labels = labels.reshape(schedule.copies, schedule.images).numpy()
    used = {slot for rows in schedule.batches for slot in rows}
    first = copies[0].flatten(1).numpy()
    merged, weight = copies[0].clone(), torch.ones(schedule.images)
    for index in range(1, schedule.copies):
        own = [i for i in range(schedule.images) if index * schedule.images + i in used]  # a last epoch can be partial
        cost = distance(first, copies[index][own].flatten(1).numpy())
        if within_labels:  # labels must agree
            cost[copy_labels[0][:, None] != copy_labels[index][own][None, :]] = np.abs(cost).max() * 10 + 1
        rows, cols = linear_sum_assignment(cost)
        merged[rows] += copies[index][own][cols]
        weight[rows] += 1
    return merged / weight.view(-1, *[1] * (x.dim() - 1)), first_labels
