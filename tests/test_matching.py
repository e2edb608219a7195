"""What gradient matching knows of a pruned upload: the coordinates that travelled, and bounds on the others."""

from __future__ import annotations

import pytest
import torch

from attacker.matching import dropped_bounds
from attacker.objectives import out_of_bounds
from clients.defenses import kept_by_magnitude


def _pruned(drop_top: float, drop_bottom: float) -> tuple[dict, dict, dict]:
    """A random two-array gradient, its mask under the clients' pruning rule, and what travelled of it."""
    generator = torch.Generator().manual_seed(0)
    gradient = {"w": torch.randn(40, 30, generator=generator), "b": torch.randn(40, generator=generator)}
    mask = {k: kept_by_magnitude(v, drop_top, drop_bottom).float() for k, v in gradient.items()}
    return gradient, mask, {k: v * mask[k] for k, v in gradient.items()}


@pytest.mark.parametrize("drop_top", [0.0, 0.1])
def test_the_true_gradient_at_any_scale_lies_within_the_bounds_and_a_dense_guess_does_not(drop_top):
    gradient, mask, travelled = _pruned(drop_top, 0.8)
    bounds = dropped_bounds(travelled, mask, drops_largest=drop_top > 0)
    assert float(out_of_bounds(gradient, travelled, mask, bounds)) == 0.0
    assert float(out_of_bounds({k: 7 * v for k, v in gradient.items()}, travelled, mask, bounds)) == 0.0
    flattened = {k: v.abs().mean() * torch.sign(v) for k, v in gradient.items()}  # every entry of one magnitude
    assert float(out_of_bounds(flattened, travelled, mask, bounds)) > 0.0


def test_a_rule_that_drops_the_largest_allows_a_dropped_entry_above_those_kept_and_top_k_does_not():
    gradient, mask, travelled = _pruned(0.0, 0.8)
    dropped = mask["w"] == 0
    raised = {**gradient, "w": torch.where(dropped, 100 * gradient["w"].abs().max(), gradient["w"])}
    assert float(out_of_bounds(raised, travelled, mask, dropped_bounds(travelled, mask, drops_largest=False))) > 1.0
    assert float(out_of_bounds(raised, travelled, mask, dropped_bounds(travelled, mask, drops_largest=True))) == 0.0
