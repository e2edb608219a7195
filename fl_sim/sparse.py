"""Sparse updates on the wire: a pruned update travels as the positions and values of its kept entries.

A client whose defense prunes its update (``topk``, ``dgp``) sends, for every floating-point
array ``name``, the arrays ``name@positions`` (int32 flat positions of the kept entries) and
``name@values`` (their float32 values), and its other arrays (integer buffers) as they are. The
server, which knows the global weights it sent, turns that back into ``global + update`` before
anything else sees the reply, so validation, the plugins and FedAvg work on dense weights. The
message is 8 bytes per kept entry instead of 4 per entry. The positions are what the defense
kept, not where the update is non-zero: a kept entry whose value is exactly zero travels too, and
the server hands the positions on with the dense weights (``InterceptedUpdate.travelled``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

POSITIONS, VALUES = "@positions", "@values"


def encode(values: torch.Tensor, kept: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The entries of ``values`` where the bool mask ``kept`` is set, as (int32 flat positions, float32 values)."""
    positions = torch.nonzero(kept.flatten(), as_tuple=True)[0]
    return positions.to(torch.int32), values.flatten()[positions].to(torch.float32)


def decode(positions: torch.Tensor, values: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`encode`: a dense float32 tensor of ``shape``."""
    dense = torch.zeros(shape.numel(), dtype=torch.float32)
    dense[positions.long()] = values
    return dense.view(shape)


def pack(update: Mapping[str, torch.Tensor], kept: Mapping[str, torch.Tensor],
         others: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The arrays a client sends.

    Each update tensor's ``kept`` entries as positions and values, ``others`` as they are.
    """
    arrays = dict(others)
    for name, values in update.items():
        arrays[name + POSITIONS], arrays[name + VALUES] = encode(values, kept[name])
    return arrays


def unpack(arrays: Mapping[str, np.ndarray],
           global_arrays: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None:
    """``global + update`` for every sparse array and the others as sent, and the positions that travelled.

    The positions are flat, per sparse array. ``None`` if ``arrays`` is not a well-formed sparse update of
    the model (the validator then rejects it as it stands).
    """
    dense, travelled, used = {}, {}, set()
    for name, reference in global_arrays.items():
        positions, values = arrays.get(name + POSITIONS), arrays.get(name + VALUES)
        if positions is None and values is None:
            if name not in arrays:
                return None
            dense[name], used = arrays[name], used | {name}
            continue
        if not _well_formed(positions, values, reference):
            return None
        update = np.zeros(reference.size, dtype=reference.dtype)
        update[positions.astype(np.int64)] = values
        dense[name] = reference + update.reshape(reference.shape)
        travelled[name] = positions.astype(np.int64)
        used |= {name + POSITIONS, name + VALUES}
    return (dense, travelled) if used == set(arrays) else None


def _well_formed(positions: np.ndarray | None, values: np.ndarray | None, reference: np.ndarray) -> bool:
    return (positions is not None and values is not None and positions.ndim == values.ndim == 1
            and len(positions) == len(values) and np.issubdtype(positions.dtype, np.integer)
            and values.dtype == reference.dtype
            and (len(positions) == 0 or (positions.min() >= 0 and positions.max() < reference.size))
            and len(np.unique(positions)) == len(positions))  # a repeated position would silently keep one value
