"""Unmixing the first fully connected layer: the Cocktail Party Attack (Kariyappa et al., ICML 2023).

For a first layer ``z = W x + b`` that reads the pixels, the update over any number of plain-SGD steps is
``dW = A^T X`` and ``db = A^T 1``: each of the layer's rows mixes the client's N images ``X`` (the rows of
one image's coefficients ``A`` summed over its local steps). Where no neuron isolates an image
(:mod:`attacker.attacks.isolation`), the images are still the independent sources of a blind source
separation problem with many more observations (rows) than sources, which CPA solves as independent
component analysis:

1. the rows are centred (per row, over the pixels) and whitened to their first ``k`` principal components,
   ``k`` the number of images the update holds: the protocol's bound (``min(local data, batch x steps)``),
   capped by the numerical rank of ``dW``, which counts the images;
2. an unmixing matrix ``U`` (``k x k``, rows kept unit-norm) is optimised with Adam so that the sources
   ``U Z`` are non-Gaussian (negentropy by ``log cosh``), mutually decorrelated (``exp(T |cos|) - 1`` between
   rows of ``U``) and smooth as images (total variation, after the centring is undone);
3. each source is an image up to scale and sign. CPA's evaluation picks the sign with the ground truth;
   here the bias resolves both without it: with ``M`` the least-squares mixing of the sources into ``dW``,
   ``db = M v`` gives ``v`` (one factor per source), and ``source / v`` is the image.

Hyperparameters: CPA's published command for its fully connected network (``src/attack.py --attack=cp
--decor=1.47 --tv=3.1 --T=12.4 --lr=0.001``, 25,000 Adam steps, negentropy weight 1); their released
code adds the negentropy term with weight 0, which made no difference here (``docs/benchmarks.md``).
All the updates of a call are optimised together (Adam is elementwise: the optimisations stay
independent). Deeper first layers (convolutions) would need CPA's feature inversion next: not built,
and :func:`why_not` says so.
"""

from __future__ import annotations

import time

import torch

from attacker.attacks.base import AttackSettings, InversionAttack, Reconstruction
from attacker.attacks.isolation import input_layer
from attacker.attacks.isolation import why_not as isolation_why_not
from attacker.completion import KeptRange, completable_rows, complete, coverage
from attacker.objectives import total_variation
from attacker.observation import Observation
from attacker.stop import Stop
from attacker.victim import Victim
from fl_sim.attack_registry import ATTACKS as ATTACK_ENTRIES

#: Weight of the negentropy term (CPA's default ``--ne``).
NEGENTROPY = 1.0
#: Weight and temperature of the decorrelation term (CPA's ``--decor`` and ``--T`` for its FC network).
DECORRELATION, TEMPERATURE = 1.47, 12.4
#: Weight of the total variation of the sources (CPA's ``--tv`` for its FC network).
TOTAL_VARIATION = 3.1
#: Singular values of ``dW`` below this share of the largest are rounding, not images (float32 updates).
RANK_TOLERANCE = 1e-5
#: Projections that complete a pruned upload's first layer before it is unmixed (:func:`attacker.completion.complete`).
COMPLETION_SWEEPS = 300


def why_not(victim: Victim, obs: Observation) -> str | None:
    """Why unmixing does not apply: isolation's setting, the whole update, several images, more rows than images."""
    reason = isolation_why_not(victim, obs)
    if reason is not None:
        return reason
    if obs.most_images < 2:
        return "the update holds one image: nothing to unmix (analytic recovery reads it exactly)"
    layer = input_layer(victim)
    rows = victim.params[f"{layer}.weight"].shape[0]
    if rows < obs.most_images:
        return f"the first layer has {rows} neurons, fewer than the {obs.most_images} images the update can hold"
    return _incomplete(obs, layer) if obs.pruned else None


