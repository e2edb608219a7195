"""Analytic input recovery from a fully connected layer (Phong et al., 2018; "Robbing the Fed" family).

For ``y = W x + b`` and one sample, ``dL/dW = delta x^T`` and ``dL/db = delta``: every row i
with ``dL/db_i != 0`` gives ``x = (dL/dW)_i / (dL/db)_i``. We take the least-squares
combination of all rows, ``x = sum_i dW_i db_i / sum_i db_i^2``, which is exact for one sample
and robust to rows with tiny ``db_i``. Because the ratio is scale-free it works directly on the
update (``-lr`` times the gradient) without knowing the learning rate. It needs the first
trainable layer to be linear on the raw pixels (an MLP); on a batch, or on several local
steps, it returns a mixture of the images, and it says so.
"""

from __future__ import annotations

import math
import time

import torch

from attacker.labels import recover_labels
from attacker.observation import Observation
from attacker.attacks.base import AttackSettings, CancelEvent, NotApplicable, Reconstruction
from attacker.victim import Victim


def run_analytic(victim: Victim, observations: list[Observation], settings: AttackSettings,
                 cancel: CancelEvent = None) -> list[Reconstruction]:
    """Recover one image per update from the first linear layer's weight and bias updates."""
    weight, bias = _first_linear_layer(victim)
    results = []
    for obs in observations:
        start = time.perf_counter()
        d_weight, d_bias = obs.update[weight].double(), obs.update[bias].double()
        denominator = (d_bias ** 2).sum()
        notes = [] if obs.batch_size == 1 and obs.local_steps == 1 else [
            f"a batch of {obs.batch_size} over {obs.local_steps} steps: the recovered image is a mixture"]
        if denominator > 0:
            x = (d_weight * d_bias[:, None]).sum(dim=0) / denominator
        else:  # this client's update leaves the layer's bias unchanged: nothing to divide by
            x = torch.zeros(d_weight.shape[1], dtype=torch.float64)
            notes.append("the first layer's bias did not change; nothing recovered")
        labels = recover_labels(obs.gradient_estimate(victim.param_names), 1, victim)
        results.append(Reconstruction(observation=obs, images=x.float().reshape(1, *victim.input_shape).clamp(0, 1),
                                      labels=labels.cpu(), loss=0.0, iterations=1,
                                      seconds=time.perf_counter() - start, notes=notes))
    return results


def _first_linear_layer(victim: Victim) -> tuple[str, str]:
    """Names of the first trainable layer's weight and bias, if it is linear on the flattened input."""
    first = next(name for name in victim.param_names if name.endswith("weight"))
    weight = victim.params[first]
    bias = first[: -len("weight")] + "bias"
    if weight.ndim != 2 or weight.shape[1] != math.prod(victim.input_shape) or bias not in victim.params:
        raise NotApplicable(f"analytic recovery needs a linear first layer with bias on the raw pixels; "
                            f"'{first}' has shape {tuple(weight.shape)}")
    return first, bias
