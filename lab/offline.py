"""Intercepted updates made offline, for attack experiments and tests without a Flower run.

Each "client" trains a copy of one global model on chosen samples of the training split with
the configured local training (DP-SGD's, for ``defense.name=dpsgd``), applies the configured
update defense (``defense.*``, first round: no error-feedback residual yet), and its result is
packaged exactly as the intercepting strategy hands it to plugins after restoring a sparse
upload (round 1, node ids 100, 101, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

import numpy as np
import torch

from clients.defenses import defend_weights
from fl_sim import protocol, sparse
from fl_sim.config import RunConfig
from fl_sim.data import ImageData, load_dataset
from fl_sim.models import Architecture
from fl_sim.plugins import InterceptedUpdate
from fl_sim.privacy import dp_sgd
from fl_sim.training import train_local

FIRST_NODE_ID = 100


def intercepted_updates(config: RunConfig, samples: Sequence[Sequence[int]], seed: int = 0,
                        global_state: dict[str, torch.Tensor] | None = None
                        ) -> tuple[list[InterceptedUpdate], list[ImageData]]:
    """One update per entry of ``samples`` (positions in the training split), and each client's data.

    Client ``i`` (partition ``i``) runs its own update defense (``defense.per-client``, else ``defense.name``).

    The global model is a fresh one of ``seed``, or ``global_state`` (e.g. a model trained for a later round).
    """
    dataset = load_dataset(config.data)
    if global_state is None:
        global_state = Architecture.of(config, dataset.input_shape, dataset.num_classes).build(seed=seed).state_dict()
    global_arrays = MappingProxyType({k: v.numpy().copy() for k, v in global_state.items()})
    train_record = MappingProxyType({**protocol.train_config_record(config.train), protocol.SERVER_ROUND: 1})
    updates, data = [], []
    for client, indices in enumerate(samples):
        model = Architecture.of(config, dataset.input_shape, dataset.num_classes).build()
        model.load_state_dict(global_state)
        local = dataset.train.subset(np.asarray(indices))
        result = train_local(model, local, config.train, seed=client, dp=dp_sgd(config, len(local)))
        upload, _ = defend_weights(global_state, model.state_dict(), config.of_client(client).defense, None,
                                   torch.Generator().manual_seed(client))
        client_arrays, travelled = {k: v.numpy() for k, v in upload.items()}, None
        if any(name.endswith(sparse.POSITIONS) for name in client_arrays):  # as the strategy restores it
            client_arrays, travelled = sparse.unpack(client_arrays, global_arrays)
        updates.append(InterceptedUpdate(
            server_round=1, node_id=FIRST_NODE_ID + client, partition_id=client, global_arrays=global_arrays,
            client_arrays=MappingProxyType(client_arrays),
            metrics=MappingProxyType({protocol.NUM_EXAMPLES: len(local), protocol.LOCAL_STEPS: result.steps}),
            train_config=train_record,
            audit=MappingProxyType({protocol.AUDIT_SAMPLES: [int(i) for i in indices]}),
            travelled=MappingProxyType(travelled) if travelled is not None else None))
        data.append(local)
    return updates, data
