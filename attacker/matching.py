"""What an attack matches, given what the server knows of the protocol: which gradients, which coordinates.

- A pruned upload (``topk``, ``dgp``) carries only some coordinates; the rest are unknown, not
  zero. A defense-aware attack compares only the coordinates that travelled, for every cost and
  for replay alike (Kerckhoffs: the server knows the defense and sees the positions). The rest are
  not free either: the pruning rule bounds each of them by what its layer kept
  (:class:`attacker.completion.KeptRange`), and :func:`dropped_bounds` gives those bounds to a cost
  (:func:`attacker.objectives.out_of_bounds`).
- PRECODE's bottleneck samples fresh noise on every forward pass, so the gradients of the
  bottleneck and of every later layer are random. The omit-gradient attack (Scheliga et al.,
  arXiv 2208.04767 and 2309.04515; ``ignore_gradient_layers`` in dAI-SY-Group's code) leaves
  them out of the matching.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from attacker.completion import KeptRange
from attacker.observation import Observation
from attacker.victim import Victim

Arrays = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Matching:
    """The parameters whose gradients are compared and, for a pruned upload, the coordinates that travelled."""

    names: list[str]
    mask: dict[str, torch.Tensor] | None
    notes: list[str]


def matching_for(victim: Victim, obs: Observation, omit_stochastic: bool = False) -> Matching:
    """What to match of ``obs``: every parameter, or those before PRECODE's bottleneck; masked if pruned."""
    names, notes = victim.param_names, []
    if omit_stochastic:
        omitted = set(victim.stochastic_param_names())
        names = [n for n in names if n not in omitted]
        notes.append(f"omit-gradient: {len(omitted)} bottleneck-and-later arrays left out of the matching")
    mask = obs.travelled(names)
    if mask is not None:
        kept = sum(int(m.sum()) for m in mask.values())
        total = sum(m.numel() for m in mask.values())
        notes.append(f"defense-aware: matched the {kept} of {total} coordinates that travelled ({obs.defense})")
        mask = {n: m.to(victim.device, victim.params[n].dtype) for n, m in mask.items()}
    return Matching(names=names, mask=mask, notes=notes)


def restrict(arrays: Arrays, names: list[str], mask: Arrays | None) -> dict[str, torch.Tensor]:
    """``arrays`` limited to ``names`` and, with a ``mask``, to the coordinates it keeps."""
    return {n: arrays[n] * mask[n] for n in names} if mask else {n: arrays[n] for n in names}


def dropped_bounds(target: Arrays, mask: Arrays, drops_largest: bool) -> dict[str, torch.Tensor]:
    """Per matched array, ``[smallest, largest]`` magnitude its pruned layer kept, in the units of ``target``.

    An entry that did not travel lies below ``smallest`` or, where the rule also drops the largest (DGP), above
    ``largest``; for a rule that drops only the smallest, ``largest`` is infinite (nothing above is excluded).
    """
    bounds = {}
    for name, values in target.items():
        kept = KeptRange.of(values, mask[name].bool(), drops_largest)
        largest = kept.largest if kept.drops_largest else float("inf")
        bounds[name] = torch.tensor([kept.smallest, largest], dtype=values.dtype, device=values.device)
    return bounds
