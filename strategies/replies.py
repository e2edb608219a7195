"""A client's training reply read as the server sees it: one :class:`fl_sim.plugins.InterceptedUpdate`.

What the reply carries (its arrays, dense or as the positions a pruning defense kept, its metrics, the
partition it says it holds and the simulation's audit data) is decoded here once, read-only, so that the
strategy only intercepts and every plugin gets the same typed update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType

import numpy as np
from flwr.app import Array, ArrayRecord, Message

from fl_sim import protocol, sparse
from fl_sim.plugins import InterceptedUpdate


def frozen_numpy(record: ArrayRecord) -> MappingProxyType:
    """Read-only NumPy copies of an ArrayRecord's arrays: plugins can look but not touch."""
    arrays = {}
    for name, array in record.items():
        value = array.numpy()
        value.setflags(write=False)
        arrays[name] = value
    return MappingProxyType(arrays)


def read_only(arrays: Mapping[str, np.ndarray]) -> MappingProxyType:
    """Read-only copies of ``arrays`` (a filter's replacement, before the observers see it)."""
    copies = {name: np.array(value) for name, value in arrays.items()}
    for value in copies.values():
        value.setflags(write=False)
    return MappingProxyType(copies)


def array_record(arrays: Mapping[str, np.ndarray]) -> ArrayRecord:
    """NumPy arrays by name as Flower's ArrayRecord."""
    return ArrayRecord({name: Array(np.asarray(value)) for name, value in arrays.items()})


def densify(reply: Message, key: str, global_arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """Turn a sparse upload (:mod:`fl_sim.sparse`) under ``key`` back into dense weights, ``global + update``, in place.

    Return the positions that travelled (``None`` for a dense upload). A malformed one is left as it came, and the
    validator rejects it for its array names.
    """
    record = reply.content.array_records.get(key)
    if record is None or not any(name.endswith(sparse.POSITIONS) for name in record):
        return None
    unpacked = sparse.unpack(frozen_numpy(record), global_arrays)
    if unpacked is None:
        return None
    dense, travelled = unpacked
    reply.content.array_records[key] = array_record(dense)
    return travelled


def intercepted_update(server_round: int, reply: Message, key: str, global_arrays: Mapping[str, np.ndarray],
                       train_config: Mapping[str, object],
                       travelled: Mapping[str, np.ndarray] | None) -> InterceptedUpdate:
    """The update a (dense, successful) ``reply`` carries under ``key``, with what the server sent for it.

    The images a client lent the judge are taken out of the reply: they are in the update's audit, and are
    neither aggregated nor kept.
    """
    content = reply.content
    update = InterceptedUpdate(
        server_round=server_round, node_id=reply.metadata.src_node_id, partition_id=partition_id(reply),
        global_arrays=global_arrays, client_arrays=frozen_numpy(content.array_records[key]),
        metrics=MappingProxyType(dict(content.metric_records.get(protocol.METRICS, {}))),
        train_config=train_config, audit=_audit(reply),
        travelled=MappingProxyType(travelled) if travelled is not None else None)
    info = content.config_records.get(protocol.CLIENT_INFO, {})
    for lent in (protocol.AUDIT_IMAGES, protocol.AUDIT_LABELS):
        info.pop(lent, None)
    return update


def node_of_reply(sent: Sequence[Message]) -> Callable[[Message], int]:
    """Which sampled node each reply to the instructions ``sent`` answers for.

    A reply comes from the node it answers for, except when Flower's SuperLink lost that node
    (it missed its heartbeats): the SuperLink then answers itself, with an error reply whose
    sender is the SuperLink and which names only the instruction it answers. Grids give
    messages their ids when they send them, so the map is made when the replies are in.
    """
    node_by_message = {message.metadata.message_id: message.metadata.dst_node_id for message in sent}
    return lambda reply: node_by_message.get(reply.metadata.reply_to_message_id, reply.metadata.src_node_id)


def in_partition_order(replies: Iterable[Message]) -> list[Message]:
    """Replies sorted by (partition id, node id); error replies last (the aggregate's sums the same every run)."""
    def key(reply: Message) -> tuple[int, int, int]:
        if reply.has_error():
            return (1, 0, reply.metadata.src_node_id)
        partition = partition_id(reply)
        return (0, -1 if partition is None else partition, reply.metadata.src_node_id)
    return sorted(replies, key=key)


def partition_id(reply: Message) -> int | None:
    """The partition the client says it holds; ``None`` if it says none or something that is not one."""
    info = reply.content.config_records.get(protocol.CLIENT_INFO)
    value = info.get(protocol.PARTITION_ID) if info else None
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _audit(reply: Message) -> MappingProxyType:
    """The client's info record less a well-formed partition id (a malformed one stays, for the validator)."""
    info = reply.content.config_records.get(protocol.CLIENT_INFO, {})
    well_formed = partition_id(reply) is not None
    return MappingProxyType({key: value for key, value in info.items()
                             if not (key == protocol.PARTITION_ID and well_formed)})
