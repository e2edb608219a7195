"""``auto``: a worst-case verdict per update, raced; AutoAttack's idea (Croce and Hein, ICML 2020) for inversion.

A defense's reported leakage must not hinge on one attack's tuning, nor on an attack that ignores
what the server knows. Per update, the attacks of a small, fixed portfolio that apply to it run; the
judge scores each, and the verdict is the maximum, logged with the attack and settings that
reached it (every attack's result stays in the event). Choosing the maximum uses the ground
truth, as AutoAttack's per-sample worst case does: the verdict says what the best of these
attacks achieves on this update, an upper bound on any single one of them.

The portfolio runs cheapest first, each attack only where it applies (:attr:`InversionAttack.why_not`), each
defense-aware (a pruned upload is matched only where it travelled, see :mod:`attacker.matching`):

1. ``isolation``: the images that single neurons of a fully connected first layer isolate, exact over
   any number of SGD steps and batches (closed form, milliseconds);
2. ``pruned-isolation``, for a pruned upload: the same, using what the server knows of the pruning (the bounds on
   every entry that did not travel, several rows of one image merged, a smoothness prior filling the gaps);
   then ``across-rounds``, for a pruned upload under error feedback (DGP's): the same on the client's uploads
   summed over its rounds, which hold what earlier rounds dropped;
3. ``analytic``: the input of the first linear layer with a bias for a one-image update (the image
   itself for an MLP; otherwise a feature vector, which PRECODE's encoder sees before its noise,
   inverted to an image); then ``feature-isolation``, for a CNN's hidden fully connected layer: the features single
   neurons isolate over local SGD, inverted to images;
4. ``sme``, for updates of several local SGD steps over at most 100 images: SME's surrogate model (one gradient of
   every image, at a learned point between the sent and the uploaded weights; 1,000 iterations, each the cost of
   one gradient, where IG's replay pays every local step);
5. ``fedavg``, for the same updates and for local momentum, weight decay or Adam: Dimitrov et al.'s FedAvg attack
   (the client's local training simulated on dummy images, one copy per epoch, an epoch-order-invariant prior, labels
   counted per step; 400 iterations, each the cost of every local step);
6. Inverting Gradients at the TV weights of :data:`TV_GRID`, the first, then the other two together; for
   updates other than one plain SGD step both ``approx`` and ``replay`` (the client's local training redone);
   against PRECODE also ``omit`` (omit-gradient) and, for one-step updates, ``restore``
   (noise-restoring). All of them, for all updates of the round, run as vmap-batched
   optimisations, one per shape;
7. ``cpa``: the Cocktail Party Attack's unmixing of the same fully connected first layer, for the images no
   neuron isolates (its published 25,000 Adam steps, all updates of the round together);
8. iDLG, for updates of one image and one plain SGD step; against PRECODE with the omit-gradient
   matching (L-BFGS, one update at a time: the dearest per update, so last).

**The race.** An update leaves the portfolio as soon as the judge finds one of its images leaked
(identified above chance, at the SSIM threshold) by the attacks so far (``settled``, given by the
plugin, which holds the judge): its verdict is then ``leaked``, which no later, dearer attack can
change, and the budget it leaves goes to the updates still racing (its images-leaked count is what
the attacks run found, a lower bound). iDLG, which runs one update at a time, also stops an update's
optimisation as soon as its best point settles it.
**The budget** (the round's :class:`attacker.stop.Stop`, shared by its updates and stages):
when it is spent, the attack running returns its best so far, marked cut, and the later ones run
only for updates that have no result yet; each result says whether it ran in full, and the stages
that never started are listed (:attr:`Reconstruction.unstarted`): an update nothing leaked from is
``not leaked`` only where every attack that applies ran in full (:mod:`attacker.outcome`).

``attack.iterations`` and ``attack.lr`` (when set) apply to the Adam-based attacks (IG and the
analytic attack's feature inversion); iDLG keeps its published 300 L-BFGS steps at lr 1, and CPA its
25,000 Adam steps at lr 0.001 (the budget cuts it, as any other).

``noise`` and ``dp`` uploads: no adaptive attack is attempted (the noise is fresh and unknown to
the server); the portfolio matches the noisy update as it is, and the event says so.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Protocol

import torch

from attacker.attacks.across_rounds import ACROSS_ROUNDS
from attacker.attacks.analytic import ANALYTIC
from attacker.attacks.base import AttackSettings, InversionAttack, Reconstruction
from attacker.attacks.dlg import IDLG
from attacker.attacks.feature_isolation import FEATURE_ISOLATION
from attacker.attacks.fedavg import FEDAVG
from attacker.attacks.ig import IG, Variant, plan_attacks, run_plans
from attacker.attacks.isolation import ISOLATION
from attacker.attacks.pruned_isolation import PRUNED_ISOLATION
from attacker.attacks.sme import SME
from attacker.attacks.unmixing import CPA
from attacker.observation import Observation
from attacker.stop import Stop
from attacker.victim import Victim
from fl_sim.attack_registry import ATTACKS as ATTACK_ENTRIES

#: Total-variation weights of the IG attacks, in the order they run: the weight that does best on real
#: 32x32 photos (on them IG's default 0.1 over-smooths), a weaker one, and IG's default.
TV_GRID = (1e-2, 1e-3, 1e-1)

#: The attacks of the portfolio: an update's reasons list each one.
PORTFOLIO = (ISOLATION, PRUNED_ISOLATION, ACROSS_ROUNDS, ANALYTIC, FEATURE_ISOLATION, IDLG, SME, FEDAVG, IG, CPA)


class Settled(Protocol):
    """The race's judge (:class:`attacker.judge.Race`, held by the plugin): whether an update has every image leaked."""

    def __call__(self, index: int, result: Reconstruction) -> bool:
        """Whether the update at ``index``, with this new result (judged and recorded), has every image leaked."""

    def settles(self, index: int, images: torch.Tensor, labels: torch.Tensor) -> bool:
        """Whether an attack's point so far would settle the update at ``index`` (nothing recorded)."""


