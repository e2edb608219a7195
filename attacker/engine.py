"""Adam-based reconstruction of many attacks at once: one ``vmap``-batched problem or K loops.

All updates intercepted in a round were computed from the same global weights, so their
attacks differ only in their dummy variables, labels, targets and weights (a TV weight, a mask
of the coordinates that travelled). The batched path evaluates ``grad_and_value(objective)``
for all K attacks with one ``torch.func.vmap`` call (double backward included) and steps one
Adam over the stacked variables; since Adam is element-wise, that is the same optimisation as K
separate Adams, only faster. The sequential path runs the K optimisations one after the other,
as other tools do; one attack alone always takes it. Both share this loop; how the step is
differentiated (and whether it is compiled) is :class:`attacker.steps.Step`'s business.

An attack optimises one or more variables: the dummy images first (boxed to the pixel range),
then any others unboxed (the bottleneck noise of the noise-restoring attack on PRECODE).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from attacker.steps import Step, Variables
from attacker.stop import CHECK_EVERY, Stop


@dataclass(frozen=True)
class AdamSchedule:
    """Inverting Gradients' optimiser.

    Adam, step decay x0.1 at 3/8, 5/8 and 7/8 of the iterations, signed gradients and a boxed pixel range (inversefed
    ``DEFAULT_CONFIG`` with its experiments' ``signed=True``; breaching's ``invertinggradients.yaml``).
    """

    iterations: int
    lr: float
    signed: bool = True
    box: tuple[float, float] | None = (0.0, 1.0)


def minimize(objective: Callable[..., torch.Tensor], x0: torch.Tensor | Variables, args: tuple,
             schedule: AdamSchedule, batched: bool = True,
             stop: Stop | None = None) -> tuple[Variables, torch.Tensor]:
    """Minimise ``objective(*variables_k, *args_k)`` for every attack k; return final variables and losses ``[K]``.

    ``x0`` is the images ``[K, ...]`` or a tuple (images, other variables ...); every variable and
    every leaf of ``args`` has the attacks along its first dimension. The images are boxed.
    """
    variables = x0 if isinstance(x0, tuple) else (x0,)
    step = Step(objective, len(variables), batched=batched and variables[0].shape[0] > 1)
    return minimize_with(step, variables, args, schedule, stop)


def minimize_with(step: Step, variables: Variables, args: tuple, schedule: AdamSchedule,
                  stop: Stop | None = None) -> tuple[Variables, torch.Tensor]:
    """:func:`minimize` with a prepared step (e.g. a compiled one, kept across rounds).

    Batched, all K attacks in one optimisation; otherwise the K attacks one after the other.
    """
    if step.batched:
        return _adam(step, variables, args, schedule, stop)
    results = [_adam(step, tuple(v[k] for v in variables), _index(args, k), schedule, stop)
               for k in range(variables[0].shape[0])]
    stacked = tuple(torch.stack([found[i] for found, _ in results]) for i in range(len(variables)))
    return stacked, torch.stack([loss for _, loss in results])


def _adam(step, x0: Variables, args: tuple, schedule: AdamSchedule,
          stop: Stop | None) -> tuple[Variables, torch.Tensor]:
    variables = [v.detach().clone().requires_grad_(True) for v in x0]
    optimizer = torch.optim.Adam(variables, lr=schedule.lr)
    its = schedule.iterations
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=[int(its * 3 / 8), int(its * 5 / 8), int(its * 7 / 8)], gamma=0.1)
    for iteration in range(its):
        if stop is not None and iteration % CHECK_EVERY == 0:
            stop.check(f"after {iteration} of {its} iterations")
        gradients, _ = step(*(v.detach() for v in variables), *args)
        for variable, gradient in zip(variables, gradients):
            variable.grad = gradient.sign() if schedule.signed else gradient
        optimizer.step()
        scheduler.step()
        if schedule.box is not None:
            with torch.no_grad():
                variables[0].clamp_(*schedule.box)
    _, loss = step(*(v.detach() for v in variables), *args)
    return tuple(v.detach() for v in variables), loss.detach().clone()  # a CUDA graph reuses its outputs


def _index(args: tuple, k: int) -> tuple:
    """The k-th attack's slice of every argument (tensors and dicts of tensors)."""
    return tuple({n: v[k] for n, v in a.items()} if isinstance(a, dict) else a[k] for a in args)
