"""One run's federation, built from its config: results, global model, plugins and the intercepted strategy.

:meth:`Federation.open` builds everything the rounds need (or, with ``resume``, takes it up from the run's
checkpoint and events) and registers its winding down on an :class:`contextlib.ExitStack`: however the rounds
end, the plugins are closed, the run's end is recorded with its status, the tables and report are written, and
the results writer is closed last. :meth:`Federation.run` runs the rounds, plain or under SecAgg+.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from types import TracebackType
from typing import TextIO

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, RecordDict
from flwr.serverapp import Grid
from flwr.superlink.grid import InMemoryGrid

from attacker.judge import Judge
from attacker.plugin import AttackerPlugin
from fl_sim import events, protocol
from fl_sim.config import RunConfig
from fl_sim.data import Dataset, load_dataset
from fl_sim.errors import ConfigError
from fl_sim.models import Architecture
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

#: Builds extra plugins for a run from its config and results writer (e.g. the attacker).
PluginFactory = Callable[[RunConfig, ResultsWriter], Sequence[ServerPlugin]]


@dataclass
class Federation:
    """What a run's rounds need: its config, results writer, global model, recorder, plugins and strategy.

    ``done``: the rounds an interrupted run had completed (0 for a new run); ``sink``: its TensorBoard log.
    """

    config: RunConfig
    writer: ResultsWriter
    model: torch.nn.Module
    recorder: RunRecorder
    plugins: list[ServerPlugin]
    strategy: InterceptingStrategy
    done: int = 0
    sink: TensorBoardSink | None = None

    @classmethod
    def open(cls, stack: ExitStack, grid: Grid, config: RunConfig, plugins: PluginFactory | None = None,
             resume: bool = False, console: TextIO | None = None) -> Federation:
        """Build the federation of ``config`` (taken up from its checkpoint with ``resume``), wound down by ``stack``.

        ``plugins`` builds the caller's own plugins beside the run's (the attacker, the privacy ledger); rounds,
        attack results and failures are echoed as lines to ``console``, if given.
        """
        dataset = load_dataset(config.data)
        model = Architecture.of(config, dataset.input_shape, dataset.num_classes).build(seed=config.seed)
        done, history, earlier = 0, [], []
        if resume:
            done, state = load_checkpoint(run_directory(config))
            if done >= config.num_server_rounds:
                raise ConfigError(f"'{run_directory(config)}' already completed its {config.num_server_rounds} "
                                  f"rounds; nothing to resume")
            writer = ResultsWriter.reopen(run_directory(config), last_round=done)
            model.load_state_dict(state)
            history, earlier = read_metrics(writer.directory), load_events(writer.directory)
        else:
            writer = ResultsWriter.create(config)
        stack.callback(writer.close)  # last of all: whatever happens, the results so far are on disk
        if console:
            writer.listeners.append(PlainLines(console))
        sink = TensorBoardSink(writer.directory, earlier) if config.output.tensorboard else None
        if sink is not None:
            writer.listeners.append(sink)
        aggregator = build_strategy(config)
        recorder = RunRecorder(writer, model, dataset.test, history=history, round_offset=done,
                               privacy_spent=getattr(aggregator, "privacy_spent", None))
        own = [*(plugins(config, writer) if plugins else []),
               *_run_plugins(config, writer, dataset, earlier, done, engine_ray=isinstance(grid, InMemoryGrid))]
        strategy = InterceptingStrategy(
            aggregator, plugins=[UpdateValidator(writer, max_examples=len(dataset.train)), recorder, *own],
            on_plugin_error=recorder.plugin_failed, seed=config.seed, round_offset=done)
        federation = cls(config, writer, model, recorder, own, strategy, done, sink)
        stack.push(federation._wind_down)
        start = events.RunResumed if resume else events.RunStart
        writer.emit(start(run_dir=str(writer.directory), rounds=config.num_server_rounds, from_round=done))
        return federation

    def run(self, grid: Grid, context: Context | None = None) -> ArrayRecord:
        """Run the rounds left, plain or (``secagg.enabled``) under SecAgg+ over ``context``; the final arrays."""
        config, rounds = self.config, self.config.num_server_rounds - self.done
        initial, train_config = ArrayRecord(self.model.state_dict()), ConfigRecord(
            protocol.train_config_record(config.train))
        if config.secagg.enabled:
            return run_secure(grid, context or Context(0, 0, {}, RecordDict(), {}), self.strategy, initial, rounds,
                              config.server.round_timeout, train_config, self.recorder.evaluate_global, config.secagg)
        return self.strategy.start(grid=grid, initial_arrays=initial, num_rounds=rounds,
                                   timeout=config.server.round_timeout, train_config=train_config,
                                   evaluate_fn=self.recorder.evaluate_global).arrays

    def _wind_down(self, kind: type[BaseException] | None, error: BaseException | None,
                   _trace: TracebackType | None) -> bool:
        """Close the plugins, record the run's end, write its tables: the exit of the rounds, however they ended.

        Where the rounds raised, their error is what the user must see: a failure here is then one line on stderr
        saying what is missing. Never swallows the rounds' error.
        """
        status = "completed" if kind is None else "interrupted" if issubclass(kind, KeyboardInterrupt) else "failed"
        try:
            for plugin in self.plugins:
                plugin.close()
            self.recorder.finish(status, error=f"{type(error).__name__}: {error}" if error else None)
            if self.sink is not None:
                self.sink.close()
            _write_tables(self.writer, self.config.output.report)
        except Exception as wrap_up:
            if error is None:
                raise
            print(f"fl-sim: could not record the end of the run either ({type(wrap_up).__name__}: {wrap_up})",
                  file=sys.stderr)
        return False


def _run_plugins(config: RunConfig, writer: ResultsWriter, dataset: Dataset, earlier: list[events.Event],
                 done: int, engine_ray: bool) -> list[ServerPlugin]:
    """The run's own plugins past the recorder: the privacy ledger where a defense is accounted, the attacker.

    A resumed run's (``done`` rounds, ``earlier`` events) take up their account from its earlier rounds.
    """
    found: list[ServerPlugin] = []
    if any(entry.accounted for entry in config.defense.in_use()):
        ledger = PrivacyLedger(config, writer)
        ledger.account_for_earlier_rounds(earlier, done)
        found.append(ledger)
    if config.attack.enabled:
        # The simulator, not the attacker, knows the clients' data: it lends the judge the data set, in
        # which the images a client reported training on are its truth and every other image the
        # reference and the ground chance is measured on; no attack sees any of them.
        attacker = AttackerPlugin(config, writer, judge=Judge.of_dataset(dataset, config.attack, seed=config.seed),
                                  architecture=Architecture.of(config, dataset.input_shape, dataset.num_classes),
                                  engine_ray=engine_ray)  # `flwr run`'s simulation: Flower's Ray
        attacker.account_for_earlier_rounds(earlier, done)
        found.append(attacker)
    return found


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
