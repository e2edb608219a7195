"""The updates whose round verdict is ``undecided``, kept in the run folder until a deep pass settles them.

Everything an attack on an update needs is kept, and nothing a real server lacks beyond what the judge holds: the
global model the update was computed against (once per round, ``undecided/round-R/global.pt``), the update itself
(only the entries that travelled, for a pruned upload), the training the server asked for, what the client
reported, the defense the protocol gives it, and, for the judge alone, the positions of the images it held
(``undecided/round-R/node-N.pt``). Each file is written whole or not at all (a rename), and removed once the update's
final verdict is in ``events.jsonl``, so a pass killed at any point loses nothing and counts nothing twice.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from attacker.observation import Observation
from fl_sim.config import TrainConfig
from fl_sim.defense_registry import DEFENSES

#: The folder of the run directory that holds the kept updates.
FOLDER = "undecided"
GLOBAL = "global.pt"
#: The audit key that marks an update judged against images its client lent during the run (a user's app): only
#: that run's own deep pass has them.
LENT = "lent"


@dataclass(frozen=True)
class KeptUpdate:
    """One kept update: where it lies, what the server observed of it, and its audit (for the judge only)."""

    path: Path
    observation: Observation
    audit: Mapping[str, Any]

    @property
    def key(self) -> tuple[int, int, int | None]:
        """The update's key in the run's events, as :attr:`fl_sim.events.Attack.update_key`."""
        obs = self.observation
        return obs.server_round, obs.node_id, obs.partition_id


class UndecidedStore:
    """The kept updates of one run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.directory = Path(run_dir) / FOLDER

    def keep(self, obs: Observation, audit: Mapping[str, Any]) -> Path:
        """Keep ``obs`` and its ``audit``; the round's global model is written with its first update."""
        folder = self.directory / f"round-{obs.server_round}"
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / GLOBAL).exists():
            _save_atomic(folder / GLOBAL, {name: value.clone() for name, value in obs.global_arrays.items()})
        path = folder / f"node-{obs.node_id}.pt"
        summed = obs.upload_sum
        _save_atomic(path, {
            "server_round": obs.server_round, "node_id": obs.node_id, "partition_id": obs.partition_id,
            "update": _travelled(obs), "positions": obs.positions,
            "upload_sum": None if summed is None else {"update": _travelled(summed), "positions": summed.positions},
            "train": dataclasses.asdict(obs.train),
            "num_examples": obs.num_examples, "local_steps": obs.local_steps, "defense": obs.defense,
            "drops_largest": obs.drops_largest, "clients": obs.clients, "audit": dict(audit)})
        return path

    def kept(self) -> list[KeptUpdate]:
        """Every kept update, by round, then as written."""
        if not self.directory.is_dir():
            return []
        found = []
        for folder in sorted(self.directory.glob("round-*"), key=lambda p: int(p.name.split("-")[1])):
            paths = sorted((p for p in folder.glob("node-*.pt")), key=lambda p: p.stat().st_mtime_ns)
            if not paths:
                continue
            global_arrays = torch.load(folder / GLOBAL, weights_only=True)
            found += [_load(path, global_arrays) for path in paths]
        return found

    def release(self, kept: KeptUpdate) -> None:
        """Forget ``kept`` (its final verdict is written); its round's folder goes with its last update."""
        kept.path.unlink(missing_ok=True)
        folder = kept.path.parent
        if not any(folder.glob("node-*.pt")):
            (folder / GLOBAL).unlink(missing_ok=True)
            folder.rmdir()
        if self.directory.is_dir() and not any(self.directory.iterdir()):
            self.directory.rmdir()


def _load(path: Path, global_arrays: dict[str, torch.Tensor]) -> KeptUpdate:
    """A kept update read back, its sparse upload made dense again as the server received it."""
    saved = torch.load(path, weights_only=True)
    positions = saved["positions"]
    update = _received(saved["update"], positions, global_arrays)
    obs = Observation(server_round=saved["server_round"], node_id=saved["node_id"],
                      partition_id=saved["partition_id"], global_arrays=global_arrays, update=update,
                      train=TrainConfig(**saved["train"]), num_examples=saved["num_examples"],
                      local_steps=saved["local_steps"], defense=saved["defense"], positions=positions,
                      drops_largest=saved.get("drops_largest", _may_drop_largest(saved["defense"])),
                      clients=saved["clients"])
    summed = saved.get("upload_sum")
    if summed is not None:
        obs = dataclasses.replace(obs, upload_sum=dataclasses.replace(
            obs, update=_received(summed["update"], summed["positions"], global_arrays), positions=summed["positions"]))
    return KeptUpdate(path, obs, saved["audit"])


def _travelled(obs: Observation) -> dict[str, torch.Tensor]:
    """What of ``obs``'s update travelled: for a sparse upload the entries at its positions, else all of it."""
    positions = obs.positions or {}
    return {name: value.flatten()[positions[name].long()].clone() if name in positions else value
            for name, value in obs.update.items()}


def _received(update: dict[str, torch.Tensor], positions: dict[str, torch.Tensor] | None,
              global_arrays: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A kept update as the server received it: a sparse one made dense again."""
    return {name: _dense(values, positions[name], global_arrays[name]) if positions and name in positions else values
            for name, values in update.items()}


def _may_drop_largest(defense: str) -> bool:
    """For an update kept before its pruning's top share was: whether any of its defenses can drop the largest."""
    return any(DEFENSES[name].largest_share is not None for name in defense.split("+"))


def _dense(values: torch.Tensor, positions: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """The entries ``values`` at the flat ``positions`` of a tensor shaped as ``like``, zero elsewhere."""
    dense = torch.zeros(like.numel(), dtype=values.dtype)
    dense[positions.long()] = values
    return dense.view_as(like)


def _save_atomic(path: Path, payload: Any) -> None:
    """Write ``payload`` to ``path`` whole or not at all."""
    partial = path.with_suffix(".partial")
    torch.save(payload, partial)
    os.replace(partial, path)
