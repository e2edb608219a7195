"""Stopping an attack early: one concept, named once.

An attack stops before it is done for one of two reasons, and both reach it through one
:class:`Stop` that its loops poll every :data:`CHECK_EVERY` iterations:

- its **budget** is spent (``attack.budget-seconds`` per update, so many times that for a round
  of updates): attacks are *anytime*, so a loop whose budget is spent ends there and returns the
  best it has found (:attr:`Stop.spent`), marked cut (:attr:`Reconstruction.complete`), and the judge
  still judges it: what it leaks is a leak, but an update it leaked nothing of is ``undecided``, never
  ``not leaked``; the event says which attacks were cut short and after how many iterations;
- the **run is ending** and its end-of-run budget (``attack.end-budget-seconds``) is spent:
  :meth:`Stop.check` raises :class:`AttackStopped` and the round is logged as cut.
"""

from __future__ import annotations

import threading
import time

#: How often (in iterations) a running optimisation looks whether it must stop.
CHECK_EVERY = 25


class AttackStopped(RuntimeError):
    """Raised inside an attack when the run's end stops it (its round is then logged as cut)."""


class Stop:
    """Whether an attack must stop now, and whether its budget is spent.

    Set by hand (:meth:`set`, the run's end) or by a ``parent`` that is set (the run's stop, for one round's); its
    budget is spent once ``seconds`` (> 0) have passed since it was made (0: no budget).
    """

    def __init__(self, seconds: float = 0.0, parent: Stop | None = None) -> None:
        self._event = threading.Event()
        self._parent = parent
        self.seconds = seconds
        self._deadline = time.monotonic() + seconds if seconds > 0 else None

    def set(self) -> None:
        """Ask every attack holding this stop (or one made with it as ``parent``) to stop now."""
        self._event.set()

    @property
    def spent(self) -> bool:
        """Whether this stop's budget has run out: anytime loops end and return their best so far."""
        return self._deadline is not None and time.monotonic() > self._deadline

    def remaining(self) -> float:
        """Seconds left of the budget (infinite without one)."""
        return float("inf") if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def share(self, fraction: float) -> Stop:
        """A stop for a step that serves the attack holding this one: ``fraction`` of the seconds left, no more.

        A preparatory step (the replay's label search) is charged to the attack it serves and bounded by it, so that
        it never spends the whole budget before the attack starts. Without a budget, the share has none either.
        """
        remaining = self.remaining()
        if remaining == float("inf"):
            return Stop(parent=self)
        return Stop(max(fraction * remaining, 1e-9), parent=self)  # seconds=0 would mean no budget at all

    def is_set(self) -> bool:
        """Whether the run's end asks the attack to stop (its result is then not wanted)."""
        return self._event.is_set() or (self._parent is not None and self._parent.is_set())

    def check(self, progress: str) -> None:
        """Raise :class:`AttackStopped` (saying ``progress``, e.g. "after 25 of 300 iterations") if set."""
        if self.is_set():
            raise AttackStopped(f"stopped {progress}")

    def ends(self, iteration: int, total: int) -> bool:
        """For a loop at ``iteration`` of ``total``: raise if the run ends, True if the budget is spent.

        Polled every :data:`CHECK_EVERY` iterations (and at the first), so a loop costs nothing extra.
        """
        if iteration % CHECK_EVERY:
            return False
        self.check(f"after {iteration} of {total} iterations")
        return self.spent
