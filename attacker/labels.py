"""Label recovery from the classifier's gradient, before any image is reconstructed.

One image: with cross-entropy the classifier's bias gradient is ``p - onehot(y)``, negative
only at the true class, whatever the features; that entry is the label. Where it did not
travel (a pruned upload), iDLG (Zhao et al., 2020): the weight gradient is
``(p - onehot(y)) h^T``, and when the features ``h`` are non-negative (sigmoid or ReLU before
the head) only the true class's row sums to a negative value. PRECODE's decoder feeds the head
features of either sign, which is why the bias comes first (iDLG's rule alone found 45% of the
labels of PRECODE's 128 victims on its VB-MLP, the bias rule all of them).

Several images, in one batch or over many local SGD steps: counts from the classifier's bias, in the
family of LLG+ (Wainakh et al., PETS 2022) and iLRG (ICLR 2023). The update divided by ``-lr x steps``
is the mean over the steps of ``dL/db_c = pbar_c - n_c / B``: the model's mean softmax on the images
minus each class's share. A class no image has is left with ``pbar_c`` alone, a positive value
(``eps_c``: what the model gives class c on images of other classes); a class of share ``f`` is left
with ``eps_c - f (1 - a + eps_c)`` (``a``: the mean softmax of an image's own class). So a class's share
is proportional to ``eps_c - dL/db_c``, whatever ``a``, the learning rate, the step count (momentum only
reweights the steps), and the shares sum to 1. ``eps`` is shaped as the model's mean softmax on
uniform-noise images, and scaled to the level the classes the update shows absent have (unscaled when
every class shows present). A class shows present with a negative bias gradient or, where the
classifier's inputs are non-negative (ReLU or sigmoid features, checked on the noise images), iDLG's
sign: a negative weight-row sum. A class the model predicts far above its share shows absent and still
gets its count from ``eps_c - dL/db_c``. Counts are rounded to the image count by largest remainder,
each class that shows present given at least one image where there are enough. Non-finite values (an
update of huge values) are clipped, so the rounding always ends.
"""

from __future__ import annotations

import torch

from attacker.victim import Victim

#: Uniform-noise images that estimate what the model gives the classes an image does not have.
NOISE_PROBES = 64
#: Dummy images behind the per-step counts' softmax and feature estimates (Dimitrov et al. take 3,000 on CIFAR-10).
STEP_PROBES = 1000


def recover_labels(gradient: dict[str, torch.Tensor], num_images: int, victim: Victim) -> torch.Tensor:
    """Labels of the ``num_images`` images behind ``gradient`` (iDLG for one, :func:`count_labels` for more)."""
    if num_images == 1:
        bias = gradient.get(f"{victim.head}.bias")
        rule = bias if bias is not None and bool(bias.min() < 0) else gradient[f"{victim.head}.weight"].sum(dim=-1)
        return rule.argmin().reshape(1)
    return labels_of(count_labels(gradient, num_images, victim))


def labels_of(counts: torch.Tensor) -> torch.Tensor:
    """One label per image from images per class, sorted by class."""
    return torch.repeat_interleave(torch.arange(len(counts), device=counts.device), counts)


def count_labels(gradient: dict[str, torch.Tensor], num_images: int, victim: Victim,
                 images: torch.Tensor | None = None) -> torch.Tensor:
    """Images per class (``[num_classes]``, summing to ``num_images``) behind a mean gradient of local SGD.

    ``images``: some of the client's own images, where an attack recovered them: the model's mean softmax on them
    is ``eps`` as it is (no noise images, no scaling).
    """
    bias = gradient[f"{victim.head}.bias"].to(victim.device).double()
    prediction, non_negative = _probe(victim, images)
    present = bias < 0
    if non_negative:  # iDLG's sign: a class no image has adds p * h >= 0 to its weight row at every step
        present |= gradient[f"{victim.head}.weight"].to(victim.device).double().sum(dim=-1) < 0
    if not bool(present.any()):
        present = bias == bias.min()
    absent = ~present
    eps = prediction
    if images is None and bool(absent.any()) and float(prediction[absent].sum()) > 0:  # the absent classes' level
        eps = prediction * (bias[absent].sum() / prediction[absent].sum()).clamp(min=0)
    share = torch.nan_to_num((eps - bias).clamp(min=0), nan=0.0, posinf=1.0)
    share = share / share.sum() if float(share.sum()) > 0 else present.double() / float(present.sum())
    floor = present.long() if int(present.sum()) <= num_images else torch.zeros_like(present, dtype=torch.long)
    return _largest_remainder(num_images * share, floor, num_images)


