"""``fl-sim audit RUN_DIR``: a finished or interrupted run's undecided updates attacked on to their final verdicts.

The run kept every update its rounds left ``undecided`` (:mod:`attacker.undecided`); this continues them with the
run's own attack settings and judge, on this machine or a bigger one (``attack.device=auto`` takes its GPU), within
a budget of its own, and writes the final verdicts into the run's ``events.jsonl``, then its tables and report.
Killed at any point, it loses nothing: a verdict written is never redone, an update not yet final stays kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

import torch

from attacker.assessor import Assessor
from attacker.deep_pass import deep_pass, finished_updates
from attacker.judge import Judge
from attacker.reporter import Reporter, central_dp_note
from attacker.runner import AttackRunner
from attacker.undecided import LENT, UndecidedStore
from fl_sim import events
from fl_sim.data import load_dataset
from fl_sim.errors import ConfigError
from fl_sim.models import Architecture
from fl_sim.reporting.console import PlainLines
from fl_sim.reporting.report import write_report
from fl_sim.reporting.tensorboard import TensorBoardSink
from fl_sim.reporting.tidy import write_attack_table
from fl_sim.results import ResultsWriter, load_events, require_run_directory, resume_config


def audit_run(run_dir: Path, budget_seconds: float | None = None, unlimited: bool = False,
              console: TextIO | None = None) -> events.DeepPass:
    """Attack ``run_dir``'s kept undecided updates within ``budget_seconds`` (None: the run's deep budget).

    ``unlimited``: no budget at all, every attack that applies runs to the end of its setting.

    Raises a one-line :class:`ConfigError` for a run whose undecided updates were judged against images lent during
    it (a user's own app): only that run's own deep pass had them.
    """
    run_dir = require_run_directory(Path(run_dir))
    config = resume_config(run_dir)
    store = UndecidedStore(run_dir)
    kept = store.kept()
    if any(k.audit.get(LENT) for k in kept):
        raise ConfigError(f"'{run_dir}' was judged against images its clients lent during the run (a Flower app "
                          f"of your own); only that run's deep pass could judge them: rerun it with a larger "
                          f"attack.deep-budget-seconds")
    budget = None if unlimited else budget_seconds or config.attack.deep_budget_seconds or None
    torch.set_num_threads(config.attack.threads or torch.get_num_threads())  # no clients here: every core
    writer = ResultsWriter.reopen(run_dir)
    runner = sink = None
    try:
        if console is not None:
            lines = PlainLines(console)
            for event in load_events(run_dir):
                lines.progress.add(event)
            writer.listeners.append(lines)
        if config.output.tensorboard:  # the final verdicts join the run's TensorBoard log
            sink = TensorBoardSink(run_dir, load_events(run_dir))
            writer.listeners.append(sink)
        dataset = load_dataset(config.data)
        judge = Judge.of_dataset(dataset, config.attack, seed=config.seed)
        runner = AttackRunner(config.attack, Architecture.of(config, dataset.input_shape, dataset.num_classes),
                              config.seed)
        reporter = Reporter(writer, runner.settings.method, runner.device, config.attack.save_images,
                            notes=central_dp_note(config.central_dp))
        summary = deep_pass(store, runner, Assessor(), reporter, judge, budget,
                            finished=finished_updates(load_events(run_dir)))
    finally:
        if runner is not None:
            runner.close()
        if sink is not None:
            sink.close()
        writer.close()
    write_attack_table(run_dir)
    if config.output.report:
        write_report(run_dir)
    return summary
