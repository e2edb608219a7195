"""Deep Leakage from Gradients (Zhu et al., 2019) and iDLG (Zhao et al., 2020).

Both match gradients with the L2 cost using L-BFGS (torch defaults: lr 1, up to 20 inner
evaluations per step) on a randn dummy image, with no box and no prior, as the reference code
does. DLG optimises a soft dummy label (randn logits, softmax) jointly with the image; iDLG
first recovers the label analytically and keeps it fixed, stopping once the cost is below
1e-6. L-BFGS couples all its variables (shared line search and curvature), so these attacks
run one update at a time; the vmap-batched engine serves the Adam-based attacks.

From a randn start, L-BFGS sometimes stalls in a poor local minimum (saturated sigmoids) within
a few steps. ``attack.restarts`` > 1 starts again from a new random image when a try ends above
the stop threshold, and keeps the try with the lowest cost (the reference code has no restarts;
the default of 1 keeps it faithful).
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch.func import grad_and_value

from attacker.engine import CANCEL_CHECK_EVERY, AttackCancelled
from attacker.labels import recover_labels
from attacker.objectives import l2_distance
from attacker.observation import Observation
from attacker.attacks.base import AttackSettings, CancelEvent, Reconstruction
from attacker.victim import Victim
from fl_sim.training import derive_seed

#: iDLG stops when the gradient distance falls below this (iDLG.py).
STOP_LOSS = 1e-6


def run_dlg(victim: Victim, observations: list[Observation], settings: AttackSettings,
            cancel: CancelEvent = None) -> list[Reconstruction]:
    """DLG on each update: image and soft label optimised together."""
    return [_lbfgs_attack(victim, obs, settings, recover=False, cancel=cancel) for obs in observations]


def run_idlg(victim: Victim, observations: list[Observation], settings: AttackSettings,
             cancel: CancelEvent = None) -> list[Reconstruction]:
    """iDLG on each update: label recovered from the classifier's gradient, then fixed."""
    return [_lbfgs_attack(victim, obs, settings, recover=True, cancel=cancel) for obs in observations]


def _lbfgs_attack(victim: Victim, obs: Observation, settings: AttackSettings, recover: bool,
                  cancel: CancelEvent) -> Reconstruction:
    start = time.perf_counter()
    gradient = obs.gradient_estimate(victim.param_names)
    target = {n: g.to(victim.device) for n, g in gradient.items()}
    labels = recover_labels(gradient, obs.batch_size, victim).to(victim.device) if recover else None
    best, total_iterations = None, 0
    for restart in range(settings.restarts):
        seed = derive_seed(settings.seed, obs.server_round, obs.node_id % 2**31, restart)
        loss, image, found_labels, iterations = _lbfgs_try(victim, target, obs.batch_size, labels, settings,
                                                           torch.Generator().manual_seed(seed), cancel)
        total_iterations += iterations
        if best is None or loss < best[0]:
            best = (loss, image, found_labels)
        if best[0] < STOP_LOSS:
            break
    loss, image, found_labels = best
    notes = [] if obs.exact_gradient else [f"approximate gradient: {obs.local_steps} local steps of "
                                           f"{obs.train.optimizer}"]
    return Reconstruction(observation=obs, images=image.clamp(0, 1).cpu(), labels=found_labels.cpu(),
                          loss=loss, iterations=total_iterations, seconds=time.perf_counter() - start, notes=notes)


def _lbfgs_try(victim: Victim, target: dict[str, torch.Tensor], num_images: int, labels: torch.Tensor | None,
               settings: AttackSettings, generator: torch.Generator, cancel: CancelEvent):
    """One L-BFGS run from a random start; returns (best cost, its image, its labels, iterations)."""
    x = torch.randn((num_images, *victim.input_shape), generator=generator).to(victim.device).requires_grad_(True)
    if labels is not None:
        variables = [x]

        def cost(image):
            return l2_distance(victim.gradient(image, labels), target)
        value_and_grads = grad_and_value(cost)
    else:
        logits = torch.randn((num_images, victim.num_classes), generator=generator).to(victim.device)
        logits.requires_grad_(True)
        variables = [x, logits]

        def cost(image, label_logits):
            return l2_distance(victim.gradient(image, F.softmax(label_logits, dim=-1)), target)
        value_and_grads = grad_and_value(cost, argnums=(0, 1))

    optimizer = torch.optim.LBFGS(variables, lr=settings.lr)

    def closure():
        grads, value = value_and_grads(*[v.detach() for v in variables])
        for variable, g in zip(variables, grads if isinstance(grads, tuple) else (grads,)):
            variable.grad = g
        return value

    best_loss, best_x, iterations = float("inf"), x.detach().clone(), 0
    for iterations in range(1, settings.iterations + 1):
        if cancel is not None and iterations % CANCEL_CHECK_EVERY == 0 and cancel.is_set():
            raise AttackCancelled(f"cancelled after {iterations} of {settings.iterations} iterations")
        loss = float(optimizer.step(closure))
        if not torch.isfinite(torch.tensor(loss)) or not torch.isfinite(x).all():
            break  # diverged: keep the best image so far
        if loss < best_loss:
            best_loss, best_x = loss, x.detach().clone()
        if labels is not None and loss < STOP_LOSS:
            break
    found = labels if labels is not None else logits.detach().argmax(dim=-1)
    return best_loss, best_x, found, iterations
