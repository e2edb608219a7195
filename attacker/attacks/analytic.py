"""Analytic input recovery from a fully connected layer (Phong et al., 2018; "Robbing the Fed" family).

For ``y = W h + b`` and one sample, ``dL/dW = delta h^T`` and ``dL/db = delta``: every row i
with ``dL/db_i != 0`` gives ``h = (dL/dW)_i / (dL/db)_i``. We take the least-squares
combination of the rows, ``h_j = sum_i dW_ij db_i / sum_i db_i^2``, exact for one sample and
robust to rows with tiny ``db_i``. The ratio is scale-free, so it works on the update itself
(``-lr`` times the gradient) without knowing the learning rate.

The layer is the model's first linear layer with a bias, wherever it is:
- at the input (an MLP), ``h`` is the image itself;
- deeper (the classifier of a LeNet or ConvNet, or PRECODE's encoder, which sees the features
  *before* the bottleneck's noise), ``h`` is the feature vector the layer received, and the
  image is found by feature inversion: Adam on a dummy image (signed, boxed, IG's step decay)
  until the model's features of it match ``h``. PRECODE does not protect these features.

Defense-aware: for a pruned upload only coordinates that travelled are used (a row i counts for
``h_j`` when both ``dW_ij`` and ``db_i`` travelled); features no row determines are left out of
the inversion. On a batch, or on several local steps, ``h`` is a mixture and the event says so.
"""

from __future__ import annotations

import math
import time

import torch
from torch import nn

from attacker.attacks.base import AttackSettings, InversionAttack, Reconstruction, plain_sgd_reason
from attacker.engine import AdamSchedule, minimize
from attacker.labels import recover_labels
from attacker.objectives import total_variation
from attacker.observation import Observation
from attacker.stop import Stop
from attacker.victim import Victim
from fl_sim.attack_registry import ATTACKS as ATTACK_ENTRIES

#: TV weight of the feature inversion (the features pin the image; the prior only smooths).
FEATURE_TV = 1e-4


def run_analytic(victim: Victim, observations: list[Observation], settings: AttackSettings,
                 stop: Stop | None = None) -> list[Reconstruction]:
    """Recover one input per update from the first linear layer with a bias; invert it if it is a feature vector."""
    layer = first_linear_layer(victim)
    at_input = victim.param_names[0] == f"{layer}.weight" and \
        victim.params[f"{layer}.weight"].shape[1] == math.prod(victim.input_shape)
    start = time.perf_counter()
    found = [layer_input(victim, obs, layer) for obs in observations]
    if at_input:
        images = [h.reshape(1, *victim.input_shape) for h, _, _ in found]  # the judge clamps
        iterations = needed = 1
    else:
        inverted, iterations = invert_features(victim, layer, [(h, known) for h, known, _ in found], observations,
                                                settings, stop)
        images = list(inverted)
        needed = settings.iterations
    seconds = (time.perf_counter() - start) / len(observations)
    results = []
    for obs, image, (_, _, notes) in zip(observations, images, found):
        if not at_input:
            cut = "" if iterations == settings.iterations else f"; budget spent: cut short after {iterations}"
            notes.append(f"inputs of '{layer}' recovered analytically, image by feature inversion "
                         f"({settings.iterations} Adam steps{cut})")
        labels = recover_labels(obs.gradient_estimate(victim.param_names), 1, victim)
        results.append(Reconstruction(observation=obs, images=image.cpu(), labels=labels.cpu(), loss=0.0,
                                      iterations=iterations, seconds=seconds, notes=notes, attack=ANALYTIC.name,
                                      method=ANALYTIC.name, needed=needed, complete=iterations >= needed))
    return results


def why_not(victim: Victim, obs: Observation) -> str | None:
    """Why analytic recovery does not apply to ``obs``: it needs a linear layer with a bias and one image."""
    if first_linear_layer(victim) is None:
        return "the model has no linear layer with a bias"
    if obs.most_images > 1:
        return f"the update can hold {obs.most_images} images: the layer's input is a mixture of them"
    return plain_sgd_reason(obs)


def first_linear_layer(victim: Victim) -> str | None:
    """Name of the model's first ``nn.Linear`` with a bias (the layer the analytic attack reads), if any."""
    return next((name for name, module in victim.model.named_modules()
                 if isinstance(module, nn.Linear) and module.bias is not None), None)


def layer_input(victim: Victim, obs: Observation, layer: str) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """The layer's input by least squares over rows, which coordinates were determined, and notes.

    Exact for one image; for several, a mixture of them (what is left when no neuron isolates one).
    """
    names = [f"{layer}.weight", f"{layer}.bias"]
    d_weight, d_bias = obs.update[names[0]].double(), obs.update[names[1]].double()
    travelled = obs.travelled(names)
    weight_known = travelled[names[0]].double() if travelled else torch.ones_like(d_weight)
    bias_known = travelled[names[1]].double() if travelled else torch.ones_like(d_bias)
    numerator = (d_weight * weight_known * (d_bias * bias_known)[:, None]).sum(dim=0)
    denominator = (weight_known * (d_bias * bias_known)[:, None] ** 2).sum(dim=0)
    known = denominator > 0
    h = torch.where(known, numerator / denominator.clamp(min=1e-300), torch.zeros_like(numerator))
    notes = []
    if obs.batch_size > 1 or obs.local_steps > 1:
        notes.append(f"a batch of {obs.batch_size} over {obs.local_steps} steps: the recovered input is a mixture")
    if travelled:
        notes.append(f"defense-aware: {int(known.sum())} of {known.numel()} inputs determined by coordinates "
                     f"that travelled ({obs.defense})")
    if not known.any():
        notes.append(f"the bias of '{layer}' did not change; nothing recovered")
    return h.float().to(victim.device), known.to(victim.device), notes


def invert_features(victim: Victim, layer: str, features: list[tuple[torch.Tensor, torch.Tensor]],
                     observations: list[Observation], settings: AttackSettings,
                     stop: Stop | None) -> tuple[torch.Tensor, int]:
    """Images whose inputs to ``layer`` match the recovered ones (on the determined coordinates), batched.

    Returns them and the iterations run (fewer than asked when the budget was spent).
    """
    targets = torch.stack([h for h, _ in features])
    known = torch.stack([k.to(h.dtype) for h, k in features])
    x0 = torch.stack([torch.randn((1, *victim.input_shape), generator=torch.Generator().manual_seed(
        obs.random_stream(settings.seed))) for obs in observations]).to(victim.device)

    def cost(x, target, mask):
        trial = victim.input_of(layer, x).flatten()
        return ((trial - target) ** 2 * mask).sum() / mask.sum().clamp(min=1) + FEATURE_TV * total_variation(x)

    found = minimize(cost, x0, (targets, known), AdamSchedule(iterations=settings.iterations, lr=settings.lr),
                     batched=settings.batched, stop=stop)
    return found.variables[0], found.iterations


ANALYTIC = InversionAttack(ATTACK_ENTRIES["analytic"], run=run_analytic, why_not=why_not)
