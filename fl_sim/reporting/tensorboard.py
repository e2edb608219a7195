"""A TensorBoard sink (``output.tensorboard=true``): the run's scalars and reconstructions as they are written.

A listener of the run's :class:`fl_sim.results.ResultsWriter`: every ``round`` event adds the global model's
test accuracy and loss (and the clients' training ones where reported), every ``attack-round`` event the
round's leak rates, SSIM and updates per verdict (``verdicts/leaked``, ``verdicts/not leaked``,
``verdicts/undecided``), every judged ``attack`` event its client's reconstruction grid (the PNG beside
it, the truth over the reconstruction) as an image, all at the round as their step, and every ``deep-pass`` event
the run's updates per standing verdict (``final/...``, a deep pass's verdict superseding its round's), into
``<run dir>/tensorboard/`` (``tensorboard --logdir results/``). Needs the ``tensorboard`` package (``pip
install -e ".[tensorboard]"``): :func:`check_available` says so in one line before a run starts.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from fl_sim import events
from fl_sim.errors import ConfigError

#: The sink's folder inside the run directory.
FOLDER = "tensorboard"


def check_available() -> None:
    """Raise a one-line ConfigError when the ``tensorboard`` package is missing."""
    try:
        import tensorboard  # noqa: F401 - only its presence is checked
    except ImportError as err:
        raise ConfigError("config key 'output.tensorboard' is true but the tensorboard package is not installed; "
                          "pip install -e \".[tensorboard]\" or set output.tensorboard=false") from err


class TensorBoardSink:
    """Writes the run's events to TensorBoard as they come; call :meth:`close` at the end of the run."""

    def __init__(self, run_dir: Path, earlier: Iterable[events.Event] = ()) -> None:
        """Log into ``run_dir``'s TensorBoard folder.

        ``earlier``: the run's events logged before (a resumed run, ``fl-sim audit``); their verdicts count among
        the standing ones, and nothing of them is logged again.
        """
        check_available()
        from torch.utils.tensorboard import SummaryWriter

        self.run_dir = run_dir
        self._writer = SummaryWriter(log_dir=str(run_dir / FOLDER))
        self._standing: dict[tuple, str] = {}  # update -> its latest verdict
        self._deep_passes = 0
        for event in earlier:
            if isinstance(event, events.Attack):
                self._standing[event.update_key] = event.verdict or ""
            self._deep_passes += isinstance(event, events.DeepPass)

    def __call__(self, event: events.Event) -> None:
        """Add what ``event`` says to the log (other kinds of event are ignored)."""
        if isinstance(event, events.Round):
            self._scalars(event.round, {"accuracy/test": event.test_accuracy, "loss/test": event.test_loss,
                                        "accuracy/train": event.train_accuracy, "loss/train": event.train_loss})
        elif isinstance(event, events.AttackRound):
            self._scalars(event.round, {"attack/client_leak_rate": event.client_success_rate,
                                        "attack/image_leak_rate": event.image_success_rate,
                                        "attack/median_ssim": event.median_ssim, "attack/best_ssim": event.best_ssim,
                                        **{f"verdicts/{name}": n for name, n in (event.verdicts or {}).items()}})
        elif isinstance(event, events.DeepPass):
            self._deep_passes += 1
            standing = list(self._standing.values())
            self._scalars(self._deep_passes, {f"final/{name}": standing.count(name) for name in events.VERDICTS})
        if isinstance(event, events.Attack):
            self._standing[event.update_key] = event.verdict or ""
            if event.image:
                self._image(event)

    def close(self) -> None:
        """Flush and close the event files."""
        self._writer.close()

    def _scalars(self, step: int, values: dict[str, float | None]) -> None:
        for tag, value in values.items():
            if value is not None:
                self._writer.add_scalar(tag, value, step)
        self._writer.flush()

    def _image(self, event: events.Attack) -> None:
        from PIL import Image

        with Image.open(self.run_dir / event.image) as picture:
            pixels = np.asarray(picture.convert("RGB"))
        self._writer.add_image(f"reconstructions/client-{event.partition_id}", pixels, event.round, dataformats="HWC")
        self._writer.flush()
