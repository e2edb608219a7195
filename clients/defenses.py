"""Update defenses a client applies before upload, and what the upload costs.

The update is ``local - global`` for every floating-point array. A defense returns the update
to upload and, where it keeps one, a residual for the next round (error feedback).

- ``none``: the update as it is.
- ``noise``: Gaussian noise of std ``defense.noise-std`` on every entry (DLG's noise defense).
- ``dp``: DP-FedAvg's client step (McMahan et al., 2018), local DP: the whole update is clipped to L2
  norm ``dp-clip``, then Gaussian noise of std ``dp-noise-multiplier x dp-clip`` is added on the
  client, so the server never sees the update without it; the server accounts the epsilon each client
  has spent with Flower's RdpAccountant (:func:`fl_sim.privacy.local_dp_epsilon`).
- ``dpsgd``: DP-SGD (Abadi et al., 2016) happens in local training (:func:`fl_sim.training.train_local`
  with Opacus); the resulting update is uploaded as it is, and the server accounts the epsilon
  spent (:mod:`fl_sim.privacy`).
- ``topk``: plain gradient pruning as in the DLG paper: per layer, the ``topk-prune-ratio``
  smallest-magnitude entries are dropped; the survivors are uploaded sparsely.
- ``dgp``: Dual Gradient Pruning (Xue et al., AAAI 2024): per layer, drop BOTH the
  ``dgp-top-ratio`` largest-magnitude entries (what gradient inversion exploits most) and the
  ``dgp-bottom-ratio`` smallest (which matter little for training); upload the rest sparsely,
  and keep everything pruned as error feedback added to the next round's update. The paper's
  own ratios could not be read here (only its abstract was reachable), so the defaults (drop
  the top 10% and the bottom 80%, upload 10%) are ours; both are settings. ADGP (aligned
  positions across clients, needing a trusted broadcaster) is not implemented.

Bytes: a dense upload costs 4 bytes per float32 entry; a pruned one (``topk``, ``dgp``) always
travels as the kept entries' int32 positions and float32 values, 8 bytes per kept entry, in the
Flower message itself (see :mod:`fl_sim.sparse`), so that the server is told which entries
travelled (a kept entry may be exactly zero) instead of guessing them from the values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from fl_sim import sparse
from fl_sim.config import DefenseConfig
from fl_sim.defense_registry import DEFENSES
from fl_sim.registry import load

Arrays = dict[str, torch.Tensor]

DENSE_BYTES_PER_ENTRY = 4
SPARSE_BYTES_PER_ENTRY = 8


@dataclass
class DefendedUpdate:
    """What a defense made of an update.

    The update to upload, the residual to keep, the upload's size, and for a pruned upload the entries it keeps (bool
    masks by name), the positions that travel.
    """

    update: Arrays
    residual: Arrays | None
    upload_bytes: int
    dense_bytes: int
    kept: Arrays | None = None

    @property
    def sparse(self) -> bool:
        """Whether the update travels sparse, as the positions and values of its kept entries."""
        return self.kept is not None


def defend(update: Mapping[str, torch.Tensor], config: DefenseConfig, residual: Mapping[str, torch.Tensor] | None,
           generator: torch.Generator) -> DefendedUpdate:
    """Apply ``defense.name``'s transform (:mod:`fl_sim.defense_registry`) to ``update``.

    ``residual`` is last round's, for error feedback.
    """
    return load(DEFENSES[config.name].transform)(update, config, residual, generator)


def unchanged(update: Mapping[str, torch.Tensor], config: DefenseConfig, residual: Mapping[str, torch.Tensor] | None,
              generator: torch.Generator) -> DefendedUpdate:
    """``none`` (and ``dpsgd``, whose privacy is in training): the update as it is."""
    return _dense(dict(update))


def add_noise(update: Mapping[str, torch.Tensor], config: DefenseConfig, residual: Mapping[str, torch.Tensor] | None,
              generator: torch.Generator) -> DefendedUpdate:
    """``noise``: Gaussian noise of std ``defense.noise-std`` on every entry."""
    return _dense({k: v + config.noise_std * torch.randn(v.shape, generator=generator) for k, v in update.items()})


def clip_and_noise(update: Mapping[str, torch.Tensor], config: DefenseConfig,
                   residual: Mapping[str, torch.Tensor] | None, generator: torch.Generator) -> DefendedUpdate:
    """``dp``: the whole update clipped to L2 norm ``dp-clip``, then noise of std ``dp-noise-multiplier x dp-clip``."""
    norm = torch.sqrt(sum(v.double().pow(2).sum() for v in update.values())).item()
    scale = min(1.0, config.dp_clip / norm) if norm > 0 else 1.0
    std = config.dp_noise_multiplier * config.dp_clip
    return _dense({k: v * scale + std * torch.randn(v.shape, generator=generator) for k, v in update.items()})


def top_k(update: Mapping[str, torch.Tensor], config: DefenseConfig, residual: Mapping[str, torch.Tensor] | None,
          generator: torch.Generator) -> DefendedUpdate:
    """``topk``: per layer, the ``topk-prune-ratio`` smallest-magnitude entries dropped."""
    kept = {k: kept_by_magnitude(v, drop_top=0.0, drop_bottom=config.topk_prune_ratio) for k, v in update.items()}
    return pruned_upload(update, kept, error_feedback=False)


def dual_gradient_pruning(update: Mapping[str, torch.Tensor], config: DefenseConfig,
                          residual: Mapping[str, torch.Tensor] | None, generator: torch.Generator) -> DefendedUpdate:
    """``dgp``: per layer, the largest and the smallest entries dropped, what was dropped fed back next round."""
    carried = {k: v + residual[k] for k, v in update.items()} if residual and config.error_feedback else dict(update)
    kept = {k: kept_by_magnitude(v, config.dgp_top_ratio, config.dgp_bottom_ratio) for k, v in carried.items()}
    return pruned_upload(carried, kept, error_feedback=config.error_feedback)


def kept_by_magnitude(values: torch.Tensor, drop_top: float, drop_bottom: float) -> torch.Tensor:
    """The entries kept (a bool mask) when the largest and the smallest entries by magnitude are dropped.

    The ``drop_top`` share of largest-magnitude and the ``drop_bottom`` share of smallest entries go.

    The counts are ``round(share x n)`` per tensor; ties are broken by position (a stable sort).
    """
    flat = values.flatten()
    n = flat.numel()
    n_top, n_bottom = round(drop_top * n), round(drop_bottom * n)
    order = torch.argsort(flat.abs(), stable=True)
    keep = torch.zeros(n, dtype=torch.bool)
    keep[order[n_bottom: n - n_top]] = True
    return keep.view_as(values)


def pruned_upload(update: Mapping[str, torch.Tensor], kept: Mapping[str, torch.Tensor],
                  error_feedback: bool) -> DefendedUpdate:
    """``update`` where ``kept``, zero elsewhere, to travel as positions and values (what a pruning defense returns).

    With ``error_feedback``, what was dropped as the residual.
    """
    values = {k: torch.where(kept[k], v, torch.zeros_like(v)) for k, v in update.items()}
    residual = {k: update[k] - values[k] for k in update} if error_feedback else None
    entries = sum(int(mask.sum()) for mask in kept.values())
    return DefendedUpdate(values, residual, entries * SPARSE_BYTES_PER_ENTRY,
                          sum(v.numel() for v in update.values()) * DENSE_BYTES_PER_ENTRY, kept=dict(kept))


def _dense(update: Arrays) -> DefendedUpdate:
    """``update`` to travel dense, as it is."""
    entries = sum(v.numel() for v in update.values())
    return DefendedUpdate(update, None, entries * DENSE_BYTES_PER_ENTRY, entries * DENSE_BYTES_PER_ENTRY)


def defend_weights(global_state: Mapping[str, torch.Tensor], local_state: Mapping[str, torch.Tensor],
                   config: DefenseConfig, residual: Mapping[str, torch.Tensor] | None,
                   generator: torch.Generator) -> tuple[Arrays, DefendedUpdate]:
    """The arrays to upload and the defense's result.

    Dense: ``global + defended update`` for float arrays, other buffers as trained. Pruned: the
    update's kept entries (:func:`fl_sim.sparse.pack`), which the server adds to ``global``.
    """
    floats = [k for k, v in global_state.items() if v.is_floating_point()]
    result = defend({k: local_state[k] - global_state[k] for k in floats}, config, residual, generator)
    if result.kept is not None:
        others = {k: v for k, v in local_state.items() if k not in result.update}
        return sparse.pack(result.update, result.kept, others), result
    upload = {k: global_state[k] + result.update[k] if k in result.update else v for k, v in local_state.items()}
    return upload, result
