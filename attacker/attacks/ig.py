"""Inverting Gradients (Geiping et al., NeurIPS 2020), batched over every update and variant of a round.

Cost: ``1 - cos(trial, target)`` plus ``tv * TV(x)``; Adam on signed gradients with step decay
and a boxed [0, 1] pixel range; randn initialisation; ``restarts`` tries per update, the lowest
final cost kept (inversefed's ``scoring_choice='loss'``). Labels are recovered first
(:mod:`attacker.labels`).

What is matched uses all the server knows (:class:`Variant`):
- one update of several local steps, or of any optimizer other than plain SGD: with
  ``replay`` the attack redoes the client's local training on dummy images
  (:mod:`attacker.replay`) and matches the simulated update with the observed one; with
  ``approx`` the target is ``-update / (lr * steps)``, matched as the gradient of one batch of
  every image the steps touched (at most ``attack.max-images``);
- a pruned upload: only the coordinates that travelled are matched (:mod:`attacker.matching`), and those that did
  not are held within the pruning's bounds (:func:`attacker.objectives.out_of_bounds`, weighted
  :data:`BOUND_WEIGHT`): the trial gradient must be one the defense could have pruned into what was seen;
- PRECODE: ``sample`` draws the attacker's own bottleneck noise (what a naive attack does),
  ``omit`` leaves the bottleneck's and later gradients out, ``restore`` optimises the
  bottleneck's noise jointly with the image ("noise-restoring", as ChellyFan/Exp3; for one-step
  updates, where one noise draw produced the gradient).

Attacks of the same shape (images, schedule, matched arrays) run as one ``vmap``-batched problem,
whatever their update, TV weight or mask: the portfolio of ``auto`` and all clients of a round
share one optimisation.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

import torch

from attacker.attacks.base import AttackSettings, InversionAttack, Reconstruction, batch_slots, victim_step
from attacker.engine import AdamSchedule, minimize_with
from attacker.labels import recover_labels
from attacker.matching import Matching, dropped_bounds, matching_for, restrict
from attacker.objectives import cosine_distance, out_of_bounds, total_variation
from attacker.observation import Observation
from attacker.replay import ReplaySchedule, epoch_prior, merge_copies, replay_schedule, search_labels, simulate_update
from attacker.steps import Step
from attacker.stop import Stop
from attacker.victim import Victim
from fl_sim.attack_registry import ATTACKS as ATTACK_ENTRIES

#: The share of the budget left when IG's planning starts that its label searches (the replay's) may spend: they are
#: charged to IG, and must leave it most of its budget to run in.
LABEL_SEARCH_SHARE = 0.25

#: The weight of the pruning's bounds beside the cosine cost (a trial whose coordinates that did not travel lie, in
#: all, one target norm inside the band the layer kept costs 0.1 of cosine distance). Chosen on 8 FedSGD DGP updates
#: of the LeNet (1,000 iterations, TV 0.1 / 0.01 / 0.001): clients leaked 2, 1, 0 of 8 at 0.1; 2, 0, 0 at 1; none at
#: 10; 1, 0, 0 without the bounds. A strong weight pulls the trial to a gradient that fits the bounds, not the image.
BOUND_WEIGHT = 0.1

#: The most images per update Inverting Gradients is known to invert (Geiping et al. 2020: batches of up to
#: 100 images, and FedAvg updates of up to 100 images over several local epochs of SGD).
IG_MOST_IMAGES = 100


def why_not(_victim: Victim, obs: Observation) -> str | None:
    """Why Inverting Gradients does not apply to ``obs``: local SGD over at most 100 images is what it inverts."""
    if obs.train.optimizer != "sgd":
        return (f"Inverting Gradients' FedAvg setting is local SGD, not {obs.train.optimizer} (the fedavg attack "
                f"simulates {obs.train.optimizer})")
    if obs.most_images > IG_MOST_IMAGES:
        return (f"the update can hold {obs.most_images} images; Inverting Gradients is published up to "
                f"{IG_MOST_IMAGES} (Geiping et al., NeurIPS 2020: batches, and FedAvg updates, of at most "
                f"{IG_MOST_IMAGES} images)")
    return None


@dataclass(frozen=True)
class Variant:
    """One configuration of the attack: TV weight, multi-step handling, PRECODE handling."""

    tv: float
    multistep: str = "replay"
    stochastic: str = "sample"

    @classmethod
    def from_settings(cls, settings: AttackSettings) -> Variant:
        """The variant ``attack.*`` asks for."""
        return cls(tv=settings.tv, multistep=settings.multistep, stochastic=settings.stochastic)


@dataclass
class Plan:
    """One attack on one update, ready for the engine."""

    obs: Observation
    variant: Variant
    stochastic: str
    labels: torch.Tensor
    target: dict[str, torch.Tensor]
    mask: dict[str, torch.Tensor]
    #: per masked array, the ``[smallest, largest]`` magnitude its layer kept (:func:`attacker.matching.dropped_bounds`)
    bounds: dict[str, torch.Tensor]
    schedule: ReplaySchedule | None
    noise_shape: tuple[int, ...] | None
    slots: int
    images: int
    notes: list[str]
    #: seconds its labels took (the replay's label search), charged to this plan's attack
    setup_seconds: float = 0.0

    @property
    def name(self) -> str:
        """What was run, for events: e.g. ``ig tv=0.01 replay omit`` (nothing said of one exact gradient)."""
        multistep = "" if self.obs.exact_gradient else (" replay" if self.schedule else " approx")
        return f"ig tv={self.variant.tv:g}{multistep}" + ("" if self.stochastic == "sample" else f" {self.stochastic}")

    @property
    def shape_key(self) -> tuple:
        """Plans with equal keys are optimised as one batched problem."""
        return (self.slots, self.schedule, self.obs.train, tuple(self.target), bool(self.mask), self.noise_shape)


def run_ig(victim: Victim, observations: list[Observation], settings: AttackSettings,
           stop: Stop | None = None) -> list[Reconstruction]:
    """Reconstruct every observed update with the variant ``attack.*`` asks for."""
    variant = Variant.from_settings(settings)
    return run_plans(victim, plan_attacks(victim, [(obs, variant) for obs in observations], settings, stop),
                     settings, stop)


def plan_attacks(victim: Victim, wanted: list[tuple[Observation, Variant]], settings: AttackSettings,
                 stop: Stop | None = None) -> list[Plan]:
    """The plans of ``wanted`` (update, variant) pairs; their label searches share :data:`LABEL_SEARCH_SHARE`.

    Plans of one update that differ only in their TV weight share their labels (the replay's label search is
    worth doing once); all the searches together stop at their share of ``stop``'s budget, keeping the best
    labels found so far, so that the optimisation they serve always gets the rest.
    """
    searching = stop.share(LABEL_SEARCH_SHARE) if stop is not None else None
    label_cache: dict = {}
    return [plan_attack(victim, obs, variant, settings, label_cache, searching) for obs, variant in wanted]


def plan_attack(victim: Victim, obs: Observation, variant: Variant, settings: AttackSettings,
                label_cache: dict | None = None, stop: Stop | None = None) -> Plan:
    """Decide, for one update and variant, the dummy images, labels, target and what is matched.

    Plans of one update that differ only in their TV weight share their labels through ``label_cache``
    (the replay's label search is worth doing once). The label search polls ``stop`` before every
    replay it tries and ends once its budget is spent.
    """
    bottleneck = victim.bottleneck
    stochastic = variant.stochastic if bottleneck is not None else "sample"
    matching = matching_for(victim, obs, omit_stochastic=stochastic == "omit")
    notes = list(matching.notes)
    # a secure aggregate of several clients' multi-step updates is the mean of as many trajectories, which no one
    # replay models: it is matched as the mean gradient along them, as multistep=approx does
    replay = variant.multistep == "replay" and not obs.exact_gradient and obs.one_trajectory
    if variant.multistep == "replay" and not obs.one_trajectory:
        notes.append(f"the aggregate of {obs.clients} clients' {obs.local_steps}-step updates is no single "
                     f"trajectory to replay: matched as their mean gradient")
    schedule = replay_schedule(obs.num_examples, obs.batch_size, obs.local_steps, settings.max_images) \
        if replay else None
    if replay:
        images, slots = schedule.images, schedule.slots
        target = {n: obs.update[n].to(victim.device) for n in matching.names}
        notes.append(f"replay: {obs.local_steps} local steps of {obs.train.optimizer} on {images} dummy images"
                     + (f" x {schedule.copies} epoch copies" if schedule.copies > 1 else ""))
        if images < min(obs.num_examples, obs.local_steps * obs.batch_size):
            notes.append(f"the client trained on {obs.num_examples} images; the replay models {images} "
                         f"(attack.max-images)")
    else:  # every image the client's steps touched, as one batch at the global weights
        images = slots = min(obs.num_examples, obs.local_steps * obs.batch_size, settings.max_images)
        gradient = obs.gradient_estimate(matching.names)
        target = {n: g.to(victim.device) for n, g in gradient.items()}
        if not obs.exact_gradient:
            notes.append(f"approximate gradient: {obs.local_steps} local steps of {obs.train.optimizer} as one "
                         f"batch of {images} images")
    noise_shape = None
    if stochastic == "restore" and replay:
        notes.append("restore: the noise of several local steps is not modelled; sampled instead")
        stochastic = "sample"
    elif stochastic == "restore":
        noise_shape = (obs.batch_size, bottleneck.k)
    target = restrict(target, matching.names, matching.mask)
    key = (id(obs), schedule, tuple(matching.names))
    labels = label_cache.get(key) if label_cache is not None else None
    setup_seconds = 0.0
    if labels is None:
        started = time.perf_counter()
        labels = recover_labels(obs.gradient_estimate(victim.param_names), images, victim).to(victim.device)
        if schedule is not None:
            labels = _search_labels(victim, obs, schedule, labels.repeat(schedule.copies), target, matching, stop)
            setup_seconds = time.perf_counter() - started
            share = f" of its {stop.seconds:.2f} s share" if stop is not None and stop.seconds else ""
            notes.append(f"label search: {setup_seconds:.2f} s{share}" +
                         (" (cut: best labels so far kept)" if stop is not None and stop.spent else ""))
        if label_cache is not None:
            label_cache[key] = labels
    bounds = dropped_bounds(target, matching.mask, obs.drops_largest) if matching.mask else {}
    if bounds:
        notes.append("the coordinates that did not travel held within the pruning's bounds")
    return Plan(obs=obs, variant=variant, stochastic=stochastic, labels=labels, target=target, mask=matching.mask or {},
                bounds=bounds, schedule=schedule, noise_shape=noise_shape, slots=slots, images=images, notes=notes,
                setup_seconds=setup_seconds)


def _search_labels(victim: Victim, obs: Observation, schedule: ReplaySchedule, labels: torch.Tensor,
                   target: dict[str, torch.Tensor], matching: Matching, stop: Stop | None) -> torch.Tensor:
    """The replay's per-slot labels, searched (order between steps, and values) on neutral grey images."""
    grey = torch.full((schedule.slots, *victim.input_shape), 0.5, device=victim.device)

    def cost(trial_labels: torch.Tensor) -> float:
        if stop is not None:
            stop.check("during the replay's label search")
        update = simulate_update(victim, grey, trial_labels, obs.train, schedule.batches)
        return float(cosine_distance(restrict(update, matching.names, matching.mask), target))
    return search_labels(cost, labels, schedule, victim.num_classes, stop)


def run_plans(victim: Victim, plans: list[Plan], settings: AttackSettings,
              stop: Stop | None = None) -> list[Reconstruction]:
    """Run every plan; plans of the same shape are optimised together. Results come in plan order."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for index, plan in enumerate(plans):
        groups[plan.shape_key].append(index)
    results: list[Reconstruction | None] = [None] * len(plans)
    for members in groups.values():
        for index, rec in zip(members, _attack_group(victim, [plans[i] for i in members], settings, stop)):
            results[index] = rec
    return results  # type: ignore[return-value]


def _attack_group(victim: Victim, plans: list[Plan], settings: AttackSettings,
                  stop: Stop | None) -> list[Reconstruction]:
    start = time.perf_counter()
    restarts = settings.restarts
    first = plans[0]
    tries = [(plan, restart) for plan in plans for restart in range(restarts)]
    tries += [tries[-1]] * (batch_slots(victim, settings, len(tries)) - len(tries))
    x0 = torch.stack([_init(victim, plan.obs, restart, (plan.slots, *victim.input_shape), settings.seed)
                      for plan, restart in tries])
    variables = (x0,) if first.noise_shape is None else (
        x0, torch.stack([_init(victim, plan.obs, restart + restarts, plan.noise_shape, settings.seed)
                         for plan, restart in tries]))
    labels = torch.stack([plan.labels for plan, _ in tries])
    step = _step(victim, first, len(tries), settings)
    targets = step.lay_out({n: torch.stack([plan.target[n] for plan, _ in tries]) for n in first.target})
    masks = step.lay_out({n: torch.stack([plan.mask[n] for plan, _ in tries]) for n in first.mask})
    bounds = {n: torch.stack([plan.bounds[n] for plan, _ in tries]) for n in first.bounds}
    tvs = torch.tensor([plan.variant.tv for plan, _ in tries], device=victim.device)
    found = minimize_with(step, variables, (labels, targets, masks, bounds, tvs),
                          AdamSchedule(iterations=settings.iterations, lr=settings.lr), stop=stop)
    notes = [step.describe()] if step.describe() else []
    if found.iterations < settings.iterations:
        notes.append(f"budget spent: cut short after {found.iterations} of {settings.iterations} iterations")
    images, losses = found.variables[0], found.losses
    seconds = time.perf_counter() - start
    results = []
    for i, plan in enumerate(plans):
        own = slice(i * restarts, (i + 1) * restarts)
        best = int(losses[own].argmin())
        x, labels = images[own][best].cpu(), plan.labels.cpu()
        if plan.schedule is not None:
            x, labels = merge_copies(x, labels, plan.schedule)
        results.append(Reconstruction(
            observation=plan.obs, images=x, labels=labels, loss=float(losses[own][best]),
            iterations=found.iterations, seconds=plan.setup_seconds + seconds / len(plans), notes=plan.notes + notes,
            attack=plan.name, method=IG.name, needed=settings.iterations,
            complete=found.iterations >= settings.iterations))
    return results


def _step(victim: Victim, plan: Plan, attacks: int, settings: AttackSettings) -> Step:
    """The optimisation step of ``attacks`` tries shaped as ``plan`` (kept on the victim for later rounds)."""
    batched = settings.batched and attacks > 1
    names, train, schedule = list(plan.target), plan.obs.train, plan.schedule

    def cost(x, labels, target, mask, bounds, tv):
        if schedule is None:
            trial = victim.gradient(x, labels)
            prior = total_variation(x)
        else:
            trial = simulate_update(victim, x, labels, train, schedule.batches)
            prior = total_variation(x) + epoch_prior(x, labels, schedule, victim.num_classes)
        value = cosine_distance(restrict(trial, names, mask), target) + tv * prior
        if bounds:
            value = value + BOUND_WEIGHT * out_of_bounds(trial, target, mask, bounds)
        return value

    def cost_with_noise(x, noise, labels, target, mask, bounds, tv):
        with victim.fixed_noise(noise):
            return cost(x, labels, target, mask, bounds, tv)

    objective, count = (cost, 1) if plan.noise_shape is None else (cost_with_noise, 2)
    key = (IG.name, plan.shape_key, attacks if batched else 1)
    return victim_step(victim, settings, key, objective, count, batched)


def _init(victim: Victim, obs: Observation, restart: int, shape: tuple[int, ...], seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(obs.random_stream(seed, restart))
    return torch.randn(shape, generator=generator).to(victim.device)


IG = InversionAttack(ATTACK_ENTRIES["ig"], run=run_ig, why_not=why_not)
