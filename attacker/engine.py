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

import time
from collections import Counter
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
    #: ``(factor, every)``: the step is ``lr * factor ** (t / every)`` at iteration t, decayed continuously (optax's
    #: ``exponential_decay``, which Dimitrov et al.'s FedAvg attack uses); ``None``: IG's step decay
    exponential_decay: tuple[float, int] | None = None
    #: ``(start, end, over)``: a weight that goes from ``start`` to ``end`` geometrically over ``over`` iterations and
    #: stays there, handed to the objective as its last argument (Dimitrov et al.'s gradient-matching factor);
    #: ``None``: no such argument
    ramp: tuple[float, float, int] | None = None

    def ramp_at(self, done: int) -> float:
        """The ramped weight of iteration ``done`` (counted from 0), as the FedAvg attack grows it before each step."""
        start, end, over = self.ramp
        grown = start * (end / start) ** ((done + 1) / over)
        return min(grown, end) if end >= start else max(grown, end)


@dataclass(frozen=True)
class Minimum:
    """Where an optimisation ended: the variables, each attack's final loss ``[K]``, and the iterations it ran.

    ``iterations`` is below the schedule's when the attack's budget was spent first (the result is then the
    point reached so far: attacks are anytime).
    """

    variables: Variables
    losses: torch.Tensor
    iterations: int


def minimize(objective: Callable[..., torch.Tensor], x0: torch.Tensor | Variables, args: tuple,
             schedule: AdamSchedule, batched: bool = True, stop: Stop | None = None) -> Minimum:
    """Minimise ``objective(*variables_k, *args_k)`` for every attack k, until done or the budget is spent.

    ``x0`` is the images ``[K, ...]`` or a tuple (images, other variables ...); every variable and
    every leaf of ``args`` has the attacks along its first dimension. The images are boxed.
    """
    variables = x0 if isinstance(x0, tuple) else (x0,)
    step = Step(objective, len(variables), batched=batched and variables[0].shape[0] > 1)
    return minimize_with(step, variables, args, schedule, stop)


def minimize_with(step: Step, variables: Variables, args: tuple, schedule: AdamSchedule,
                  stop: Stop | None = None) -> Minimum:
    """:func:`minimize` with a prepared step (e.g. a compiled one, kept across rounds).

    Batched, all K attacks in one optimisation; otherwise the K attacks one after the other.
    """
    if step.batched:
        return _adam(step, variables, args, schedule, stop)
    results = [_adam(step, tuple(v[k] for v in variables), _index(args, k), schedule, stop)
               for k in range(variables[0].shape[0])]
    stacked = tuple(torch.stack([found.variables[i] for found in results]) for i in range(len(variables)))
    return Minimum(stacked, torch.stack([found.losses for found in results]),
                   min(found.iterations for found in results))


def _adam(step, x0: Variables, args: tuple, schedule: AdamSchedule, stop: Stop | None) -> Minimum:
    """Adam with step decay; under a budget, the decay is moved so that it happens within the budget.

    After the first :data:`CHECK_EVERY` iterations the pace is known: if the budget cannot hold every
    iteration, the schedule is shortened to the iterations it holds (an anytime attack still decays its
    step, which IG's final quality depends on), and the loop also ends when the budget is spent.
    """
    variables = [v.detach().clone().requires_grad_(True) for v in x0]
    optimizer = torch.optim.Adam(variables, lr=schedule.lr)
    its = schedule.iterations
    if schedule.exponential_decay is None:
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=_decay_at(its), gamma=0.1)
    else:
        factor, every = schedule.exponential_decay
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: factor ** (t / every))
    started, loss = time.perf_counter(), None
    for done in range(its + 1):
        if done == its or (stop is not None and stop.ends(done, its)):
            break
        if stop is not None and stop.seconds and done == CHECK_EVERY:
            fits = done + int(stop.remaining() / ((time.perf_counter() - started) / done))
            if fits < its:
                its = fits
                if schedule.exponential_decay is None:
                    scheduler.milestones = Counter(_decay_at(its))
        gradients, loss = step(*(v.detach() for v in variables), *_with_ramp(args, schedule, done, variables, step))
        for variable, gradient in zip(variables, gradients):
            variable.grad = gradient.sign() if schedule.signed else gradient
        optimizer.step()
        scheduler.step()
        if schedule.box is not None:
            with torch.no_grad():
                variables[0].clamp_(*schedule.box)
    if stop is None or not stop.spent:  # the end point's loss; past the budget, the last step's start point's
        _, loss = step(*(v.detach() for v in variables), *_with_ramp(args, schedule, done - 1, variables, step))
    elif loss is None:  # no step ran: no loss is known
        loss = torch.full((variables[0].shape[0],) if step.batched else (), float("inf"))
    return Minimum(tuple(v.detach() for v in variables), loss.detach().clone(), done)  # a CUDA graph reuses outputs


def _with_ramp(args: tuple, schedule: AdamSchedule, done: int, variables: list[torch.Tensor], step) -> tuple:
    """``args``, and the schedule's ramped weight of iteration ``done`` after them where it has one (one per attack)."""
    if schedule.ramp is None:
        return args
    shape = (variables[0].shape[0],) if step.batched else ()
    return (*args, torch.full(shape, schedule.ramp_at(max(done, 0)), device=variables[0].device))


def _decay_at(iterations: int) -> list[int]:
    """Inverting Gradients' step decay points: 3/8, 5/8 and 7/8 of the iterations."""
    return [int(iterations * 3 / 8), int(iterations * 5 / 8), int(iterations * 7 / 8)]


def _index(args: tuple, k: int) -> tuple:
    """The k-th attack's slice of every argument (tensors and dicts of tensors)."""
    return tuple({n: v[k] for n, v in a.items()} if isinstance(a, dict) else a[k] for a in args)
