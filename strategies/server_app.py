"""The Flower ServerApp: sets up the run's results, the global model and the intercepting strategy."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from flwr.app import ArrayRecord, ConfigRecord, Context
from flwr.serverapp import Grid, ServerApp

from attacker.plugin import AttackerPlugin
from fl_sim import protocol
from fl_sim.config import RunConfig
from fl_sim.data import load_dataset
from fl_sim.models import build_run_model
from fl_sim.results import ResultsWriter
from strategies.intercepting_fedavg import InterceptingFedAvg
from strategies.plugins import ServerPlugin
from strategies.run_recorder import RunRecorder
from strategies.validation import UpdateValidator

#: Builds extra plugins for a run from its config and results writer (e.g. the attacker).
PluginFactory = Callable[[RunConfig, ResultsWriter], Sequence[ServerPlugin]]


def create_server_app(config: RunConfig | None = None, plugins: PluginFactory | None = None) -> ServerApp:
    """A ServerApp for ``config``; with ``None`` the context's run config is used (``flwr run``)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        """Run the whole federation and write its results."""
        run_federation(grid, config or RunConfig.from_flat(context.run_config), plugins)

    return app


def run_federation(grid: Grid, config: RunConfig, plugins: PluginFactory | None = None) -> Path:
    """Train ``config.num_server_rounds`` rounds of intercepted FedAvg; return the results directory."""
    writer = ResultsWriter.create(config)
    dataset = load_dataset(config.data)
    model = build_run_model(config, dataset.input_shape, dataset.num_classes, seed=config.seed)
    recorder = RunRecorder(writer, model, dataset.test, config.num_server_rounds)
    extra = list(plugins(config, writer)) if plugins else []
    if config.attack.enabled:
        # The simulator, not the attacker, knows the clients' data: it lends the judge the
        # images a client reported training on, and nothing else.
        extra.append(AttackerPlugin(config, writer, ground_truth=dataset.train.subset,
                                    input_shape=dataset.input_shape, num_classes=dataset.num_classes))
    server = config.server
    strategy = InterceptingFedAvg(
        plugins=[UpdateValidator(writer), recorder, *extra],
        on_plugin_error=recorder.plugin_failed,
        seed=config.seed,
        fraction_train=server.fraction_train,
        fraction_evaluate=server.fraction_evaluate,
        min_train_nodes=server.min_train_nodes,
        min_evaluate_nodes=server.min_evaluate_nodes,
        min_available_nodes=server.min_available_nodes,
    )
    writer.event("run-start", run_dir=str(writer.directory), rounds=config.num_server_rounds)
    status = "failed"
    try:
        result = strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(model.state_dict()),
            num_rounds=config.num_server_rounds,
            timeout=server.round_timeout,
            train_config=ConfigRecord(protocol.train_config_record(config.train)),
            evaluate_fn=recorder.evaluate_global,
        )
        writer.save_model(result.arrays.to_torch_state_dict())
        status = "completed"
    finally:
        for plugin in extra:
            plugin.close()
        recorder.finish(status)
    return writer.directory


app = create_server_app()