def count_labels_per_step(update: dict[str, torch.Tensor], lr: float, steps: int, num_images: int,
                          victim: Victim) -> torch.Tensor:
    """Images per class behind a FedAvg update of ``steps`` local steps: Dimitrov et al.'s per-step estimate.

    Geng et al.'s estimate (AAAI 2022, "Towards General Deep Leakage in Federated Learning"): one step's mean
    weight gradient of the head, summed over the head's inputs, is about ``O (p_c - n_c / B)``, with ``p`` the
    model's mean softmax and ``O`` the mean sum of the head's inputs, both measured on dummy images. Over a
    trajectory the model moves; Dimitrov et al. ("Data Leakage in Federated Averaging", TMLR 2022;
    ``utils/flax_losses.py``, ``restore_labels`` with ``aaai_avg``) interpolate ``p`` and ``O`` linearly from the
    sent weights to the uploaded ones over the ``s`` steps, take every step's count ``K p_j - K dW / (O_j s)``
    and average them, ``dW`` being the update's head weight over ``-lr`` summed over the inputs. The counts are
    rounded to ``num_images`` by largest remainder. Dummy images: uniform noise, :data:`STEP_PROBES` of them.
    """
    head = f"{victim.head}.weight"
    after = {n: victim.params[n] + update[n].to(victim.device) for n in victim.param_names}
    summed = (update[head].to(victim.device).double() / -lr).sum(dim=-1)
    probes = torch.rand((STEP_PROBES, *victim.input_shape), generator=torch.Generator().manual_seed(0))
    (start_softmax, start_features), (end_softmax, end_features) = (
        _softmax_and_features(victim, params, probes.to(victim.device)) for params in (victim.params, after))
    along = torch.arange(steps, dtype=torch.float64, device=victim.device)[:, None] / steps
    softmax = (1 - along) * start_softmax + along * end_softmax
    features = (1 - along) * start_features + along * end_features
    counts = (num_images * softmax - num_images * summed / (features * steps)).mean(dim=0)
    counts = torch.nan_to_num(counts, nan=0.0, posinf=float(num_images), neginf=0.0).clamp(min=0)
    return _largest_remainder(counts, torch.zeros_like(counts, dtype=torch.long), num_images)


def _softmax_and_features(victim: Victim, params: dict[str, torch.Tensor],
                          probes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's mean softmax on ``probes`` with ``params``, and the mean sum of its head's inputs."""
    with torch.no_grad():
        softmax = torch.softmax(victim.logits(params, probes), dim=-1).double().mean(dim=0)
        features = victim.input_of(victim.head, probes, params).flatten(1).sum(dim=1).double().mean()
    return softmax, features


def _largest_remainder(counts: torch.Tensor, floor: torch.Tensor, total: int) -> torch.Tensor:
    """Whole counts summing to ``total``, each at least ``floor``, nearest to ``counts`` by largest remainder."""
    whole = torch.maximum(counts.floor().long(), floor)
    while int(whole.sum()) > total:  # at most num_classes * total turns: each removes one
        excess = torch.where(whole > floor, whole - counts, torch.full_like(counts, -float("inf")))
        whole[excess.argmax()] -= 1
    remainder = counts - whole
    while int(whole.sum()) < total:
        best = remainder.argmax()
        whole[best] += 1
        remainder[best] -= 1
    return whole


def _probe(victim: Victim, images: torch.Tensor | None) -> tuple[torch.Tensor, bool]:
    """The model's mean softmax on ``images`` (uniform noise without), and whether the classifier's inputs were >= 0."""
    generator = torch.Generator().manual_seed(0)
    probes = (images if images is not None else torch.rand((NOISE_PROBES, *victim.input_shape),
                                                           generator=generator)).to(victim.device)
    seen = []
    hook = victim.model.get_submodule(victim.head).register_forward_pre_hook(
        lambda _module, inputs: seen.append(bool((inputs[0] >= 0).all())))
    try:
        with torch.no_grad():
            softmax = torch.softmax(victim.logits(victim.params, probes), dim=-1).double()
    finally:
        hook.remove()
    return softmax.mean(dim=0), all(seen)

