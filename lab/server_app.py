"""The Flower ServerApp: sets up the run's results, the global model and the intercepted strategy."""

from __future__ import annotations

import sys
from contextlib import ExitStack
from logging import INFO
from pathlib import Path
from typing import TextIO

from flwr.app import Context
from flwr.common.logger import log as flwr_log
from flwr.serverapp import Grid, ServerApp

from fl_sim.config import RunConfig
from lab.federation import Federation, PluginFactory
from strategies.watched_grid import EngineWatch, WatchedGrid


def create_server_app(config: RunConfig | None = None, plugins: PluginFactory | None = None,
                      resume: bool = False, console: TextIO | None = sys.stdout,
                      watch: EngineWatch | None = None) -> ServerApp:
    """A ServerApp for ``config``; with ``None`` the context's run config is used (``flwr run``).

    With ``watch`` (in simulation) the ServerApp stops waiting for replies once the engine
    that runs the clients has stopped, and says when it has finished.
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        """Run the whole federation (or the rest of it, with ``resume``) and write its results."""
        try:
            run_dir = run_federation(WatchedGrid(grid, watch.engine_stopped) if watch else grid,
                                     config or RunConfig.from_flat(context.run_config), plugins, resume, console,
                                     context=context)
            flwr_log(INFO, "results: %s", run_dir)  # what `flwr run --stream` shows of where they went
        finally:
            if watch:
                watch.server_finished.set()

    return app


def run_federation(grid: Grid, config: RunConfig, plugins: PluginFactory | None = None,
                   resume: bool = False, console: TextIO | None = None, context: Context | None = None) -> Path:
    """Train ``config.num_server_rounds`` intercepted rounds of ``strategy.name``; return the results directory.

    With ``secagg.enabled`` the rounds run under Flower's SecAgg+ (:mod:`strategies.secure_aggregation`, over the
    ServerApp's ``context``): the plugins see each round's aggregate only.

    With ``resume`` the run continues in its existing results directory from the global model
    of its last completed round (``checkpoint.pt``), numbering rounds on from there. Rounds,
    attack results and failures are echoed as lines to ``console``, if given; at the end the
    run's report is written (``report.html`` and ``plots/``).
    """
    with ExitStack() as stack:
        federation = Federation.open(stack, grid, config, plugins, resume, console)
        federation.writer.save_model(federation.run(grid, context).to_torch_state_dict())
    return federation.writer.directory


app = create_server_app()
