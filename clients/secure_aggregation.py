"""The client's side of secure aggregation: Flower's ``secaggplus_mod`` around this project's Message-API handlers.

SecAgg+ exists only on Flower's legacy path: the server's ``SecAggPlusWorkflow`` sends legacy ``fitins.*``
records, and ``secaggplus_mod`` masks the ``fitres.parameters`` of the reply. :func:`secure_aggregation_mod`
puts Flower's mod outermost and, inside it, translates the legacy records into the Message-API layout the
project's train handler and mods read (``arrays``, ``config``), and the reply back, so that the same
ClientApp serves plain and secure rounds. It changes nothing for a message that is not a SecAgg+ one.

Inside the translation, two things only secure aggregation needs:

- a pruned upload (``topk``, ``dgp``) is made dense (``global + kept update``): SecAgg+ masks and sums dense
  vectors, and the positions of a sparse upload would tell the server which entries each client kept;
- an update that is not finite is refused (the client fails the round): masked, NaN would wrap around the
  modulus into a sum no one can tell from a real one.
"""

from __future__ import annotations

import flwr.compat.common.recorddict_compat as compat
import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MessageType, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import Code, FitRes, Status, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.common.secure_aggregation.secaggplus_constants import RECORD_KEY_CONFIGS

from fl_sim import protocol, sparse


def secure_aggregation_mod(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Run a SecAgg+ train message through Flower's ``secaggplus_mod``; pass every other message on as it is."""
    if msg.metadata.message_type != MessageType.TRAIN or RECORD_KEY_CONFIGS not in msg.content.config_records:
        return call_next(msg, context)
    return secaggplus_mod(msg, context, lambda legacy, ctx: _as_legacy_reply(legacy, ctx, call_next))


def _as_legacy_reply(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Call the Message-API handlers on a legacy ``fitins`` message and turn their reply into a ``fitres`` one."""
    fitins = compat.recorddict_to_fitins(msg.content, keep_input=True)
    config = dict(fitins.config)
    names = str(config.pop(protocol.ARRAY_NAMES)).split(",")
    sent = dict(zip(names, parameters_to_ndarrays(fitins.parameters), strict=True))
    msg.content = RecordDict({protocol.ARRAYS: ArrayRecord({name: Array(value) for name, value in sent.items()}),
                              protocol.CONFIG: ConfigRecord(config)})
    reply = call_next(msg, context)
    if reply.has_error():
        return reply
    arrays = {name: array.numpy() for name, array in reply.content.array_records[protocol.ARRAYS].items()}
    metrics = dict(reply.content.metric_records[protocol.METRICS])
    if any(name.endswith(sparse.POSITIONS) for name in arrays):
        unpacked = sparse.unpack(arrays, sent)
        if unpacked is None:
            raise ValueError("the defense's sparse upload does not fit the model; it cannot be densified for SecAgg+")
        arrays = unpacked[0]
        metrics[protocol.UPLOAD_BYTES] = metrics[protocol.DENSE_BYTES]  # it travels dense, masked
        info = reply.content.config_records.setdefault(protocol.CLIENT_INFO, ConfigRecord())
        info[protocol.DENSIFIED] = True
    bad = [name for name, value in arrays.items() if not np.isfinite(value).all()]
    if bad:
        raise ValueError(f"the update holds NaN or Inf (in {', '.join(bad)}); it cannot be masked for SecAgg+")
    fitres = FitRes(status=Status(Code.OK, "Success"), parameters=ndarrays_to_parameters([arrays[n] for n in names]),
                    num_examples=int(metrics[protocol.NUM_EXAMPLES]), metrics=metrics)
    content = compat.fitres_to_recorddict(fitres, keep_input=True)
    if protocol.CLIENT_INFO in reply.content.config_records:  # the partition (and, simulated, the judge's truth)
        content.config_records[protocol.CLIENT_INFO] = reply.content.config_records[protocol.CLIENT_INFO]
    reply.content = content
    return reply
