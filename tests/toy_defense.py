"""A toy pruning defense, for the test that a registered defense needs no other edit.

It keeps each layer's larger half by magnitude, and sends its largest kept entry as exactly zero (a kept
entry the server must not mistake for a pruned one).
"""

from __future__ import annotations

import torch

from clients.defenses import DefendedUpdate, kept_by_magnitude, pruned_upload


def keep_a_zero(update, config, residual, generator: torch.Generator) -> DefendedUpdate:
    """Keep the larger half of every layer, and zero each layer's largest entry while keeping it."""
    kept = {name: kept_by_magnitude(values, drop_top=0.0, drop_bottom=0.5) for name, values in update.items()}
    zeroed = {}
    for name, values in update.items():
        flat = values.flatten().clone()
        flat[flat.abs().argmax()] = 0.0
        zeroed[name] = flat.view_as(values)
    return pruned_upload(zeroed, kept, error_feedback=False)
