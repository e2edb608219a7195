"""quickstart-pytorch: a Flower ClientApp that trains and evaluates ``Net`` on its partition."""

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from task import Net, load_data
from task import test as test_fn
from task import train as train_fn
from torch.utils.data import DataLoader

from clients.audit import lend_images_mod


def node_data(context: Context) -> tuple[DataLoader, DataLoader]:
    """This node's train and test loaders, by the partition its node config names."""
    return load_data(int(context.node_config["partition-id"]), int(context.node_config["num-partitions"]),
                     int(context.run_config["batch-size"]))


def received_model(msg: Message) -> Net:
    """The model the server sent."""
    net = Net()
    net.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    return net


def training_images(context: Context) -> tuple[torch.Tensor, torch.Tensor]:
    """This node's training images and labels: what fl-sim's judge compares reconstructions with (simulation only)."""
    return node_data(context)[0].dataset.tensors


app = ClientApp(mods=[lend_images_mod(training_images)])

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Train the received model on this node's partition and reply with the updated arrays."""
    net, (trainloader, _) = received_model(msg), node_data(context)
    # The server's train config (FedAvg sends it under "config") may override the run config's lr.
    lr = float(msg.content.config_records.get("config", {}).get("lr", context.run_config["lr"]))
    train_loss = train_fn(net, trainloader, int(context.run_config["local-epochs"]), lr, DEVICE)
    metrics = MetricRecord({"train_loss": train_loss, "num-examples": len(trainloader.dataset)})
    return Message(content=RecordDict({"arrays": ArrayRecord(net.state_dict()), "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Evaluate the received model on this node's test split and reply with loss and accuracy."""
    net, (_, testloader) = received_model(msg), node_data(context)
    eval_loss, eval_acc = test_fn(net, testloader, DEVICE)
    metrics = MetricRecord({"eval_loss": eval_loss, "eval_acc": eval_acc, "num-examples": len(testloader.dataset)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
