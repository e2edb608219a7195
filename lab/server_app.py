"""The Flower ServerApp: sets up the run's results, the global model and the intercepted strategy."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from logging import INFO
from pathlib import Path
from typing import TextIO

from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict
from flwr.common.logger import log as flwr_log
from flwr.serverapp import Grid, ServerApp
from flwr.superlink.grid import InMemoryGrid

from attacker.judge import Judge
from attacker.plugin import AttackerPlugin
from fl_sim import events, protocol
from fl_sim.config import RunConfig
from fl_sim.data import load_dataset
from fl_sim.errors import ConfigError
from fl_sim.models import build_run_model
from fl_sim.plugins import ServerPlugin
from fl_sim.reporting.console import PlainLines
from fl_sim.reporting.report import write_report
from fl_sim.reporting.tensorboard import TensorBoardSink
from fl_sim.reporting.tidy import write_attack_table
from fl_sim.results import ResultsWriter, load_checkpoint, load_events, read_metrics, run_directory
from strategies.catalog import build_strategy
from strategies.intercepting import InterceptingStrategy
from strategies.privacy_ledger import PrivacyLedger
from strategies.run_recorder import RunRecorder
from strategies.secure_aggregation import run_secure
from strategies.validation import UpdateValidator
from strategies.watched_grid import EngineWatch, WatchedGrid

#: Builds extra plugins for a run from its config and results writer (e.g. the attacker).
PluginFactory = Callable[[RunConfig, ResultsWriter], Sequence[ServerPlugin]]


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
    dataset = load_dataset(config.data)
    model = build_run_model(config, dataset.input_shape, dataset.num_classes, seed=config.seed)
    done, history = 0, []
    if resume:
        done, state = load_checkpoint(run_directory(config))
        if done >= config.num_server_rounds:
            raise ConfigError(f"'{run_directory(config)}' already completed its {config.num_server_rounds} rounds; "
                              f"nothing to resume")
        writer = ResultsWriter.reopen(run_directory(config), last_round=done)
        model.load_state_dict(state)
        history = read_metrics(writer.directory)
    else:
        writer = ResultsWriter.create(config)
    if console:
        writer.listeners.append(PlainLines(console))
    sink = TensorBoardSink(writer.directory) if config.output.tensorboard else None
    if sink is not None:
        writer.listeners.append(sink)
    aggregator = build_strategy(config)
    recorder = RunRecorder(writer, model, dataset.test, history=history, round_offset=done,
                           privacy_spent=getattr(aggregator, "privacy_spent", None))
    extra = list(plugins(config, writer)) if plugins else []
    if {config.defense.name, *config.defense.assigned().values()} & {"dpsgd", "dp"}:
        ledger = PrivacyLedger(config, writer)
        if resume:
            ledger.account_for_earlier_rounds(load_events(writer.directory), done)
        extra.append(ledger)
    if config.attack.enabled:
        # The simulator, not the attacker, knows the clients' data: it lends the judge the data set, in
        # which the images a client reported training on are its truth and every other image the
        # reference and the ground chance is measured on; no attack sees any of them.
        attacker = AttackerPlugin(config, writer, judge=Judge.of_dataset(dataset, config.attack, seed=config.seed),
                                  input_shape=dataset.input_shape, num_classes=dataset.num_classes,
                                  engine_ray=isinstance(grid, InMemoryGrid))  # `flwr run`'s simulation
        if resume:
            attacker.account_for_earlier_rounds(load_events(writer.directory), done)
        extra.append(attacker)
    server = config.server
    strategy = InterceptingStrategy(
        aggregator,
        plugins=[UpdateValidator(writer, max_examples=len(dataset.train)), recorder, *extra],
        on_plugin_error=recorder.plugin_failed,
        seed=config.seed,
        round_offset=done,
    )
    start = events.RunResumed if resume else events.RunStart
    writer.emit(start(run_dir=str(writer.directory), rounds=config.num_server_rounds, from_round=done))
    status, error = "failed", None
    rounds, train_config = config.num_server_rounds - done, ConfigRecord(protocol.train_config_record(config.train))
    try:
        if config.secagg.enabled:
            final = run_secure(grid, context or Context(0, 0, {}, RecordDict(), {}), strategy,
                               ArrayRecord(model.state_dict()), rounds, server.round_timeout, train_config,
                               recorder.evaluate_global, config.secagg)
        else:
            final = strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=rounds,
                                   timeout=server.round_timeout, train_config=train_config,
                                   evaluate_fn=recorder.evaluate_global).arrays
        writer.save_model(final.to_torch_state_dict())
        status = "completed"
    except BaseException as err:
        status, error = ("interrupted" if isinstance(err, KeyboardInterrupt) else "failed"), err
        raise
    finally:
        try:
            for plugin in extra:
                plugin.close()
            recorder.finish(status, error=f"{type(error).__name__}: {error}" if error else None)
            if sink is not None:
                sink.close()
            _write_tables(writer, config.output.report)
        except Exception as wrap_up:
            if error is None:
                raise
            # the run's own error is what the user must see; this one only says what is missing
            print(f"fl-sim: could not record the end of the run either ({type(wrap_up).__name__}: {wrap_up})",
                  file=sys.stderr)
        finally:
            writer.close()
    return writer.directory


def _write_tables(writer: ResultsWriter, report: bool) -> None:
    """Write the run's tidy attack table and, with ``report``, its report.

    A failure of either is logged as ``report-error`` (the other is still written), never lost results.
    """
    for write in (write_attack_table, write_report) if report else (write_attack_table,):
        try:
            write(writer.directory)
        except Exception as err:  # noqa: BLE001 - the results are complete; only this view of them is missing
            writer.emit(events.ReportError(error=f"{type(err).__name__}: {err}",
                                           fix=f"run: fl-sim report {writer.directory}"))


app = create_server_app()
