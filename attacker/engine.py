"""Adam-based reconstruction of many attacks at once: one ``vmap``-batched problem or K loops.

All updates intercepted in a round were computed from the same global weights, so their
attacks differ only in their dummy images, labels and target gradients. The batched path
evaluates ``grad_and_value(objective)`` for all K attacks with one ``torch.func.vmap`` call
(double backward included) and steps one Adam over the stacked images; since Adam is
element-wise, that is the same optimisation as K separate Adams, only faster. The sequential
path runs the K optimisations one after the other, as other tools do; both share this loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch.func import grad_and_value, vmap


class StopSignal(Protocol):
    """What a running optimisation polls to know it must stop (a ``threading.Event`` is one)."""

    def is_set(self) -> bool:
        """Whether to stop now."""


class AttackCancelled(RuntimeError):
    """Raised inside an optimisation when told to stop (end-of-run budget or the attack's time budget spent)."""


@dataclass(frozen=True)
class AdamSchedule:
    """Inverting Gradients' optimiser: Adam, step decay x0.1 at 3/8, 5/8 and 7/8 of the iterations,
    signed image gradients and a boxed pixel range (inversefed ``DEFAULT_CONFIG`` with its
    experiments' ``signed=True``; breaching's ``invertinggradients.yaml``)."""

    iterations: int
    lr: float
    signed: bool = True
    box: tuple[float, float] | None = (0.0, 1.0)


#: How often (in iterations) a running optimisation looks at its cancel event.
CANCEL_CHECK_EVERY = 25


def minimize(objective: Callable[..., torch.Tensor], x0: torch.Tensor, args: tuple, schedule: AdamSchedule,
             batched: bool = True, cancel: StopSignal | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimise ``objective(x_k, *args_k)`` for every attack k; return final images and losses ``[K]``.

    ``x0`` and every leaf of ``args`` have the attacks along their first dimension.
    """
    step = grad_and_value(objective)
    if batched:
        # "different": each attack draws its own noise (PRECODE samples on every forward pass)
        return _adam(vmap(step, randomness="different"), x0, args, schedule, cancel)
    results = [_adam(step, x0[k], _index(args, k), schedule, cancel) for k in range(x0.shape[0])]
    return torch.stack([x for x, _ in results]), torch.stack([loss for _, loss in results])


def _adam(step, x0: torch.Tensor, args: tuple, schedule: AdamSchedule,
          cancel: StopSignal | None) -> tuple[torch.Tensor, torch.Tensor]:
    x = x0.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([x], lr=schedule.lr)
    its = schedule.iterations
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=[int(its * 3 / 8), int(its * 5 / 8), int(its * 7 / 8)], gamma=0.1)
    for iteration in range(its):
        if cancel is not None and iteration % CANCEL_CHECK_EVERY == 0 and cancel.is_set():
            raise AttackCancelled(f"cancelled after {iteration} of {its} iterations")
        gradient, _ = step(x.detach(), *args)
        x.grad = gradient.sign() if schedule.signed else gradient
        optimizer.step()
        scheduler.step()
        if schedule.box is not None:
            with torch.no_grad():
                x.clamp_(*schedule.box)
    _, loss = step(x.detach(), *args)
    return x.detach(), loss.detach()


def _index(args: tuple, k: int) -> tuple:
    """The k-th attack's slice of every argument (tensors and dicts of tensors)."""
    return tuple({n: v[k] for n, v in a.items()} if isinstance(a, dict) else a[k] for a in args)
