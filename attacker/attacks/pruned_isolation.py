"""Isolation through pruning: the images single neurons isolate, read from what a pruning defense let travel.

A pruning defense (top-k, DGP) uploads, per layer, only some entries of the update, chosen by magnitude, and
tells the server which (:mod:`fl_sim.sparse`). The server also knows the rule (Kerckhoffs; the defense's
registry entry and its settings): an entry of a layer that did not travel is no larger in magnitude than the
smallest one its layer kept or, for a defense that also drops the largest (DGP with a top ratio above 0,
:attr:`Observation.drops_largest`), no smaller than the largest one it kept.
Per-neuron isolation (:mod:`attacker.attacks.isolation`) takes the missing entries as 0 and needs each
neuron's bias update, which pruning drops for most rows. This attack uses what the server knows instead:

1. **Every row, scale-free.** A neuron isolated on one image has ``dW_r = c_r x`` and ``db_r = c_r``
   (any number of plain SGD steps): its kept entries share the sign of ``c_r``, pixels being >= 0, so a
   row whose kept entries differ in sign is a mixture. Where the bias travelled, ``c_r`` is known; where
   it did not and the defense drops only the smallest, ``c_r`` is below the smallest bias kept, so a row
   with a larger kept entry than that (a pixel above 1) is a mixture too.
2. **The rows of one image merged.** Neurons isolated on the same image are proportional wherever both
   travelled, each pruned differently (the larger ``c_r``, the more of the image clears the layer's
   threshold): rows whose kept entries point the same way (cosine, :data:`AGREEMENT`) on at least
   :data:`MIN_COMMON` common pixels are grouped, each row brought to the scale of the group's best-kept
   row by a rank-one fit of the group's kept entries (alternating least squares, so that a row tied to the
   best one only through others gets its scale too), and their pixels pooled. An update that holds one image
   (FedSGD on one image) has nothing but that image in its rows: every row that kept an entry is used, however
   few it kept, and the rows tied together through the pixels they share form its group (low-rank completion
   of a rank-one layer, which is what breaks DGP at 99% pruned there).
3. **The gaps bounded, then filled by a prior.** A pixel no row of the group carried is bounded, for each
   row, by its layer's threshold over the row's scale: at most ``smallest kept / c_r`` or, where the
   defense drops the largest, at least ``largest kept / c_r``. The image prior fills it, within its bounds: a
   screened Laplace fill (Jacobi sweeps of smoothness plus a pull towards 0, the background, :data:`ZERO_PULL`;
   the attack's iterations, 200 by default, every image of the round at once), whose value also decides the
   side of a pixel the defense may have dropped as large or as small. A gap thus decays from the pixels known
   around it, as a digit's edge does, where zeros cut the edges off and a plain mean greys the background.
4. **The scale.** Where a row of the group carried its bias the image is ``dW_r / db_r``; elsewhere the
   least scale the bounds allow: the brightest pixel is 1 (images lie in [0, 1]).

Groups are ranked as in isolation (most rows first), and at most as many as the update can hold images are
returned; labels are the global model's predictions. Whether a completed image identifies the client's image
better than chance is the judge's call, as for every attack: filled-in pixels count only through it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from attacker.attacks import isolation
from attacker.attacks.base import AttackSettings, InversionAttack, Reconstruction
from attacker.completion import KeptRange
from attacker.observation import Observation
from attacker.stop import Stop
from attacker.victim import Victim
from fl_sim.attack_registry import ATTACKS as ATTACK_ENTRIES

#: Rows show one image where the cosine of their kept entries over the pixels both kept is at least this.
AGREEMENT = 1 - 1e-4
#: Pixels two rows must both have kept to be compared, and a row must have kept to be read at all.
MIN_COMMON = 16
#: How far above 1 a pixel read at a known scale may reach (float32 rounding of the update).
RANGE_SLACK = 1e-2
#: Sweeps of alternating least squares that fit one group's rows to one image at a scale each.
SCALE_SWEEPS = 20
#: The prior's pull of a missing pixel towards 0 (the background), against its four neighbours: a sweep sets it to
#: their sum over ``4 + ZERO_PULL``, the Jacobi step of a smoothness-plus-ridge energy (a screened Laplace fill),
#: so that a gap decays from the pixels known around it instead of spreading their level over the background.
ZERO_PULL = 0.25


def why_not(victim: Victim, obs: Observation) -> str | None:
    """Why isolation through pruning does not apply to ``obs`` (``None`` when it does)."""
    if not obs.pruned:
        return "the upload is dense: isolation reads each of its rows as it is"
    return isolation.why_not(victim, obs)


def run_pruned_isolation(victim: Victim, observations: list[Observation], settings: AttackSettings,
                         stop: Stop | None = None) -> list[Reconstruction]:
    """The images each pruned update's neurons isolate, completed; at most as many as the update can hold."""
    layer = isolation.input_layer(victim)
    start = time.perf_counter()
    groups, notes = [], []
    for obs in observations:
        if stop is not None:
            stop.check("between updates")
        found, note = _merged_rows(obs, layer)
        groups.append(found)
        notes.append([note])
    images = _completed([group for found in groups for group in found], victim.input_shape, settings.iterations)
    seconds = (time.perf_counter() - start) / max(1, len(observations))
    results, first = [], 0
    for obs, found, note in zip(observations, groups, notes):
        own = images[first:first + len(found)]
        first += len(found)
        if not len(own):
            own = torch.zeros((1, *victim.input_shape))
            note.append("no row is an image's: nothing to complete, a blank image is returned")
        results.append(Reconstruction(observation=obs, images=own, labels=victim.predictions(own), loss=0.0,
                                      iterations=settings.iterations, seconds=seconds, notes=note,
                                      attack=PRUNED_ISOLATION.name, method=PRUNED_ISOLATION.name,
                                      needed=settings.iterations))
    return results


