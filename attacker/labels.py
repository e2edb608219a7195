"""Label recovery from the classifier's gradient, before any image is reconstructed.

One image: with cross-entropy the classifier's bias gradient is ``p - onehot(y)``, negative
only at the true class, whatever the features; that entry is the label. Where it did not
travel (a pruned upload), iDLG (Zhao et al., 2020): the weight gradient is
``(p - onehot(y)) h^T``, and when the features ``h`` are non-negative (sigmoid or ReLU before
the head) only the true class's row sums to a negative value. PRECODE's decoder feeds the head
features of either sign, which is why the bias comes first (iDLG's rule alone found 45% of the
labels of PRECODE's 128 victims on its VB-MLP, the bias rule all of them).

A batch of B: count estimation from the bias gradient, in the family of breaching's
``bias-corrected`` rule and Geng et al. (2021). For the mean cross-entropy,
``dL/db_c = pbar_c - n_c / B``, where ``pbar`` is the batch's mean softmax and ``n_c`` the
number of images of class c. The server does not know the batch, but it knows its own model:
it estimates ``pbar`` as the model's mean softmax on uniform-noise images, sets
``n_c = B (pbar_c - dL/db_c)`` and rounds the counts to B labels by largest remainder. On
DLG's LeNet with digits this recovered all labels of 40 random batches of 4 (the sign-only
rule, "classes with a negative bias gradient", got 84%). Every class whose weight-gradient row
sums to a negative value (iDLG's sign, which holds per image) is given at least one image when
there are enough: over several local steps the model moves and the noise-probe estimate of
``pbar`` drifts, while the sign of a present class's row stays. Non-finite counts (an update of
huge values) are clipped, so the rounding always ends.
"""

from __future__ import annotations

import torch

from attacker.victim import Victim

CLASSIFIER_WEIGHT = "classifier.weight"
CLASSIFIER_BIAS = "classifier.bias"
#: Uniform-noise images used to estimate the model's mean prediction.
NOISE_PROBES = 64


def recover_labels(gradient: dict[str, torch.Tensor], num_images: int, victim: Victim) -> torch.Tensor:
    """Labels of the ``num_images`` images behind ``gradient`` (iDLG for one, count estimation for more)."""
    row_sums = gradient[CLASSIFIER_WEIGHT].sum(dim=-1)
    if num_images == 1:
        bias = gradient.get(CLASSIFIER_BIAS)
        rule = bias if bias is not None and bool(bias.min() < 0) else row_sums
        return rule.argmin().reshape(1)
    counts = num_images * (_mean_prediction(victim) - gradient[CLASSIFIER_BIAS].to(victim.device))
    counts = torch.nan_to_num(counts, nan=0.0, posinf=num_images, neginf=0.0).clamp(0, num_images)
    present = (row_sums < 0).to(victim.device)
    floor = present.long() if int(present.sum()) <= num_images else torch.zeros_like(present, dtype=torch.long)
    whole = torch.maximum(counts.floor().long(), floor)
    while int(whole.sum()) > num_images:  # at most num_classes * num_images turns: each removes one
        excess = torch.where(whole > floor, whole - counts, torch.full_like(counts, -float("inf")))
        whole[excess.argmax()] -= 1
    remainder = counts - whole
    while int(whole.sum()) < num_images:
        best = remainder.argmax()
        whole[best] += 1
        remainder[best] -= 1
    return torch.repeat_interleave(torch.arange(len(whole), device=whole.device), whole)


def _mean_prediction(victim: Victim) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    probes = torch.rand((NOISE_PROBES, *victim.input_shape), generator=generator).to(victim.device)
    with torch.no_grad():
        return torch.softmax(victim.logits(victim.params, probes), dim=-1).mean(dim=0)
