"""Dimitrov et al.'s FedAvg attack ("Data Leakage in Federated Averaging", TMLR 2022), as its code runs it.

The client's local training is simulated on dummy images, differentiably (:func:`attacker.replay.simulate_update`:
plain SGD, momentum, weight decay or Adam, as the server asked), and the simulated update is matched with the one
observed. Faithful to ``eth-sri/fedavg_leakage`` (``utils/flax_losses.py``, ``attacks/grad_attack.py``) in the
setting of its FEMNIST table (``scripts/reconstruct_femnist_table1.sh``, ``--fedavg full_many -reorder_prior
l2_mean --reg_reorder 1000``):

- every epoch has its own copy of the dummy images, in a fixed batch order, their labels the counts recovered from
  the update per step (``-res_label aaai_avg_full``; :func:`attacker.labels.count_labels_per_step`), sorted by class
  and the same in every copy;
- the cost: the squared distance of the two updates over ``-lr`` (pseudo-gradients), every layer weighted
  ``e^-l`` (``--att_exp_layers``, the first layer 1), times a factor ramped from 1 to 2 geometrically over the
  first half of the iterations (``--att_fac_start 1 --att_total_var 2``); plus the priors: 0.001 TV (squared
  differences of neighbouring pixels, wrapping round, ``--reg_tv``), 2 x the squared distance of the pixels to
  [0, 1] (``--reg_clip``), and 1,000 x the epoch-order-invariant ``l2_mean`` prior (the squared difference of the
  epoch copies' mean images, over every pair of copies);
- the images in normalised units (:mod:`attacker.normalised`), started at N(0, 1), unboxed; Adam at lr 0.4 decayed
  x0.995 every 10 iterations, continuously (``--exp_decay_factor 0.995 --exp_decay_steps 10``), 400 iterations
  (``2 x --att_epochs 200``), ``--att_restarts 1``;
- the reconstruction: every later copy matched to the first by an optimal assignment on PSNR, and averaged.

One departure, of scale: the paper's matching term is absolute (over the local steps), and its priors' weights are
tuned to the gradients of its model on normalised FEMNIST inputs (a first layer's larger by the inverse of the
pixel std, about 6x, than a model's fed pixels in [0, 1]; its flax initialisation differs too). Taken as they are
here, the priors swamp the matching (at a random start 0.13 of matching against 3.2 of TV and 105 of the reorder
prior) and nothing is read back. The matching term is therefore relative (over the target's own weighted squared
norm, which a round's shrinking gradients leave unchanged), weighted :data:`MATCHING_WEIGHT`: 100, chosen on 10
digits over 2 epochs of 5 batches of the FEMNIST CNN, where 30, 100, 300 and 1,000 read back 0, 4, 2 and 0 images
to the judge, and the paper's absolute form 0.

Where the paper knows the labels (its table 1), the server here does not: they are recovered as its table 3 does.
Among restarts the lowest cost is kept (the paper keeps the best PSNR against the truth, which a server lacks).
What is matched uses what the server knows, as IG does: for a pruned upload only the coordinates that travelled.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict

import torch

from attacker.attacks.base import AttackSettings, InversionAttack, Reconstruction, batch_slots, victim_step
from attacker.engine import AdamSchedule, minimize_with
from attacker.labels import count_labels_per_step, labels_of
from attacker.matching import matching_for, restrict
from attacker.normalised import pixels
from attacker.observation import Observation
from attacker.replay import ReplaySchedule, merge_copies, negative_psnr, replay_schedule, simulate_update
from attacker.stop import Stop
from attacker.victim import Victim
from fl_sim.attack_registry import ATTACKS as ATTACK_ENTRIES

#: The gradient-matching factor's ramp: from 1 to 2 over the first half of the iterations.
FACTOR_START, FACTOR_END = 1.0, 2.0
#: The weight of the relative matching term (see the module's notes: the paper's absolute term, rescaled).
MATCHING_WEIGHT = 100.0
#: The priors' weights (``--reg_tv``, ``--reg_clip``, ``--reg_reorder``).
TV_WEIGHT, CLIP_WEIGHT, REORDER_WEIGHT = 0.001, 2.0, 1000.0
#: The step's exponential decay: x0.995 every 10 iterations.
DECAY = (0.995, 10)
#: The most images per update the attack is published on (50 per client; IG's FedAvg setting, 100).
FEDAVG_MOST_IMAGES = 100


def why_not(_victim: Victim, obs: Observation) -> str | None:
    """Why the FedAvg attack does not apply to ``obs``: it simulates one client's several local steps, <= 100 images."""
    if obs.exact_gradient:
        return "one local step: the update is the gradient itself, which IG inverts as it is"
    if not obs.one_trajectory:
        return (f"the aggregate of {obs.clients} clients' {obs.local_steps}-step updates is the mean of as many "
                f"trajectories; the attack simulates one client's")
    if obs.most_images > FEDAVG_MOST_IMAGES:
        return (f"the update can hold {obs.most_images} images; Dimitrov et al. publish 50 per client "
                f"(and IG's FedAvg setting up to {FEDAVG_MOST_IMAGES})")
    return None