def run_auto(victim: Victim, observations: list[Observation], settings: AttackSettings,
             stop: Stop | None = None, settled: Settled | None = None) -> list[Reconstruction]:
    """The portfolio raced on every update; each result carries every attack that ran as ``candidates``.

    Every update must have at least one attack of the portfolio that applies (the plugin checks).
    """
    candidates: list[list[Reconstruction]] = [[] for _ in observations]
    unstarted: list[list[tuple[str, str]]] = [[] for _ in observations]
    notes: list[list[str]] = [[f"{obs.defense}: no adaptive attack for fresh noise; the noisy update is matched "
                               f"as it is"] if obs.noisy else [] for obs in observations]
    racing = set(range(len(observations)))
    for name, attack, stage in _stages():
        chosen = [i for i in sorted(racing) if attack.why_not(victim, observations[i]) is None]
        if stop is not None and stop.spent:
            for i in [i for i in chosen if candidates[i]]:
                notes[i].append(f"budget spent: {name} did not run")
                unstarted[i].append((attack.name, name))
            chosen = [i for i in chosen if not candidates[i]]
        if not chosen:
            continue
        for index, rec in stage(victim, [observations[i] for i in chosen], settings, stop, chosen, settled):
            rec.method = attack.name
            candidates[index].append(rec)
            if settled is not None and settled(index, rec):
                racing.discard(index)
                notes[index].append(f"leaked after {rec.attack}: the rest of the portfolio, which could not change "
                                    f"the verdict, did not run")
    return [Reconstruction(observation=obs, images=found[0].images, labels=found[0].labels, loss=found[0].loss,
                           iterations=sum(c.iterations for c in found), seconds=sum(c.seconds for c in found),
                           notes=own, attack=AUTO.name, candidates=found, method=AUTO.name,
                           complete=all(c.complete for c in found) and not missing, unstarted=missing)
            for obs, found, own, missing in zip(observations, candidates, notes, unstarted)]


