"""The client half of the audit of a user's own Flower app: a mod that lends the judge the images a client trained on.

The judge of a curious server's attacks needs each client's real images, which a real server never has. In
Flower's Simulation Engine the lab may lend them: :func:`lend_images_mod` adds to every train reply the images
and labels the client's own loader gives (``load(context)``), as ``.npy`` bytes in the reply's ``client``
ConfigRecord, with the partition id. The server's strategy wrapper (:mod:`lab.audit`) takes them out before
anything else sees the reply: the judge gets them, the attacks and the aggregation never do.

**The rule.** The mod lends only inside Flower's Simulation Engine, which runs each ClientApp in a Ray actor of
its own backend: :func:`in_simulation` is true in such an actor (Ray initialised in this process, and the
process an actor's) and false in a SuperNode of a deployment, which runs ClientApps in plain processes. Outside
the simulation the mod refuses to lend: the reply goes out as the app made it (with the partition id only) and
one warning says so; the server's events then carry the verdict ``no ground truth``.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable

import numpy as np
import torch
from flwr.app import ConfigRecord, Context, Message, MessageType
from flwr.clientapp.typing import ClientAppCallable, Mod

from fl_sim import protocol

logger = logging.getLogger(__name__)

#: A user's loader of a client's training images: ``load(context) -> (images [N, C, H, W] in [0, 1], labels [N])``.
ImageLoader = Callable[[Context], tuple[torch.Tensor, torch.Tensor]]


def in_simulation() -> bool:
    """Whether this ClientApp runs in Flower's Simulation Engine (a Ray actor), where lending images is allowed."""
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None


def lend_images_mod(load: ImageLoader) -> Mod:
    """A mod that adds the client's training images (``load(context)``) to its train replies, in simulation only."""
    warned = []

    def lend_images(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        reply = call_next(msg, context)
        if msg.metadata.message_type != MessageType.TRAIN or reply.has_error():
            return reply
        info = reply.content.config_records.get(protocol.CLIENT_INFO) or ConfigRecord()
        partition = context.node_config.get(protocol.PARTITION_ID)
        if partition is not None:
            info[protocol.PARTITION_ID] = int(partition)
        if in_simulation():
            images, labels = load(context)
            info[protocol.AUDIT_IMAGES] = _npy((images.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8))
            info[protocol.AUDIT_LABELS] = _npy(labels.detach().cpu().long())
        elif not warned:
            warned.append(True)
            logger.warning("lend_images_mod: not in Flower's Simulation Engine, so no images are lent to the judge "
                           "(the server's verdicts are 'no ground truth')")
        reply.content.config_records[protocol.CLIENT_INFO] = info
        return reply

    return lend_images


def _npy(tensor: torch.Tensor) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, tensor.numpy(), allow_pickle=False)
    return buffer.getvalue()
