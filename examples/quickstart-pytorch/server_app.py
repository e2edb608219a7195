"""quickstart-pytorch: a Flower ServerApp that runs FedAvg on ``Net``."""

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg
from task import Net

from lab.audit import audit

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run ``num-server-rounds`` rounds of FedAvg, starting from a freshly initialized ``Net``."""
    num_rounds = int(context.run_config["num-server-rounds"])
    fraction_train = float(context.run_config["fraction-train"])
    lr = float(context.run_config["lr"])

    strategy = audit(  # fl-sim's curious server attacks and judges every update FedAvg aggregates
        FedAvg(fraction_train=fraction_train), model="task:Net", input_shape=(1, 32, 32), num_classes=10,
        training={"lr": lr, "batch-size": context.run_config["batch-size"], "local-steps": 0,
                  "local-epochs": context.run_config["local-epochs"]},
        output_dir=str(context.run_config.get("audit-dir", "results")))

    global_model = Net()
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(global_model.state_dict()),
        train_config=ConfigRecord({"lr": lr}),
        num_rounds=num_rounds,
    )

    # Kept in memory only: this example writes no files into the working directory.
    global_model.load_state_dict(result.arrays.to_torch_state_dict())
    num_params = sum(p.numel() for p in global_model.parameters())
    print(f"Finished {num_rounds} rounds; the final global model has {num_params} parameters.")
