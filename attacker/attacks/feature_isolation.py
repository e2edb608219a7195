"""Neuron isolation behind convolutions: features read off a CNN's hidden linear layer, then inverted to images.

Where convolutions come first and a fully connected layer with a bias follows (Flower's template CNN's ``fc1``,
the FEMNIST CNN's 3136 -> 100 layer), that layer sees each image's features ``h_i`` as an MLP's first layer sees its
pixels: over local SGD its row r moves by ``dW_r = sum c_ri h_i`` and ``db_r = sum c_ri``, and a ReLU neuron that only
one image fired gives ``dW_r / db_r = h_i`` (exactly at one step; over several, a mean of that image's features
along the trajectory, the convolutions moving little at a small learning rate). This is :mod:`isolation` one
layer down, as the Cocktail Party Attack unmixes a VGG's first linear layer (Kariyappa et al., ICML 2023) and
the analytic attack reads one image's features (:mod:`attacker.attacks.analytic`):

1. every row with a bias update gives a candidate ``dW_r / db_r``;
2. the layer's inputs are non-negative (ReLU and pooling before it, checked on noise images): a mixture whose
   weights differ in sign has negative entries, and is dropped;
3. candidates that agree to :data:`FEATURE_AGREEMENT` (relative) are grouped, largest groups first, and at most
   as many are kept as the update can hold images (and ``attack.max-images``);
4. each kept feature vector is inverted to an image through the layers before it (the analytic attack's feature
   inversion, batched), its label the global model's prediction.

Defense-aware as isolation is: for a pruned upload only the entries that travelled count.
"""

from __future__ import annotations

import time

import torch

from attacker.attacks.analytic import first_linear_layer, invert_features, layer_input
from attacker.attacks.base import AttackSettings, InversionAttack, Reconstruction, plain_sgd_reason
from attacker.attacks.isolation import agreeing_groups, input_layer, merged, row_candidates
from attacker.observation import Observation
from attacker.stop import Stop
from attacker.victim import Victim
from fl_sim.attack_registry import ATTACKS as ATTACK_ENTRIES

#: Candidates whose distance is below this share of their size show the same image's features.
FEATURE_AGREEMENT = 1e-2
#: How negative a candidate's entry may be, as a share of its largest (float32 rounding of the update).
SIGN_SLACK = 1e-3
#: Noise images on which the layer's inputs are checked for sign.
SIGN_PROBES = 16


def hidden_linear_layer(victim: Victim) -> str | None:
    """The model's first linear layer with a bias if convolutions come before it and it is not the classifier."""
    layer = first_linear_layer(victim)
    if layer is None or input_layer(victim) == layer or layer == victim.head:
        return None
    return layer


def why_not(victim: Victim, obs: Observation) -> str | None:
    """Why feature isolation does not apply to ``obs`` (``None`` when it does)."""
    layer = hidden_linear_layer(victim)
    if layer is None:
        return ("the model has no fully connected layer with a bias between its convolutions and its classifier "
                "(isolation reads a first layer on the pixels, the analytic attack the classifier's input)")
    if obs.most_images == 1:
        return "one image: the analytic attack reads the layer's input exactly"
    training = plain_sgd_reason(obs)
    if training:
        return f"{training}: its rows are no longer mixtures of features"
    if not _inputs_non_negative(victim, layer):
        return f"the inputs of '{layer}' take either sign: a mixture cannot be told from one image's features"
    return None


def run_feature_isolation(victim: Victim, observations: list[Observation], settings: AttackSettings,
                          stop: Stop | None = None) -> list[Reconstruction]:
    """The features each update isolates in the hidden layer's neurons, inverted to images, all updates batched."""
    layer = hidden_linear_layer(victim)
    start = time.perf_counter()
    found = [isolated_features(victim, obs, layer, min(obs.most_images, settings.max_images))
             for obs in observations]
    features = [(h, known) for candidates, _ in found for h, known in candidates]
    owners = [obs for obs, (candidates, _) in zip(observations, found) for _ in candidates]
    images, iterations = invert_features(victim, layer, features, owners, settings, stop)
    seconds = (time.perf_counter() - start) / len(observations)
    results, first = [], 0
    for obs, (candidates, notes) in zip(observations, found):
        own = images[first:first + len(candidates)].reshape(len(candidates), *victim.input_shape).clamp(0, 1).cpu()
        first += len(candidates)
        cut = "" if iterations == settings.iterations else f"; budget spent: cut short after {iterations}"
        results.append(Reconstruction(
            observation=obs, images=own, labels=victim.predictions(own), loss=0.0, iterations=iterations,
            seconds=seconds, notes=notes + [f"features inverted to images ({settings.iterations} Adam steps{cut})"],
            attack=FEATURE_ISOLATION.name, method=FEATURE_ISOLATION.name, needed=settings.iterations,
            complete=iterations >= settings.iterations))
    return results


def isolated_features(victim: Victim, obs: Observation, layer: str,
                      most: int) -> tuple[list[tuple[torch.Tensor, torch.Tensor]], list[str]]:
    """The feature vectors (with the entries determined) single neurons of ``layer`` isolate, at most ``most``.

    Without any, the least-squares mixture of every row (what the analytic attack reads), said so.
    """
    candidates, known, moved = row_candidates(obs, layer)
    largest = candidates.abs().amax(dim=1, keepdim=True).clamp(min=1e-300)
    one_sign = (candidates >= -SIGN_SLACK * largest).all(dim=1) & (largest[:, 0] > 1e-300)
    candidates, candidate_known = candidates[one_sign], known[one_sign]
    scale = candidates.pow(2).mean(dim=1).sqrt().mean().clamp(min=1e-300) if len(candidates) else 1.0
    groups = agreeing_groups(candidates / scale, candidate_known, FEATURE_AGREEMENT)
    chosen = groups[:most]
    notes = [f"'{layer}': {moved} neurons moved, {len(candidates)} non-negative, {len(groups)} distinct "
             f"({sum(len(g) > 1 for g in groups)} shown by several neurons); {len(chosen)} kept (at most {most})"]
    if obs.pruned:
        notes.append(f"defense-aware: only entries that travelled ({obs.defense}); the others taken as 0")
    found = [(merged(candidates[g], candidate_known[g]).float().to(victim.device),
              candidate_known[g].any(dim=0).to(victim.device)) for g in chosen]
    if not found:
        mixture, determined, _ = layer_input(victim, obs, layer)
        found = [(mixture, determined)]
        notes.append("no neuron isolates one image's features: the least-squares mixture of every row is inverted")
    return found, notes


def _inputs_non_negative(victim: Victim, layer: str) -> bool:
    """Whether ``layer``'s inputs are >= 0 on noise images (ReLU or pooling of ReLU before it)."""
    probes = torch.rand((SIGN_PROBES, *victim.input_shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return bool((victim.input_of(layer, probes.to(victim.device)) >= 0).all())


FEATURE_ISOLATION = InversionAttack(ATTACK_ENTRIES["feature-isolation"], run=run_feature_isolation, why_not=why_not)
