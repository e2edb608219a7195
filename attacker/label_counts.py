"""The label counts of a client's whole local training, as the server reads them off its update.

:func:`attacker.labels.count_labels` turns the classifier's bias update into counts, given the model's mean
softmax on the client's images. The server does not have those images, but where neuron isolation applies it
has some of them exactly (:mod:`attacker.attacks.isolation`): the mean softmax is taken on those; elsewhere on
uniform noise, scaled to what the classes absent from the update show. What each reaches is measured by
``python benchmarks/label_counts.py`` (docs/usage.md).
"""

from __future__ import annotations

import torch

from attacker.attacks.isolation import input_layer, isolated_images
from attacker.attacks.isolation import why_not as isolation_why_not
from attacker.labels import count_labels
from attacker.observation import Observation
from attacker.victim import Victim


def update_label_counts(victim: Victim, obs: Observation) -> torch.Tensor | None:
    """Images per class over ``obs``'s whole local training, or ``None`` where its bias update does not tell them.

    It does not for a model without a classifier bias, for local training other than SGD (Adam rescales every
    entry on its own), or for an upload whose classifier bias did not travel in full.
    """
    weight, bias = f"{victim.head}.weight", f"{victim.head}.bias"
    if bias not in obs.update or obs.train.optimizer != "sgd":
        return None
    travelled = obs.travelled([bias])
    if travelled is not None and not bool(travelled[bias].all()):
        return None
    images = None
    if isolation_why_not(victim, obs) is None:
        isolated, _ = isolated_images(obs, input_layer(victim), victim.input_shape)
        images = isolated if len(isolated) else None
    gradient = obs.gradient_estimate([weight, bias])
    return count_labels(gradient, obs.most_images, victim, images).cpu()