@dataclass
class _Group:
    """Rows of one image in the scale of its best-kept row: the pooled pixels, where they are known, the bounds."""

    pixels: torch.Tensor
    known: torch.Tensor
    below: torch.Tensor
    above: torch.Tensor
    scale: float | None
    rows: int


def _merged_rows(obs: Observation, layer: str) -> tuple[list[_Group], str]:
    """The groups of rows that show one image each, best first, at most as many as ``obs`` holds images."""
    names = [f"{layer}.weight", f"{layer}.bias"]
    weight, bias = obs.update[names[0]].double(), obs.update[names[1]].double()
    travelled = obs.travelled(names)
    kept, bias_kept = travelled[names[0]], travelled[names[1]]
    bounds = KeptRange.of(weight, kept, obs.drops_largest)
    smallest_bias = KeptRange.of(bias, bias_kept, obs.drops_largest).smallest
    sign = torch.sign((weight * kept).sum(dim=1))
    signed = weight * sign[:, None] * kept  # >= 0 where an isolated row kept a pixel
    peak = signed.max(dim=1).values
    one_image = obs.most_images == 1  # every row that moved is that image's: no mixture to tell rows apart from
    moved = sign != 0  # a neuron no image fired keeps zeros where the layer kept more entries than moved
    rows = moved & (kept.sum(dim=1) >= (1 if one_image else MIN_COMMON)) & ~((signed < 0) & kept).any(dim=1)
    bias_scale = torch.where(bias_kept, bias * sign, torch.zeros_like(bias))
    rows &= ~bias_kept | ((bias_scale > 0) & (peak <= bias_scale * (1 + RANGE_SLACK)))
    if not bounds.drops_largest:  # an isolated row's pixels are c_r x <= c_r, and c_r is below the smallest bias kept
        rows &= bias_kept | (peak <= smallest_bias * (1 + RANGE_SLACK))
    index = torch.nonzero(rows).flatten()
    found = _connected(kept[index]) if one_image else \
        _agreeing(signed[index], kept[index], bias_kept[index])[:obs.most_images]
    groups = [_pool(signed[index[g]], kept[index[g]], bias_scale[index[g]], bias_kept[index[g]], bounds)
              for g in found]
    note = (f"pruned upload ({obs.defense}): {len(index)} rows could be one image's, {len(found)} kept "
            f"({sum(g.rows > 1 for g in groups)} shown by several rows; the update holds at most {obs.most_images} "
            f"images); every missing pixel bounded ({bounds.describe()}) and filled by smoothness")
    return groups, note


def _agreeing(signed: torch.Tensor, kept: torch.Tensor, anchored: torch.Tensor) -> list[np.ndarray]:
    """Rows that point the same way over the pixels both kept, as index arrays, best first.

    The largest group first; among groups of a size, those with a row whose bias travelled (``anchored``: its scale
    known, and the pixel range a test it passed), then those that kept the most pixels.
    """
    if len(signed) == 0:
        return []
    mask = kept.double()
    common = mask @ mask.T
    cross = signed @ signed.T
    own = (signed**2) @ mask.T  # row i's squared norm over the pixels it shares with row j
    cosine = cross / (own * own.T).clamp(min=1e-300).sqrt()
    agree = (cosine >= AGREEMENT) & (common >= MIN_COMMON)
    count, labels = connected_components(agree.numpy(), directed=False)
    groups = [np.flatnonzero(labels == k) for k in range(count)]
    return sorted(groups, key=lambda g: (-len(g), not bool(anchored[g].any()), -int(kept[g].any(dim=0).sum()),
                                         int(g[0])))