def _incomplete(obs: Observation, layer: str) -> str | None:
    """Why the kept entries of a pruned upload's first layer cannot determine its mixtures (``None`` if they can)."""
    kept = coverage(obs.travelled([f"{layer}.weight"])[f"{layer}.weight"], obs.most_images)
    if kept.determined:
        return None
    if kept.rows < kept.rank:
        shortfall = f"only {kept.rows} rows kept {kept.rank} entries or more, fewer than the {kept.rank} images"
    else:
        shortfall = (f"{obs.defense} kept {kept.entries:,} entries in the {kept.rows} rows that kept {kept.rank} or "
                     f"more, fewer than the {kept.needed:,} parameters of a rank-{kept.rank} layer of them")
    return f"{shortfall}: no completion determines its mixtures (Candes and Recht 2009)"


def run_unmixing(victim: Victim, observations: list[Observation], settings: AttackSettings,
                 stop: Stop | None = None) -> list[Reconstruction]:
    """The images each update's first layer mixes, unmixed; updates with the same number of images together."""
    layer = input_layer(victim)
    whitened = [WhitenedLayer.of(obs, layer) for obs in observations]
    results: list[Reconstruction | None] = [None] * len(observations)
    for count in sorted({w.count for w in whitened}):
        chosen = [i for i, w in enumerate(whitened) if w.count == count]
        start = time.perf_counter()
        unmixing, iterations = _optimise([whitened[i] for i in chosen], victim.input_shape, settings, stop)
        seconds = (time.perf_counter() - start) / len(chosen)
        for row, index in enumerate(chosen):
            images = whitened[index].images(unmixing[row]).reshape(count, *victim.input_shape).clamp(0, 1)
            cut = "" if iterations == settings.iterations else f"; budget spent: cut short after {iterations}"
            notes = [f"dW has rank {whitened[index].rank}{whitened[index].note}; {count} sources unmixed (the update "
                     f"holds at most {observations[index].most_images} images), {settings.iterations} Adam steps{cut}"]
            results[index] = Reconstruction(observation=observations[index], images=images,
                                            labels=victim.predictions(images), loss=0.0, iterations=iterations,
                                            seconds=seconds, notes=notes, attack=CPA.name, method=CPA.name,
                                            needed=settings.iterations, complete=iterations >= settings.iterations)
    return results


class WhitenedLayer:
    """One update's first layer, whitened to ``count`` components: what CPA unmixes, and how sources become images."""

    def __init__(self, d_weight: torch.Tensor, d_bias: torch.Tensor, count: int, rank: int,
                 bias_known: torch.Tensor | None = None, note: str = "") -> None:
        self.d_weight, self.d_bias, self.count, self.rank = d_weight, d_bias, count, rank
        #: the rows whose bias update is known (all, for a dense upload), and how a pruned layer was completed
        self.bias_known = torch.ones(len(d_bias), dtype=torch.bool) if bias_known is None else bias_known
        self.note = note
        mean = d_weight.mean(dim=1, keepdim=True)
        left, singular, right = torch.linalg.svd(d_weight - mean, full_matrices=False)
        scale = (d_weight.shape[1] - 1) ** 0.5
        #: the whitened rows (``k x pixels``) and the whitened row means, which undo the centring
        self.whitened = (scale * right[:count]).float()
        self.whitened_mean = (scale * (left[:, :count].T @ mean) / singular[:count, None]).float()

    @classmethod
    def of(cls, obs: Observation, layer: str) -> WhitenedLayer:
        """The whitened layer of ``obs``, to as many components as its images (protocol bound and rank).

        A pruned upload's layer is first completed (:mod:`attacker.completion`): its rows that kept enough entries,
        at the rank of the images the update holds, each missing entry within the pruning's bound.
        """
        names = [f"{layer}.weight", f"{layer}.bias"]
        d_weight, d_bias = obs.update[names[0]].double(), obs.update[names[1]].double()
        bias_known, note = None, ""
        if obs.pruned:
            travelled = obs.travelled(names)
            kept, bias_known = travelled[names[0]], travelled[names[1]]
            whole = completable_rows(kept, obs.most_images)
            bounds = KeptRange.of(d_weight, kept, obs.drops_largest)
            d_weight = complete(d_weight[whole], kept[whole], obs.most_images, bounds, COMPLETION_SWEEPS)
            d_bias, bias_known = d_bias[whole], bias_known[whole]
            note = (f"; the {int(whole.sum())} rows that kept {obs.most_images} entries or more completed at rank "
                    f"{obs.most_images} ({COMPLETION_SWEEPS} sweeps, every missing entry {bounds.describe()}), "
                    f"{int(bias_known.sum())} of their biases known")
        singular = torch.linalg.svdvals(d_weight)
        rank = int((singular > RANK_TOLERANCE * singular[0]).sum()) if singular[0] > 0 else 0
        return cls(d_weight, d_bias, max(1, min(obs.most_images, rank)), rank, bias_known, note)

    def images(self, unmixing: torch.Tensor) -> torch.Tensor:
        """The images of the sources ``unmixing`` (``k x k``) separates, scaled and signed by the bias (``k x pixels``).

        Exact for the unmixing that separates the images (the bias equation pins each source's scale and sign). Where
        fewer biases travelled than there are sources, each source is signed and scaled by the pixel range instead:
        its largest magnitude is its brightest pixel, 1.
        """
        sources = _sources(unmixing[None], self.whitened[None], self.whitened_mean[None])[0].double()
        if self.bias_known.sum() < self.count:
            inverse_scale = sources.gather(1, sources.abs().argmax(dim=1, keepdim=True))[:, 0]
        else:
            mixing = torch.linalg.lstsq(sources.T, self.d_weight.T).solution.T  # dW ~ mixing @ sources
            known = self.bias_known
            inverse_scale = torch.linalg.lstsq(mixing[known], self.d_bias[known, None]).solution[:, 0]
        safe = torch.where(inverse_scale.abs() > 1e-12, inverse_scale, torch.full_like(inverse_scale, 1e-12))
        return (sources / safe[:, None]).float()