def run_fedavg(victim: Victim, observations: list[Observation], settings: AttackSettings,
               stop: Stop | None = None) -> list[Reconstruction]:
    """The attack on every update; updates of the same shape are optimised as one batched problem."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    schedules = [replay_schedule(obs.num_examples, obs.batch_size, obs.local_steps, settings.max_images)
                 for obs in observations]
    for index, (obs, schedule) in enumerate(zip(observations, schedules)):
        groups[(schedule, obs.train, obs.pruned)].append(index)
    results: list[Reconstruction | None] = [None] * len(observations)
    for (schedule, _, _), members in groups.items():
        found = _attack_group(victim, [observations[i] for i in members], schedule, settings, stop)
        for index, rec in zip(members, found):
            results[index] = rec
    return results  # type: ignore[return-value]


def layer_weights(victim: Victim) -> dict[str, float]:
    """``e^-l`` for the parameters of the ``l``-th layer (from 0, in the model's order; weight and bias alike)."""
    layers: dict[str, int] = {}
    for name in victim.param_names:
        layers.setdefault(name.rpartition(".")[0], len(layers))
    return {name: math.exp(-layers[name.rpartition(".")[0]]) for name in victim.param_names}


def squared_variation(z: torch.Tensor) -> torch.Tensor:
    """Dimitrov et al.'s TV: squared differences to the next pixel down and right, wrapping round.

    Summed over each image's pixels, averaged over the images.
    """
    down = z - torch.roll(z, -1, dims=-2)
    right = z - torch.roll(z, -1, dims=-1)
    return (down ** 2 + right ** 2 + 1e-7).flatten(1).sum(dim=1).mean()


def clip_prior(z: torch.Tensor) -> torch.Tensor:
    """The squared distance of the images' pixels to [0, 1], averaged over the images and summed over the pixels."""
    values = pixels(z)
    return (values - values.clamp(0, 1)).pow(2).mean(dim=0).sum()


def reorder_prior(z: torch.Tensor, schedule: ReplaySchedule) -> torch.Tensor:
    """``l2_mean``: over every ordered pair of epoch copies, the mean squared difference of their mean images.

    No reordering of an epoch's batches changes its mean image: the copies of one set of images have equal means.
    """
    if schedule.copies == 1:
        return z.new_zeros(())
    means = z.reshape(schedule.copies, schedule.images, -1).mean(dim=1)
    return (means[:, None, :] - means[None, :, :]).pow(2).mean()


def _attack_group(victim: Victim, observations: list[Observation], schedule: ReplaySchedule,
                  settings: AttackSettings, stop: Stop | None) -> list[Reconstruction]:
    start = time.perf_counter()
    train, restarts = observations[0].train, settings.restarts
    matchings = [matching_for(victim, obs) for obs in observations]
    names = matchings[0].names
    weights = layer_weights(victim)
    tries = [(index, restart) for index in range(len(observations)) for restart in range(restarts)]
    tries += [tries[-1]] * (batch_slots(victim, settings, len(tries)) - len(tries))
    labels = [labels_of(count_labels_per_step(obs.update, train.lr, obs.local_steps, schedule.images, victim))
              .repeat(schedule.copies).to(victim.device) for obs in observations]
    targets = [restrict({n: obs.update[n].to(victim.device) / -train.lr for n in names}, names, m.mask)
               for obs, m in zip(observations, matchings)]
    x0 = torch.stack([torch.randn((schedule.slots, *victim.input_shape), generator=torch.Generator().manual_seed(
        observations[i].random_stream(settings.seed, restart))) for i, restart in tries]).to(victim.device)
    batched = settings.batched and len(tries) > 1
    steps = len(schedule.batches)

    powers = [sum(weights[n] * target[n].pow(2).sum() for n in names) for target in targets]

    def cost(z, labels, target, mask, power, factor):
        update = simulate_update(victim, pixels(z), labels, train, schedule.batches)
        trial = restrict({n: update[n] / -train.lr for n in names}, names, mask)
        matching = sum(weights[n] * (trial[n] - target[n]).pow(2).sum() for n in names) / power
        return (factor * MATCHING_WEIGHT * matching + TV_WEIGHT * squared_variation(z) + CLIP_WEIGHT * clip_prior(z)
                + REORDER_WEIGHT * reorder_prior(z, schedule))

    key = (FEDAVG.name, schedule, train, tuple(names), bool(matchings[0].mask), len(tries) if batched else 1)
    step = victim_step(victim, settings, key, cost, batched=batched)
    masks = {n: torch.stack([matchings[i].mask[n] for i, _ in tries]) for n in names} if matchings[0].mask else {}
    found = minimize_with(step, (x0,), (torch.stack([labels[i] for i, _ in tries]),
                                        step.lay_out({n: torch.stack([targets[i][n] for i, _ in tries])
                                                      for n in names}),
                                        step.lay_out(masks), torch.stack([powers[i] for i, _ in tries])),
                          AdamSchedule(iterations=settings.iterations, lr=settings.lr, signed=False, box=None,
                                       exponential_decay=DECAY,
                                       ramp=(FACTOR_START, FACTOR_END, max(1, settings.iterations // 2))),
                          stop=stop)
    seconds = (time.perf_counter() - start) / len(observations)
    notes = [f"simulated {steps} local steps of {train.optimizer} on {schedule.images} dummy images"
             + (f" x {schedule.copies} epoch copies, matched on PSNR and averaged" if schedule.copies > 1 else "")]
    if found.iterations < settings.iterations:
        notes.append(f"budget spent: cut short after {found.iterations} of {settings.iterations} iterations")
    results = []
    for index, obs in enumerate(observations):
        own = [k for k, (i, _) in enumerate(tries[:len(observations) * restarts]) if i == index]
        best = min(own, key=lambda k: float(found.losses[k]))
        images, own_labels = merge_copies(pixels(found.variables[0][best]).cpu(), labels[index].cpu(), schedule,
                                          distance=negative_psnr, within_labels=False)
        results.append(Reconstruction(
            observation=obs, images=images.clamp(0, 1), labels=own_labels, loss=float(found.losses[best]),
            iterations=found.iterations, seconds=seconds, notes=matchings[index].notes + notes,
            attack=FEDAVG.name, method=FEDAVG.name, needed=settings.iterations,
            complete=found.iterations >= settings.iterations))
    return results


FEDAVG = InversionAttack(ATTACK_ENTRIES["fedavg"], run=run_fedavg, why_not=why_not)