def _connected(kept: torch.Tensor) -> list[np.ndarray]:
    """The rows of the largest connected part of the graph of rows and the pixels they kept (one group, or none).

    Rows of one image are tied to each other through the pixels they both kept; rows of another part share no pixel
    with these, so their scale relative to them is unknown.
    """
    if not len(kept):
        return []
    rows, pixels = kept.shape
    edges = torch.nonzero(kept).numpy()
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], rows + edges[:, 1])), shape=(rows + pixels,) * 2)
    _, labels = connected_components(graph, directed=False)
    row_labels = labels[:rows]
    entries = np.bincount(row_labels, weights=kept.sum(dim=1).numpy())
    return [np.flatnonzero(row_labels == entries.argmax())]


def _row_scales(signed: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Per row, the factor that brings it to the scale of the best-kept row: the rank-one fit of the kept entries.

    Rows of one image are ``c_r x``: ``ratio_r = c_best / c_r``. Started from each row's least squares against the
    best-kept row on their common pixels, then :data:`SCALE_SWEEPS` of alternating least squares over every kept
    entry (the image from the scaled rows, each row's factor from the image), so that a row tied to the best one only
    through others gets its scale too.
    """
    best = int(kept.sum(dim=1).argmax())
    mask = kept.double()
    common = kept & kept[best]
    ratio = (signed * signed[best] * common).sum(dim=1) / (signed**2 * common).sum(dim=1).clamp(min=1e-300)
    ratio[best] = 1.0
    for _ in range(SCALE_SWEEPS):
        placed = ratio > 0
        image = ((signed * ratio[:, None] * mask)[placed].sum(dim=0) /
                 mask[placed].sum(dim=0).clamp(min=1))  # the image at the best row's scale, where a placed row kept it
        seen, cross = (mask * image**2).sum(dim=1), (signed * image * mask).sum(dim=1)
        ratio = torch.where((seen > 0) & (cross > 0), seen / cross.clamp(min=1e-300), ratio)  # signed_r ~ image / ratio
        ratio = ratio / ratio[best]
    return ratio


def _pool(signed: torch.Tensor, kept: torch.Tensor, bias_scale: torch.Tensor, bias_kept: torch.Tensor,
          bounds: KeptRange) -> _Group:
    """One image's rows brought to the scale of its best-kept row, their pixels pooled and the missing ones bounded."""
    ratio = _row_scales(signed, kept)
    scaled, mask = signed * ratio[:, None], kept.double()
    known = kept.any(dim=0)
    pixels = (scaled * mask).sum(dim=0) / mask.sum(dim=0).clamp(min=1)
    missing = ~kept
    below = torch.where(missing, ratio[:, None] * bounds.smallest, torch.full_like(scaled, float("inf"))).min(
        dim=0).values
    above = torch.where(missing, ratio[:, None] * bounds.largest, torch.zeros_like(scaled)).max(dim=0).values if \
        bounds.drops_largest else torch.full_like(pixels, float("inf"))
    scale = float((bias_scale * ratio)[bias_kept].mean()) if bias_kept.any() else None
    return _Group(pixels, known, below, above, scale, len(signed))


def _completed(groups: list[_Group], shape: tuple[int, int, int], sweeps: int) -> torch.Tensor:
    """Each group's image: its missing pixels filled within their bounds by ``sweeps`` of the prior, then scaled."""
    if not groups:
        return torch.zeros((0, *shape))
    pixels = torch.stack([g.pixels for g in groups]).view(-1, *shape)
    known = torch.stack([g.known for g in groups]).view(-1, *shape)
    below = torch.stack([g.below for g in groups]).view(-1, *shape)
    above = torch.stack([g.above for g in groups]).view(-1, *shape)
    filled = torch.where(known, pixels, torch.zeros_like(pixels))
    for _ in range(sweeps):
        padded = F.pad(filled, (1, 1, 1, 1), mode="replicate")
        prior = (padded[..., :-2, 1:-1] + padded[..., 2:, 1:-1] + padded[..., 1:-1, :-2] + padded[..., 1:-1, 2:]) / (
            4 + ZERO_PULL)
        bright = prior > (below + above) / 2  # nearer the bright side: a pixel the defense dropped as large
        gap = torch.where(bright, torch.maximum(prior, above), prior.clamp(0).minimum(below))
        filled = torch.where(known, pixels, gap)
    scale = torch.tensor([g.scale if g.scale is not None else 0.0 for g in groups], dtype=filled.dtype)
    brightest = filled.flatten(1).max(dim=1).values
    scale = torch.where(scale > 0, scale, brightest).clamp(min=1e-300)
    return (filled / scale.view(-1, 1, 1, 1)).clamp(0, 1).float()


PRUNED_ISOLATION = InversionAttack(ATTACK_ENTRIES["pruned-isolation"], run=run_pruned_isolation, why_not=why_not)
