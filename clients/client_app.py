"""The Flower ClientApp (Message API): local training and evaluation on the client's partition.

Data and model settings come from the run config every node shares; the training settings of
each round (optimizer, lr, local epochs or steps, batch size) come from the server's message,
as they would in a real deployment where the server decides them.
"""

from __future__ import annotations

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from clients.mods import clipping_mod, defense_mod, fault_mod
from clients.secure_aggregation import secure_aggregation_mod
from fl_sim import privacy, protocol, seeds
from fl_sim.config import RunConfig
from fl_sim.data import load_client_data, load_dataset
from fl_sim.models import Architecture
from fl_sim.training import evaluate, train_local


def create_client_app(config: RunConfig | None = None) -> ClientApp:
    """A ClientApp for ``config``; with ``None`` each message's context run config is used (``flwr run``).

    Its train handler returns the trained weights; the mods turn them into the upload: the
    defense (:func:`clients.mods.defense_mod`), the clipping that central DP with client-side clipping asks for,
    then any injected fault, then, in a SecAgg+ round, the masking (outermost, :mod:`clients.secure_aggregation`).
    """
    app = ClientApp(mods=[secure_aggregation_mod, fault_mod(config), clipping_mod, defense_mod(config)])

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        """Train the received global model on the local partition and return the new weights."""
        run, partition_id, data, model, device = _prepare(msg, context, config)
        settings = protocol.train_config_from_record(msg.content[protocol.CONFIG])
        server_round = int(msg.content[protocol.CONFIG][protocol.SERVER_ROUND])
        seed = seeds.TRAINING.seed(run.seed, server_round, partition_id)
        result = train_local(model, data.train, settings, seed=seed, device=device,
                             dp=privacy.dp_sgd(run, len(data.train)))
        metrics = MetricRecord({protocol.TRAIN_LOSS: result.loss, protocol.TRAIN_ACCURACY: result.accuracy,
                                protocol.NUM_EXAMPLES: result.num_examples, protocol.LOCAL_STEPS: result.steps,
                                protocol.TRAIN_SECONDS: result.seconds})
        info = {protocol.PARTITION_ID: partition_id}
        if run.attack.enabled:  # simulation-only ground truth for the attack's judge
            info[protocol.AUDIT_SAMPLES] = data.train_indices[result.sample_indices].tolist()
        content = RecordDict({
            protocol.ARRAYS: ArrayRecord(model.cpu().state_dict()),
            protocol.METRICS: metrics,
            protocol.CLIENT_INFO: ConfigRecord(info),
        })
        return Message(content, reply_to=msg)

    @app.evaluate()
    def evaluate_global(msg: Message, context: Context) -> Message:
        """Score the received global model on the local validation split."""
        _, partition_id, data, model, device = _prepare(msg, context, config)
        result = evaluate(model, data.val, device=device)
        content = RecordDict({
            protocol.METRICS: MetricRecord({protocol.EVAL_LOSS: result.loss, protocol.EVAL_ACCURACY: result.accuracy,
                                            protocol.NUM_EXAMPLES: result.num_examples}),
            protocol.CLIENT_INFO: ConfigRecord({protocol.PARTITION_ID: partition_id}),
        })
        return Message(content, reply_to=msg)

    return app


def _prepare(msg: Message, context: Context, config: RunConfig | None):
    """Resolve the run config (as this partition runs it), this node's partition and data, and the received model."""
    partition_id = int(context.node_config[protocol.PARTITION_ID])
    run = (config or RunConfig.from_flat(context.run_config)).of_client(partition_id)
    torch.set_num_threads(max(1, int(run.simulation.client_cpus)))
    num_partitions = int(context.node_config["num-partitions"])
    data = load_client_data(run.data, partition_id, num_partitions, run.seed)
    dataset = load_dataset(run.data)
    model = Architecture.of(run, dataset.input_shape, dataset.num_classes).build()
    model.load_state_dict(msg.content[protocol.ARRAYS].to_torch_state_dict())
    device = "cuda" if run.simulation.client_gpus > 0 and torch.cuda.is_available() else "cpu"
    return run, partition_id, data, model, device


app = create_client_app()
