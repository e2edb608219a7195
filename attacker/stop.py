"""Stopping an attack early: one concept, named once.

An attack stops before it is done for one of two reasons: the run is ending and its end-of-run
budget (``attack.end-budget-seconds``) is spent, or the round's own time budget
(``attack.timeout-seconds``) has run out. Either way the attack holds one :class:`Stop`, polls
it every :data:`CHECK_EVERY` iterations and raises :class:`AttackStopped` when it is set; the
plugin then logs the round as cut (the run's end) or timed out (its own budget).
"""

from __future__ import annotations

import threading
import time

#: How often (in iterations) a running optimisation looks whether it must stop.
CHECK_EVERY = 25


class AttackStopped(RuntimeError):
    """Raised inside an attack whose :class:`Stop` is set."""


class Stop:
    """Whether an attack must stop now.

    Set by hand (:meth:`set`, the run's end), by a ``parent`` that is set (the run's stop, for one round's), or once
    ``seconds`` (> 0) have passed since it was made.
    """

    def __init__(self, seconds: float = 0.0, parent: Stop | None = None) -> None:
        self._event = threading.Event()
        self._parent = parent
        self._deadline = time.monotonic() + seconds if seconds > 0 else None

    def set(self) -> None:
        """Ask every attack holding this stop (or one made with it as ``parent``) to stop."""
        self._event.set()

    @property
    def timed_out(self) -> bool:
        """Whether this stop's own time budget has run out."""
        return self._deadline is not None and time.monotonic() > self._deadline

    def is_set(self) -> bool:
        """Whether the attack must stop now."""
        return self._event.is_set() or self.timed_out or (self._parent is not None and self._parent.is_set())

    def check(self, progress: str) -> None:
        """Raise :class:`AttackStopped` (saying ``progress``, e.g. "after 25 of 300 iterations") if set."""
        if self.is_set():
            raise AttackStopped(f"stopped {progress}")
