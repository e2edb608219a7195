"""How an attack's objective is differentiated: plain autograd, ``torch.func`` batched over attacks, compiled.

An optimisation step needs ``(gradients, value)`` of a scalar objective in its variables (the
dummy images, and for some attacks a label or a noise). Three ways to get it, same numbers:

- plain autograd for one attack (the fastest uncompiled way: ``torch.func``'s transforms cost
  about twice as much per call on small models);
- ``vmap(grad_and_value(objective))`` for K attacks at once, which share the model and differ
  only in their inputs (one call for the whole round);
- either of the ``torch.func`` forms through ``torch.compile`` (inductor; on a GPU with CUDA
  graphs, ``mode="reduce-overhead"``): the step's hundreds of small operations, double backward
  included, become a few fused kernels, launched once per iteration instead of one by one.

Compiling costs seconds to tens of seconds the first time a step of a given shape is seen (a
disk cache makes later processes faster) and pays back only on long attacks; :func:`compile_wanted`
decides for ``attack.compile=auto``. A step keeps its compiled function, so an attacker that keeps
its :class:`attacker.victim.Victim` across rounds compiles once per shape per run.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping

import torch
from torch.func import grad_and_value, vmap

Variables = tuple[torch.Tensor, ...]

#: ``attack.compile=auto`` compiles attacks of at least this many optimiser steps: below it, a cold
#: compile (about 10-25 s on a 2-core CPU for the LeNet step) costs more than it saves. L-BFGS
#: attacks (300 steps by default, often ending early) stay below it: they compile with ``on``.
COMPILE_MIN_ITERATIONS = 2000

#: compiled steps one process may hold (torch's own limit of 8 per transform is too few for a run whose
#: rounds attack different numbers of clients)
MAX_COMPILED_STEPS = 64


class CompileFailed(RuntimeError):
    """``attack.compile=on`` and ``torch.compile`` could not build the step."""


def compile_wanted(setting: str, iterations: int, deterministic: bool, device: torch.device) -> bool:
    """Whether ``attack.compile`` (``on``, ``off``, ``auto``) compiles an attack of ``iterations`` optimiser steps.

    ``auto`` compiles long attacks of a deterministic model (PRECODE's bottleneck draws noise inside
    the step; compiled random draws are not tested against uncompiled ones, so such steps compile
    only with ``on``) where inductor can build kernels: on CUDA, or on the CPU with a C++ compiler.
    """
    if setting != "auto":
        return setting == "on"
    buildable = device.type == "cuda" or shutil.which("g++") is not None or shutil.which("c++") is not None
    return buildable and deterministic and iterations >= COMPILE_MIN_ITERATIONS


def autograd_step(objective: Callable[..., torch.Tensor], count: int = 1) -> Callable:
    """A function returning ``(gradients, value)`` of ``objective`` in its first ``count`` arguments.

    What ``torch.func.grad_and_value`` computes, by plain autograd, for one attack at a time.
    """
    def step(*inputs: torch.Tensor) -> tuple[Variables, torch.Tensor]:
        variables = [v.detach().requires_grad_(True) for v in inputs[:count]]
        value = objective(*variables, *inputs[count:])
        return torch.autograd.grad(value, variables), value.detach()
    return step


class Step:
    """``(gradients, value)`` of ``objective`` in its first ``count`` arguments.

    For one attack or, with ``batched``, for K attacks stacked along the first dimension of every input.

    With ``compiled``, the first call compiles (its seconds are kept in :attr:`compile_seconds`).
    If compiling or a compiled call fails, ``strict`` (``attack.compile=on``) raises
    :class:`CompileFailed`; otherwise the step runs uncompiled from then on (the same point, the
    same maths) and :attr:`fallback` says why.
    """

    def __init__(self, objective: Callable[..., torch.Tensor], count: int = 1, batched: bool = False,
                 compiled: bool = False, device: torch.device | None = None, strict: bool = False) -> None:
        argnums = tuple(range(count))
        transformed = grad_and_value(objective, argnums=argnums)
        if batched:  # "different": each attack draws its own noise (PRECODE samples on every forward pass)
            transformed = vmap(transformed, randomness="different")
        self.batched = batched
        self._eager = transformed if batched else autograd_step(objective, count)
        self._compiled = None
        if compiled:
            from attacker.compiling import compile_step  # imports inductor (a second or more): compiled steps only

            # inductor imports torch's C++-extension helper, which warns on every CPU-only machine
            logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
            self._compiled = compile_step(transformed, device)
        self._strict = strict
        self._channels_last = compiled and (device is None or device.type == "cpu")
        self.compile_seconds: float | None = None
        self.fallback: str | None = None
        #: calls so far (each one gradient evaluation of every attack it holds)
        self.evaluations = 0

    @property
    def compiled(self) -> bool:
        """Whether the step runs compiled."""
        return self._compiled is not None

    def lay_out(self, arrays: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """``arrays`` in the memory layout of the model's gradients they are matched with; values unchanged.

        ``arrays`` are targets or masks (attacks first when batched), matched element by element.

        Compiled on the CPU, the step gets its convolution weight gradients from oneDNN channels-last
        (input channels innermost). A target in torch's default layout makes each fused dot product read
        one of the two with a stride, in scalar code; with both alike it vectorises (the batched LeNet
        step at K=16: 3.6 instead of 3.9 ms). Uncompiled or on a GPU, the arrays come back as they are.
        """
        dims = 5 if self.batched else 4  # a convolution's weight, with the attacks first when batched
        if not self._channels_last:
            return dict(arrays)
        return {name: _channels_last(a) if a.dim() == dims else a for name, a in arrays.items()}

    def __call__(self, *inputs: torch.Tensor) -> tuple[Variables, torch.Tensor]:
        """The gradients in the step's variables and the objective's value at ``inputs``."""
        self.evaluations += 1
        if self._compiled is None:
            return self._eager(*inputs)
        first, began = self.compile_seconds is None, time.perf_counter()
        try:
            if not first:
                return self._compiled(*inputs)
            # Every step is an entry of the same transform's code object: allow one per shape of a run, and
            # fail (rather than run uncompiled unsaid) past that
            with torch._dynamo.config.patch(recompile_limit=MAX_COMPILED_STEPS, fail_on_recompile_limit_hit=True):
                result = self._compiled(*inputs)
        except Exception as err:  # noqa: BLE001 - inductor and CUDA graphs raise many kinds; eager is the same maths
            what = "torch.compile failed" if first else "the compiled step failed"
            reason = f"{what} ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
            if self._strict:
                raise CompileFailed(f"{reason}; set attack.compile=auto or off") from err
            self._compiled, self.fallback = None, f"{reason}; ran uncompiled"
            return self._eager(*inputs)
        self.compile_seconds = time.perf_counter() - began
        return result

    def describe(self) -> str | None:
        """A note for the attack's event: compiled (and how long that took), or why it was not."""
        if self.fallback:
            return self.fallback
        if self._compiled is None:
            return None
        if self.compile_seconds is None:
            return "step compiled with torch.compile"
        return f"step compiled with torch.compile (compiling took {self.compile_seconds:.1f} s, once per shape and run)"


def _channels_last(weights: torch.Tensor) -> torch.Tensor:
    """Convolution weights ``[..., out, in, h, w]`` stored with ``in`` innermost (``h, w`` next), same values."""
    order = (*range(weights.dim() - 3), weights.dim() - 2, weights.dim() - 1, weights.dim() - 3)
    inverse = [order.index(i) for i in range(weights.dim())]
    return weights.permute(order).contiguous().permute(inverse)
