"""Injected client failures (``faults.*``): how a chosen client fails in a chosen round.

The same switches work in simulation and in a deployment, since they act inside the ClientApp:
the server sees an error reply (``raise``), a poisoned update (``nan``), or no reply at all
(``timeout``, ``drop``), exactly as it would from a faulty or vanished client.

One exception: under the Simulation Engine a ``drop`` cannot end its process, since Flower's
Ray actor pool does not replace a dead actor (every later message to it fails with
``ActorDiedError``). There the client raises :class:`ClientDroppedOut` after training instead,
which the server records as that client's failure, as it records a dead actor.
"""

from __future__ import annotations

import logging
import os
import sys
import time

import torch

from fl_sim.config import FaultsConfig
from fl_sim.errors import InjectedFault

logger = logging.getLogger(__name__)

#: Exit status of a client process that ``drop`` ends.
DROP_EXIT_STATUS = 17


class ClientDroppedOut(InjectedFault):
    """A simulated client left the round after training (``faults.mode=drop`` inside a Ray actor)."""


def before_training(faults: FaultsConfig, partition_id: int, server_round: int) -> None:
    """Fail now (``raise``) or stall (``timeout``) if this partition is to fail in this round."""
    if not faults.fails(partition_id, server_round):
        return
    if faults.mode == "raise":
        raise InjectedFault(f"faults.partitions: partition {partition_id} fails in round {server_round}")
    if faults.mode == "timeout":
        logger.warning("faults: partition %d stalls %.1f s in round %d", partition_id, faults.delay_seconds,
                       server_round)
        time.sleep(faults.delay_seconds)


def before_upload(faults: FaultsConfig, partition_id: int, server_round: int,
                  upload: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The update to send: poisoned with NaN (``nan``); the process ends without a reply (``drop``)."""
    if not faults.fails(partition_id, server_round):
        return upload
    if faults.mode == "nan":
        return {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in upload.items()}
    if faults.mode == "drop":
        logger.warning("faults: partition %d drops out of round %d before uploading", partition_id, server_round)
        if _in_ray_actor():
            raise ClientDroppedOut(f"faults.partitions: partition {partition_id} dropped out of round "
                                   f"{server_round} after training, before uploading")
        os._exit(DROP_EXIT_STATUS)  # a vanished client: no reply, no clean-up, as when a device loses power
    return upload


def _in_ray_actor() -> bool:
    """Whether this ClientApp runs inside the Simulation Engine's Ray actor (Ray already imported and up)."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()
