"""Client-side defenses and injected faults as Flower client mods (``ClientApp(mods=[...])``).

A mod wraps a ClientApp's handlers: it sees the message the server sent and the reply the
handler made, and may change the reply. :func:`defense_mod` turns the trained weights of a
train reply into what the configured ``defense.*`` uploads (noise, clipping, top-k or DGP
pruning with sparse packing and error feedback, see :mod:`clients.defenses`), and records the
upload's bytes in the reply's metrics. :func:`fault_mod` injects ``faults.*``. Both work on any
ClientApp whose train messages carry one ArrayRecord each way, as Flower's own ``LocalDpMod``
requires, so a user can put them into their own app::

    app = ClientApp(mods=[defense_mod(RunConfig.from_flat({"defense.name": "dgp"}))])
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, Context, Message, MessageType
from flwr.clientapp.mod import fixedclipping_mod
from flwr.clientapp.typing import ClientAppCallable, Mod
from flwr.supercore.differential_privacy import KEY_CLIPPING_NORM

from clients import faults
from clients.defenses import defend_weights
from fl_sim import protocol, seeds
from fl_sim.config import RunConfig

#: Key of the DGP error-feedback residual in the node's persistent context state.
RESIDUAL = "defense-residual"


def defense_mod(config: RunConfig | None = None) -> Mod:
    """A mod that applies the client's defense to every train reply.

    The defense is ``config.defense`` (``None``: each message's run config), as ``defense.per-client`` sets it for
    this partition.
    """

    def apply_defense(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        reply = call_next(msg, context)
        if msg.metadata.message_type != MessageType.TRAIN or reply.has_error():
            return reply
        (_, sent), (key, trained) = _only_arrays(msg), _only_arrays(reply)
        server_round, partition_id = _round_and_partition(msg, context)
        run = (config or RunConfig.from_flat(context.run_config)).of_client(partition_id)
        residual = context.state[RESIDUAL].to_torch_state_dict() if RESIDUAL in context.state else None
        upload, defended = defend_weights(sent.to_torch_state_dict(), trained.to_torch_state_dict(), run.defense,
                                          residual, torch.Generator().manual_seed(
                                              seeds.DEFENSE_NOISE.seed(run.seed, server_round, partition_id)))
        if defended.residual is not None:  # error feedback survives across rounds in the node's state
            context.state[RESIDUAL] = ArrayRecord(defended.residual)
        reply.content.array_records[key] = ArrayRecord(upload)
        for metrics in reply.content.metric_records.values():
            metrics[protocol.UPLOAD_BYTES] = defended.upload_bytes
            metrics[protocol.DENSE_BYTES] = defended.dense_bytes
        return reply

    return apply_defense


def clipping_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Flower's ``fixedclipping_mod`` where the server's DP wrapper asks for client-side clipping.

    The wrapper (``central-dp.clipping=client-fixed``) sends the clipping norm in the train config; the mod clips
    the upload's update to it. Every other message passes as it is.
    """
    config = msg.content.config_records.get(protocol.CONFIG)
    if msg.metadata.message_type == MessageType.TRAIN and config is not None and KEY_CLIPPING_NORM in config:
        return fixedclipping_mod(msg, context, call_next)
    return call_next(msg, context)


def fault_mod(config: RunConfig | None = None) -> Mod:
    """A mod that makes the partitions ``faults.*`` names fail in its rounds.

    Before training (``raise``, ``timeout``) or instead of uploading (``nan``, ``drop``).
    """

    def inject_faults(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
        if msg.metadata.message_type != MessageType.TRAIN:
            return call_next(msg, context)
        run = config or RunConfig.from_flat(context.run_config)
        server_round, partition_id = _round_and_partition(msg, context)
        if not run.faults.fails(partition_id, server_round):
            return call_next(msg, context)
        faults.before_training(run.faults, partition_id, server_round)
        reply = call_next(msg, context)
        if reply.has_error():
            return reply
        for key, record in list(reply.content.array_records.items()):
            poisoned = faults.before_upload(run.faults, partition_id, server_round, record.to_torch_state_dict())
            reply.content.array_records[key] = ArrayRecord(poisoned)
        return reply

    return inject_faults


def _only_arrays(message: Message) -> tuple[str, ArrayRecord]:
    """The one ArrayRecord of a train message or reply (the model's weights), with its key."""
    records = list(message.content.array_records.items())
    if len(records) != 1:
        raise ValueError(f"defense_mod needs exactly one ArrayRecord in each train message and reply, found "
                         f"{len(records)}")
    return records[0]


def _round_and_partition(msg: Message, context: Context) -> tuple[int, int]:
    """The round (Flower's strategies put it in the train config) and this node's partition id."""
    return int(msg.content[protocol.CONFIG][protocol.SERVER_ROUND]), int(context.node_config[protocol.PARTITION_ID])
