"""The server half of the audit of a user's own Flower app: any strategy, with the curious server inside.

A plain Flower app adds the audit in a few lines (``examples/quickstart-pytorch`` shows the diff)::

    from lab.audit import audit
    strategy = audit(FedAvg(fraction_train=1.0), model="task:Net", input_shape=(1, 32, 32), num_classes=10,
                     training={"lr": 0.05, "batch-size": 8, "local-epochs": 1, "local-steps": 0})

and, in the ClientApp, ``ClientApp(mods=[lend_images_mod(load)])`` from :mod:`clients.audit`. The strategy
returned aggregates as the user's does and, before each aggregation, hands every update to fl-sim's attacker:
every attack that applies runs on it, and each update gets an ``attack`` event in
``<output_dir>/<run_id>/events.jsonl`` with its reconstructions under ``reconstructions/`` and, at the end,
the tidy ``attacks.csv``. The server knows the protocol: ``training`` says what local training its clients
run (fl-sim's ``train.*`` keys, unprefixed: optimizer, lr, momentum, weight-decay, batch-size, local-epochs
with local-steps 0, or local-steps), ``model`` names the architecture it sent (a class or builder by import
path, as ``model.name``). In simulation the clients' lent images are the judge's ground truth; in a
deployment there are none, and the verdicts say ``no ground truth``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flwr.app import ArrayRecord
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg, Result

from attacker.lent_images import LentImages
from attacker.plugin import AttackerPlugin
from fl_sim import events
from fl_sim.config import RunConfig
from fl_sim.models import Architecture
from fl_sim.reporting.tidy import write_attack_table
from fl_sim.results import ResultsWriter
from strategies.intercepting import InterceptingStrategy


def audit(strategy: FedAvg, *, model: str, input_shape: tuple[int, int, int], num_classes: int,
          training: Mapping[str, Any], attack: Mapping[str, Any] | None = None, output_dir: str = "results",
          run_id: str = "", seed: int = 0) -> AuditedStrategy:
    """``strategy`` with fl-sim's curious server attacking and judging every update it aggregates.

    ``attack`` sets ``attack.*`` keys (unprefixed; the default is ``auto`` within 1 s per update, inline). Bad
    settings, or a model that cannot be built or does not fit ``input_shape`` and ``num_classes``, raise a
    one-line :class:`fl_sim.errors.ConfigError` here, before anything is written.
    """
    config = RunConfig.from_flat({
        "model.name": model, "seed": seed, "attack.enabled": True, "attack.blocking": True,
        "output.dir": output_dir, "output.run-id": run_id,
        **{f"train.{key}": value for key, value in training.items()},
        **{f"attack.{key}": value for key, value in (attack or {}).items()}})
    architecture = Architecture.of(config, input_shape, num_classes)
    architecture.build()
    writer = ResultsWriter.create(config)
    attacker = AttackerPlugin(config, writer, judge=None, architecture=architecture,
                              lent_images=LentImages(config.attack, config.seed))
    return AuditedStrategy(strategy, attacker, writer, config)


class AuditedStrategy(InterceptingStrategy):
    """A user's strategy intercepted by the attacker; :meth:`start` also closes the audit's results."""

    def __init__(self, strategy: FedAvg, attacker: AttackerPlugin, writer: ResultsWriter, config: RunConfig) -> None:
        super().__init__(strategy, plugins=[attacker], seed=config.seed,
                         train_config={key.removeprefix("train."): value for key, value in config.to_flat().items()
                                       if key.startswith("train.")})
        self.attacker = attacker
        self.writer = writer

    @property
    def run_dir(self):
        """Where the audit writes its events, reconstructions and tables."""
        return self.writer.directory

    def start(self, grid: Grid, initial_arrays: ArrayRecord, num_rounds: int = 3, **kwargs: Any) -> Result:
        """Run the user's strategy as Flower does, every update attacked; then write the attack table."""
        self.writer.emit(events.RunStart(run_dir=str(self.writer.directory), rounds=num_rounds, from_round=0))
        try:
            return super().start(grid=grid, initial_arrays=initial_arrays, num_rounds=num_rounds, **kwargs)
        finally:
            try:
                self.attacker.close()
                write_attack_table(self.writer.directory)
            finally:
                self.writer.close()
