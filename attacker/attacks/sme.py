"""Surrogate Model Extension (SME; Zhu, Yao and Blaschko, ICML 2023): FedAvg updates inverted on a surrogate model.

A client's local training moves the weights from ``w0`` (sent) to ``w1`` (uploaded) along a path of many steps,
each the gradient of one batch at weights the server never sees. SME does not replay the path: it inverts one
gradient, of every image at once, at a surrogate model on the segment between the two ends,
``w_alpha = (1 - alpha) w0 + alpha w1``, and learns ``alpha`` with the images. The cost is IG's ``1 - cos``
between that gradient and the update's direction ``w0 - w1``, plus ``lambda`` TV; a round of 100 local steps
costs one gradient evaluation per iteration, not 100 replayed ones (``JunyiZhu-AI/surrogate_model_extension``,
``sme/Adversary/adversary.py``, ``experiments/configs/femnist_sme.json``):

- the images in the paper's normalised units (:mod:`attacker.normalised`), started at N(0, 1) and boxed to the
  pixel range;
- Adam at lr 1 (``eta``) on the images and 0.001 (``beta``) on ``alpha``, started at 0.5 and kept in [0, 1],
  both decayed x0.1 at 3/8, 5/8 and 7/8 of 1,000 iterations, gradients unsigned; ``lambda`` 0.01 on SME's TV
  (the mean of the two directions' mean absolute differences: half of :func:`attacker.objectives.total_variation`);
- labels counted from the update (SME takes them as restored separately; :func:`attacker.labels.recover_labels`).

What is matched uses what the server knows, as IG does: for a pruned upload only the coordinates that travelled.
"""

from __future__ import annotations

import time

import torch

from attacker.attacks.base import AttackSettings, InversionAttack, Reconstruction, victim_step
from attacker.engine import AdamSchedule, minimize_with
from attacker.labels import recover_labels
from attacker.matching import matching_for, restrict
from attacker.normalised import normalised_box, pixels
from attacker.objectives import cosine_distance, total_variation
from attacker.observation import Observation
from attacker.stop import Stop
from attacker.victim import Victim
from fl_sim.attack_registry import ATTACKS as ATTACK_ENTRIES

#: Where the surrogate starts on the segment (``alpha`` in ``femnist_sme.json``), and its step size over the images'.
ALPHA_START = 0.5
ALPHA_STEP_RATIO = 0.001
#: SME's TV weight (``lamb``), on its TV, which is half of ours.
TV_WEIGHT = 0.01 / 2
#: The most images per update SME is published on (50 per client, ``k`` in its configs; IG's FedAvg setting 100).
SME_MOST_IMAGES = 100


def why_not(_victim: Victim, obs: Observation) -> str | None:
    """Why SME does not apply to ``obs``: it inverts several local SGD steps over at most 100 images."""
    if obs.exact_gradient:
        return "one local step: the update is the gradient itself, which IG inverts as it is"
    if obs.train.optimizer != "sgd":
        return f"local {obs.train.optimizer} rescales every entry: the update is no gradient direction on the segment"
    if obs.most_images > SME_MOST_IMAGES:
        return (f"the update can hold {obs.most_images} images; SME is published on {SME_MOST_IMAGES // 2} per client "
                f"(and IG's FedAvg setting on up to {SME_MOST_IMAGES})")
    return None


def run_sme(victim: Victim, observations: list[Observation], settings: AttackSettings,
            stop: Stop | None = None) -> list[Reconstruction]:
    """SME on every update; updates of the same image count are optimised as one batched problem."""
    groups: dict[int, list[int]] = {}
    for index, obs in enumerate(observations):
        groups.setdefault(_image_count(obs, settings), []).append(index)
    results: list[Reconstruction | None] = [None] * len(observations)
    for images, members in groups.items():
        for index, rec in zip(members, _attack_group(victim, [observations[i] for i in members], images, settings,
                                                     stop)):
            results[index] = rec
    return results  # type: ignore[return-value]


def _image_count(obs: Observation, settings: AttackSettings) -> int:
    """The images SME reconstructs for ``obs``: every one its steps touched, at most ``attack.max-images``."""
    return min(obs.most_images, settings.max_images)


def _attack_group(victim: Victim, observations: list[Observation], images: int, settings: AttackSettings,
                  stop: Stop | None) -> list[Reconstruction]:
    start = time.perf_counter()
    matchings = [matching_for(victim, obs) for obs in observations]
    names = matchings[0].names
    labels = torch.stack([recover_labels(obs.gradient_estimate(victim.param_names), images, victim)
                          for obs in observations]).to(victim.device)
    updates = {n: torch.stack([obs.update[n] for obs in observations]).to(victim.device) for n in victim.param_names}
    masks = {n: torch.stack([m.mask[n] for m in matchings]) for n in names} if matchings[0].mask else {}
    x0 = torch.stack([torch.randn((images, *victim.input_shape), generator=torch.Generator().manual_seed(
        obs.random_stream(settings.seed))) for obs in observations]).to(victim.device)
    alpha0 = torch.zeros((len(observations),), device=victim.device)
    batched = settings.batched and len(observations) > 1

    directions = restrict({n: -updates[n] for n in names}, names, masks)  # w0 - w1, where it travelled

    def cost(z, step_alpha, labels, update, direction, mask):
        surrogate = {n: victim.params[n] + _alpha(step_alpha) * update[n] for n in victim.param_names}
        trial = victim.gradient(pixels(z), labels, surrogate)
        return cosine_distance(restrict(trial, names, mask), direction) + TV_WEIGHT * total_variation(z)

    key = (SME.name, images, tuple(names), bool(masks), len(observations) if batched else 1)
    step = victim_step(victim, settings, key, cost, count=2, batched=batched)
    found = minimize_with(step, (x0, alpha0),
                          (labels, step.lay_out(updates), step.lay_out(directions), step.lay_out(masks)),
                          AdamSchedule(iterations=settings.iterations, lr=settings.lr, signed=False,
                                       box=normalised_box()),
                          stop=stop)
    seconds = (time.perf_counter() - start) / len(observations)
    alphas = _alpha(found.variables[1])
    notes = [f"surrogate model at alpha {float(a):.3f} of the way from the sent weights to the uploaded ones"
             for a in alphas]
    if found.iterations < settings.iterations:
        notes = [n + f"; budget spent: cut short after {found.iterations} of {settings.iterations} iterations"
                 for n in notes]
    return [Reconstruction(observation=obs, images=pixels(z).clamp(0, 1).cpu(), labels=own.cpu(),
                           loss=float(loss), iterations=found.iterations, seconds=seconds,
                           notes=matching.notes + [note], attack=SME.name, method=SME.name,
                           needed=settings.iterations, complete=found.iterations >= settings.iterations)
            for obs, z, own, loss, matching, note in zip(observations, found.variables[0], labels, found.losses,
                                                          matchings, notes)]


def _alpha(step_alpha: torch.Tensor) -> torch.Tensor:
    """Where the surrogate lies on the segment: Adam's variable scaled to alpha's own step size, kept in [0, 1]."""
    return (ALPHA_START + ALPHA_STEP_RATIO * step_alpha).clamp(0, 1)


SME = InversionAttack(ATTACK_ENTRIES["sme"], run=run_sme, why_not=why_not)
