"""A background worker so that attacks never stall training.

Rounds to attack go through a bounded queue to one worker thread (PyTorch releases the GIL in
its kernels, so the attack computes while Ray's client processes train). When the queue is
full, the server waits: memory stays bounded. At the end of a run, :meth:`close` lets pending
attacks finish, or, past a time budget, cancels the running one and returns the jobs that
were cut, so that they can be logged as such.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from attacker.engine import AttackCancelled

_STOP = object()


class BackgroundWorker:
    """Runs ``handle(job)`` for each submitted job, in order, on one thread."""

    def __init__(self, handle: Callable[[Any, threading.Event], None], queue_size: int) -> None:
        self._handle = handle
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.cancel = threading.Event()
        self._cut: list[Any] = []
        self._pending = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="fl-sim-attacker", daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Jobs waiting or running."""
        return self._pending

    def submit(self, job: Any) -> None:
        """Queue ``job``; blocks while the queue is full."""
        with self._lock:
            self._pending += 1
        self._queue.put(job)

    def close(self, budget_seconds: float = 0.0) -> list[Any]:
        """Finish pending jobs (within ``budget_seconds`` if > 0, else all); return the jobs that were cut."""
        self._queue.put(_STOP)
        self._thread.join(timeout=budget_seconds if budget_seconds > 0 else None)
        if self._thread.is_alive():
            self.cancel.set()
            self._thread.join()
        return self._cut

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is _STOP:
                return
            try:
                if self.cancel.is_set():
                    self._cut.append(job)
                else:
                    self._handle(job, self.cancel)
            except AttackCancelled:
                self._cut.append(job)
            finally:
                with self._lock:
                    self._pending -= 1
