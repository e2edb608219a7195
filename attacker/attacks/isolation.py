"""Per-neuron isolation: the images of a batch, or of many local steps, read off a fully connected first layer.

For a first layer ``z = W x + b`` that reads the pixels, the update of one neuron r over any number of
SGD steps (momentum and FedProx's proximal term included: each step adds a linear combination of the
same inputs) is ``dW_r = sum_i c_ri x_i`` and ``db_r = sum_i c_ri``: a mixture of the client's images.
A ReLU neuron that fired for only one image i of the whole local training has ``dW_r / db_r = x_i``
*exactly*, whatever the steps, the batch size or the learning rate (Pan et al., USENIX Security
2022, "exploiting neuron exclusivity"; SRATTA, Dimitrov et al., ICML 2023). Without the ground
truth the attack finds them as follows (``../shared/RESEARCH.md``, "passive attacks on batches and local
epochs"):

1. every row with a bias update gives a candidate ``dW_r / db_r``;
2. a mixture whose weights differ in sign leaves the pixel range: candidates outside it are dropped;
3. neurons isolated on the same image give the *same* candidate, while two mixtures agree only by
   accident: candidates that agree to :data:`AGREEMENT` (root mean square, pixel scale) are grouped,
   and groups are ranked by size (singletons last);
4. at most as many reconstructions as the update can hold images (``min(local data, batch x steps)``,
   which the server knows from the protocol) are returned; their labels are the global model's
   predictions.

Defense-aware: for a pruned upload only the entries that travelled count; an entry that did not
travel is taken as 0 (the pruning defenses drop the smallest entries of a layer; on a row that means
pixels near the row's smallest), and candidates of one group fill each other's gaps.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from scipy.sparse.csgraph import connected_components

from attacker.attacks.analytic import layer_input
from attacker.attacks.base import AttackSettings, InversionAttack, Reconstruction, plain_sgd_reason
from attacker.observation import Observation
from attacker.stop import Stop
from attacker.victim import Victim
from fl_sim.attack_registry import ATTACKS as ATTACK_ENTRIES

#: Candidates closer than this (root mean square over the pixels both determine) show the same image.
AGREEMENT = 1e-3
#: How far outside the pixel range [0, 1] a candidate may reach (float32 rounding of the update).
RANGE_SLACK = 1e-2
#: Rows whose bias moved by less than this share of the largest bias update are ignored (rounding noise).
TINY_BIAS = 1e-6


def why_not(victim: Victim, obs: Observation) -> str | None:
    """Why neuron isolation does not apply to ``obs`` (``None`` when it does)."""
    if input_layer(victim) is None:
        return "the model's first layer is not a fully connected layer with a bias that reads the pixels"
    training = plain_sgd_reason(obs)
    return f"{training}: its rows are no longer mixtures of images" if training else None


def input_layer(victim: Victim) -> str | None:
    """Name of the model's first layer if it is a linear layer with a bias on the flattened pixels, else ``None``."""
    weight = victim.param_names[0]
    if not weight.endswith(".weight"):
        return None
    name = weight[: -len(".weight")]
    module = victim.model.get_submodule(name)
    reads_pixels = isinstance(module, torch.nn.Linear) and module.in_features == math.prod(victim.input_shape)
    return name if reads_pixels and module.bias is not None else None


def run_isolation(victim: Victim, observations: list[Observation], settings: AttackSettings,
                  stop: Stop | None = None) -> list[Reconstruction]:
    """The images each update isolates in its first layer's neurons, at most as many as it can hold."""
    layer = input_layer(victim)
    results = []
    for obs in observations:
        if stop is not None:
            stop.check("between updates")
        start = time.perf_counter()
        images, notes = isolated_images(obs, layer, victim.input_shape)
        if not len(images):
            mixture, _, _ = layer_input(victim, obs, layer)
            images = mixture.cpu().reshape(1, *victim.input_shape).clamp(0, 1)
            notes += ["no neuron isolates an image: the least-squares mixture of every row is returned"]
        results.append(Reconstruction(observation=obs, images=images, labels=victim.predictions(images), loss=0.0,
                                      iterations=1, seconds=time.perf_counter() - start, notes=notes,
                                      attack=ISOLATION.name, method=ISOLATION.name, needed=1))
    return results


def isolated_images(obs: Observation, layer: str, shape: tuple[int, ...]) -> tuple[torch.Tensor, list[str]]:
    """The images single neurons of ``layer`` isolate in ``obs``, at most as many as it holds, and what was found."""
    candidates, known, moved = row_candidates(obs, layer)
    in_range = ((candidates >= -RANGE_SLACK) & (candidates <= 1 + RANGE_SLACK)).all(dim=1)
    candidates, candidate_known = candidates[in_range], known[in_range]
    groups = agreeing_groups(candidates, candidate_known)
    most = obs.most_images
    chosen = groups[:most]
    images = torch.stack([merged(candidates[g], candidate_known[g]) for g in chosen]) if chosen else \
        torch.zeros((0, known.shape[1]), dtype=torch.float64)
    notes = [f"{moved} neurons moved, {len(candidates)} in the pixel range, {len(groups)} distinct "
             f"({sum(len(g) > 1 for g in groups)} shown by several neurons); {len(chosen)} kept "
             f"(the update holds at most {most} images)"]
    if obs.pruned:
        notes.append(f"defense-aware: only entries that travelled ({obs.defense}); the others taken as 0")
    return images.float().clamp(0, 1).reshape(len(chosen), *shape), notes


def row_candidates(obs: Observation, layer: str) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Every row of ``layer`` whose bias moved, as ``dW_r / db_r``; which entries travelled; how many rows moved.

    For a pruned upload only entries that travelled count, the others taken as 0.
    """
    names = [f"{layer}.weight", f"{layer}.bias"]
    d_weight, d_bias = obs.update[names[0]].double(), obs.update[names[1]].double()
    travelled = obs.travelled(names)
    known = travelled[names[0]] if travelled else torch.ones_like(d_weight, dtype=torch.bool)
    bias_known = travelled[names[1]] if travelled else torch.ones_like(d_bias, dtype=torch.bool)
    rows = bias_known & (d_bias.abs() > TINY_BIAS * d_bias.abs().max().clamp(min=1e-300))
    return (d_weight[rows] / d_bias[rows, None]) * known[rows], known[rows], int(rows.sum())


def agreeing_groups(candidates: torch.Tensor, known: torch.Tensor, tolerance: float = AGREEMENT) -> list[np.ndarray]:
    """Candidates that agree to ``tolerance``, as index arrays, the largest group first.

    Agreement is the root mean square difference over the entries both candidates determine.
    """
    if len(candidates) == 0:
        return []
    weights = known.double()
    both = weights @ weights.T
    squared = (candidates**2 * weights) @ weights.T
    cross = (candidates * weights) @ (candidates * weights).T
    distance = ((squared + squared.T - 2 * cross) / both.clamp(min=1)).clamp(min=0).sqrt()
    agree = (distance < tolerance) & (both > 0)
    count, labels = connected_components(agree.numpy(), directed=False)
    groups = [np.flatnonzero(labels == k) for k in range(count)]
    return sorted(groups, key=lambda g: (-len(g), int(g[0])))


def merged(candidates: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """One image from candidates of the same image: the mean of the values determined at each pixel."""
    weights = known.double()
    return (candidates * weights).sum(dim=0) / weights.sum(dim=0).clamp(min=1)


ISOLATION = InversionAttack(ATTACK_ENTRIES["isolation"], run=run_isolation, why_not=why_not)
