"""The server's account of the privacy each client running its own DP (``dp``, ``dpsgd``) has spent, round by round."""

from __future__ import annotations

from collections.abc import Iterable

from fl_sim import events, privacy, protocol
from fl_sim.config import RunConfig
from fl_sim.defense_registry import PER_LOCAL_STEP, PER_UPLOAD
from fl_sim.plugins import InterceptedUpdate, ServerPlugin
from fl_sim.results import ResultsWriter


class PrivacyLedger(ServerPlugin):
    """Logs a ``privacy`` event per update of a client that runs ``dpsgd`` or ``dp``.

    The epsilon the client has spent over every round it trained in, from the protocol and what it reported: for
    DP-SGD its steps at ``defense.dpsgd-delta`` (Opacus), for ``dp`` its noisy uploads at ``defense.dp-delta``
    (Flower's RdpAccountant).
    """

    name = "privacy-ledger"

    def __init__(self, config: RunConfig, writer: ResultsWriter) -> None:
        self.config = config
        self.writer = writer
        self._steps: dict[int, int] = {}  # partition -> DP-SGD steps taken so far

    def account_for_earlier_rounds(self, earlier: Iterable[events.Event], done: int) -> None:
        """On resume: take each client's steps up to round ``done`` from the earlier ``privacy`` events."""
        for event in earlier:
            if isinstance(event, events.Privacy) and event.round <= done:
                self._steps[event.partition_id] = event.steps

    def on_update(self, update: InterceptedUpdate) -> None:
        """Add the update's steps (``dp``: the upload) to its client's total and log what that client has spent."""
        accounted = self.config.defense.entry(update.partition_id).accounted
        if update.partition_id is None or accounted is None:
            return
        taken = int(update.metrics.get(protocol.LOCAL_STEPS, 0)) if accounted == PER_LOCAL_STEP else 1
        steps = self._steps.get(update.partition_id, 0) + taken
        self._steps[update.partition_id] = steps
        if accounted == PER_UPLOAD:
            sigma, rate = self.config.defense.dp_noise_multiplier, 1.0
            epsilon, delta = privacy.local_dp_epsilon(self.config, steps), self.config.defense.dp_delta
        else:
            sigma = privacy.noise_multiplier(self.config, update.num_examples)
            rate = privacy.sample_rate(self.config, update.num_examples)
            epsilon = privacy.spent_epsilon(self.config, update.num_examples, steps)
            delta = self.config.defense.dpsgd_delta
        self.writer.emit(events.Privacy(round=update.server_round, partition_id=update.partition_id, steps=steps,
                                        noise_multiplier=sigma, sample_rate=rate, epsilon=epsilon, delta=delta))
