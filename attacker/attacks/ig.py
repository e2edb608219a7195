"""Inverting Gradients (Geiping et al., NeurIPS 2020), batched over every update of a round.

Cost: ``1 - cos(grad(x), target)`` plus ``tv * TV(x)``; Adam on signed image gradients with
step decay and a boxed [0, 1] pixel range; randn initialisation; ``restarts`` tries per
update, the lowest final cost kept (inversefed's ``scoring_choice='loss'``). Labels are
recovered first (:mod:`attacker.labels`).

Several local steps: with ``attack.multistep=approx`` the target is ``-update / (lr*steps)``;
with ``unroll`` the attack replays the client's plain-SGD steps differentiably on dummy data
(one dummy batch per step, as breaching's ``fedavg`` user) and matches the simulated update
with the observed one. Unlike breaching we do not hand the attacker the per-step labels: all
steps share the labels recovered from the whole update.
"""

from __future__ import annotations

import time
from collections import defaultdict

import torch

from attacker.engine import AdamSchedule, minimize
from attacker.labels import recover_labels
from attacker.objectives import cosine_distance, total_variation
from attacker.observation import Observation
from attacker.attacks.base import AttackSettings, CancelEvent, Reconstruction
from attacker.victim import Victim
from fl_sim.training import derive_seed


def run_ig(victim: Victim, observations: list[Observation], settings: AttackSettings,
           cancel: CancelEvent = None) -> list[Reconstruction]:
    """Reconstruct every observed update; updates of the same shape are attacked together."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    plans = [_plan(victim, obs, settings) for obs in observations]
    for index, plan in enumerate(plans):
        groups[(plan["num_images"], plan["steps"])].append(index)
    results: list[Reconstruction | None] = [None] * len(observations)
    for members in groups.values():
        for index, rec in zip(members, _attack_group(victim, [plans[i] for i in members], settings, cancel)):
            results[index] = rec
    return results  # type: ignore[return-value]


def _plan(victim: Victim, obs: Observation, settings: AttackSettings) -> dict:
    """Decide, for one update, the number of images, the target and the labels."""
    gradient = obs.gradient_estimate(victim.param_names)
    unroll = settings.multistep == "unroll" and obs.local_steps > 1
    notes = []
    if unroll and obs.train.optimizer != "sgd":
        notes.append(f"unroll assumes plain SGD, the client used {obs.train.optimizer}; used approx")
        unroll = False
    steps = obs.local_steps if unroll else 1
    num_images = min(obs.batch_size * steps, obs.num_examples) if unroll else obs.batch_size
    if not obs.exact_gradient and not unroll:
        notes.append(f"approximate gradient: {obs.local_steps} local steps of {obs.train.optimizer}")
    target = {n: obs.update[n].to(victim.device) for n in victim.param_names} if unroll else \
        {n: g.to(victim.device) for n, g in gradient.items()}
    labels = recover_labels(gradient, num_images, victim).to(victim.device)
    return {"obs": obs, "num_images": num_images, "steps": steps, "target": target, "labels": labels,
            "notes": notes}


def _attack_group(victim: Victim, plans: list[dict], settings: AttackSettings,
                  cancel: CancelEvent) -> list[Reconstruction]:
    start = time.perf_counter()
    restarts = settings.restarts
    num_images, steps = plans[0]["num_images"], plans[0]["steps"]
    lr_local = plans[0]["obs"].train.lr
    x0 = torch.stack([_init(victim, plan["obs"], restart, num_images, settings.seed)
                      for plan in plans for restart in range(restarts)])
    labels = torch.stack([plan["labels"] for plan in plans for _ in range(restarts)])
    targets = {name: torch.stack([plan["target"][name] for plan in plans for _ in range(restarts)])
               for name in victim.param_names}

    def objective(x, y, target):
        trial = _unrolled_update(victim, x, y, steps, lr_local) if steps > 1 else victim.gradient(x, y)
        return cosine_distance(trial, target) + settings.tv * total_variation(x)

    schedule = AdamSchedule(iterations=settings.iterations, lr=settings.lr)
    images, losses = minimize(objective, x0, (labels, targets), schedule, batched=settings.batched, cancel=cancel)
    seconds = time.perf_counter() - start
    results = []
    for i, plan in enumerate(plans):
        tries = slice(i * restarts, (i + 1) * restarts)
        best = int(losses[tries].argmin())
        results.append(Reconstruction(
            observation=plan["obs"], images=images[tries][best].cpu(), labels=plan["labels"].cpu(),
            loss=float(losses[tries][best]), iterations=settings.iterations, seconds=seconds / len(plans),
            notes=plan["notes"]))
    return results


def _unrolled_update(victim: Victim, x: torch.Tensor, labels: torch.Tensor, steps: int,
                     lr: float) -> dict[str, torch.Tensor]:
    """``params_after - params_before`` of ``steps`` plain-SGD steps, each on its own slice of ``x``."""
    params = dict(victim.params)
    per_step = max(1, x.shape[0] // steps)
    for step in range(steps):
        rows = torch.arange(step * per_step, (step + 1) * per_step) % x.shape[0]
        grads = victim.gradient(x[rows], labels[rows], params)
        params = {n: p - lr * grads[n] for n, p in params.items()}
    return {n: params[n] - victim.params[n] for n in victim.param_names}


def _init(victim: Victim, obs: Observation, restart: int, num_images: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(derive_seed(seed, obs.server_round, obs.node_id % 2**31, restart))
    return torch.randn((num_images, *victim.input_shape), generator=generator).to(victim.device)