def _sources(unmixing: torch.Tensor, whitened: torch.Tensor, whitened_mean: torch.Tensor) -> torch.Tensor:
    """The sources ``[U, k, pixels]`` of unit-norm unmixing rows, centring undone (CPA's ``S_hat``)."""
    rows = _unit_rows(unmixing)
    return rows @ whitened + rows @ whitened_mean


def _unit_rows(unmixing: torch.Tensor) -> torch.Tensor:
    """The unmixing matrices with every row scaled to unit norm (CPA optimises directions, not lengths)."""
    return unmixing / unmixing.norm(dim=-1, keepdim=True).clamp(min=1e-20)


def _optimise(layers: list[WhitenedLayer], shape: tuple[int, ...], settings: AttackSettings,
              stop: Stop | None) -> tuple[torch.Tensor, int]:
    """CPA's unmixing matrices for ``layers`` (same ``k``), optimised together; and the iterations run."""
    count = layers[0].count
    whitened = torch.stack([layer.whitened for layer in layers])
    whitened_mean = torch.stack([layer.whitened_mean for layer in layers])
    unmixing = torch.eye(count).repeat(len(layers), 1, 1).requires_grad_(True)
    optimizer = torch.optim.Adam([unmixing], lr=settings.lr)
    iterations = 0
    for iterations in range(settings.iterations):
        if stop is not None and stop.ends(iterations, settings.iterations):
            break
        optimizer.zero_grad()
        rows = _unit_rows(unmixing)
        centred = rows @ whitened
        negentropy = -(torch.log(torch.cosh(centred)).mean(dim=-1) ** 2).mean(dim=-1)
        sources = (centred + rows @ whitened_mean).reshape(len(layers), count, *shape)
        cosines = (rows @ rows.transpose(1, 2)).abs()
        decorrelation = (torch.exp(cosines * TEMPERATURE) - 1).mean(dim=(1, 2))
        smoothness = torch.vmap(total_variation)(sources)  # CPA's TV, per update
        loss = NEGENTROPY * negentropy + DECORRELATION * decorrelation + TOTAL_VARIATION * smoothness
        loss.sum().backward()
        optimizer.step()
    else:
        iterations = settings.iterations
    return unmixing.detach(), iterations


CPA = InversionAttack(ATTACK_ENTRIES["cpa"], run=run_unmixing, why_not=why_not)