def _stages() -> list[tuple[str, InversionAttack, Callable]]:
    """The race's stages, cheapest first on a CPU: (name, the attack whose ``why_not`` applies, its runner).

    IG runs at the first TV weight for every update left, then at the other two together for the few updates the
    first did not settle (on PRECODE's CIFAR-10 victims, 2 of 13: a stage costs about 2 ms per iteration however
    few its updates, more than their arithmetic). CPA's 25,000 steps cost more per update than IG's (tens of
    seconds on a CPU). SME, 1,000 iterations of one gradient each, comes before the FedAvg attack, 400 iterations of
    a simulation of every local step, and both before IG, whose 4,800 of the same are the dearer. iDLG comes last:
    its L-BFGS runs one update at a time, the dearest stage per update (``benchmarks/worst_case.py``).
    """
    first, *others = TV_GRID
    ig_stages = [(f"ig tv={'/'.join(f'{tv:g}' for tv in tvs)}", IG, functools.partial(_inverting_gradients, tvs=tvs))
                 for tvs in ((first,), tuple(others))]
    return [(ISOLATION.name, ISOLATION, _as_it_is(ISOLATION)),
            (PRUNED_ISOLATION.name, PRUNED_ISOLATION, _as_it_is(PRUNED_ISOLATION, published=True)),
            (ACROSS_ROUNDS.name, ACROSS_ROUNDS, _as_it_is(ACROSS_ROUNDS, published=True)),
            (ANALYTIC.name, ANALYTIC, _as_it_is(ANALYTIC)),
            (FEATURE_ISOLATION.name, FEATURE_ISOLATION, _as_it_is(FEATURE_ISOLATION)),
            (SME.name, SME, _as_it_is(SME, published=True)),
            (FEDAVG.name, FEDAVG, _as_it_is(FEDAVG, published=True)),
            *ig_stages, (CPA.name, CPA, _as_it_is(CPA, published=True)), (IDLG.name, IDLG, _idlg)]


def _as_it_is(attack: InversionAttack, published: bool = False) -> Callable:
    """A stage that runs ``attack`` on the updates it is handed (the race judges after it).

    Its iterations and lr are ``attack.*``'s where set, or with ``published`` always its own published defaults.
    """
    fixed = {"iterations": attack.entry.iterations, "lr": attack.entry.lr} if published else {}

    def stage(victim: Victim, observations: list[Observation], settings: AttackSettings, stop: Stop | None,
              owners: list[int], _settled: Settled | None) -> list[tuple[int, Reconstruction]]:
        return list(zip(owners, attack.run(victim, observations, settings.for_method(attack.name, **fixed), stop)))
    return stage


def _inverting_gradients(victim: Victim, observations: list[Observation], settings: AttackSettings,
                         stop: Stop | None, owners: list[int], _settled: Settled | None,
                         tvs: tuple[float, ...] = TV_GRID) -> list[tuple[int, Reconstruction]]:
    """IG's variants at the weights ``tvs`` on the updates handed, as one batched optimisation (judged after)."""
    ig = settings.for_method(IG.name)
    wanted = [(owner, (obs, variant)) for owner, obs in zip(owners, observations)
              for variant in variants(victim, obs, tvs)]
    plans = plan_attacks(victim, [pair for _, pair in wanted], ig, stop)
    return list(zip([owner for owner, _ in wanted], run_plans(victim, plans, ig, stop)))


def variants(victim: Victim, obs: Observation, tvs: tuple[float, ...] = TV_GRID) -> list[Variant]:
    """The IG variants that apply to ``obs``: the TV weights x multi-step handling x PRECODE handling."""
    multisteps = ("approx",) if obs.exact_gradient else ("replay", "approx")
    stochastic = ("sample", "omit", "restore") if victim.bottleneck is not None else ("sample",)
    return [Variant(tv=tv, multistep=multistep, stochastic=mode) for tv in tvs for multistep in multisteps
            for mode in stochastic if not (mode == "restore" and multistep == "replay")]


def _idlg(victim: Victim, observations: list[Observation], settings: AttackSettings, stop: Stop | None,
          owners: list[int], settled: Settled | None) -> list[tuple[int, Reconstruction]]:
    """iDLG, one update at a time, each stopped as soon as its best point settles the update."""
    stochastic = "omit" if victim.bottleneck is not None else "sample"
    lbfgs = settings.for_method(IDLG.name, iterations=IDLG.entry.iterations, lr=IDLG.entry.lr, stochastic=stochastic)
    leaked = None if settled is None else lambda i, images, labels: settled.settles(owners[i], images, labels)
    results = IDLG.run(victim, observations, lbfgs, stop, leaked=leaked)
    for rec in results:
        rec.attack = IDLG.name + (" omit" if stochastic == "omit" else "")
    return list(zip(owners, results))


AUTO = InversionAttack(ATTACK_ENTRIES["auto"], run=run_auto, portfolio=PORTFOLIO)
