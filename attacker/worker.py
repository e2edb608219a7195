"""A background worker so that attacks never stall training.

Rounds to attack go through a bounded queue to one worker thread (PyTorch releases the GIL in
its kernels, so the attack computes while Ray's client processes train). When the queue is
full, the server waits: memory stays bounded. At the end of a run, :meth:`close` lets pending
attacks finish, or, past a time budget, sets the run's :class:`attacker.stop.Stop` and returns
the jobs that were cut, so that they can be logged as such. Every wait is bounded: an attack that
does not stop within :data:`STOP_GRACE_SECONDS` is abandoned (the thread is a daemon)
and reported as cut with the rest.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from attacker.stop import AttackStopped, Stop

#: After the stop is set, how long :meth:`BackgroundWorker.close` waits for the running attack to stop.
STOP_GRACE_SECONDS = 30.0
#: How often the idle worker looks whether it is being closed.
POLL_SECONDS = 0.1
#: The worker thread's name (a process that ends with one still alive must not wait for it).
THREAD_NAME = "fl-sim-attacker"


class BackgroundWorker:
    """Runs ``handle(job)`` for each submitted job, in order, on one thread."""

    def __init__(self, handle: Callable[[Any, Stop], None], queue_size: int) -> None:
        self._handle = handle
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.stop = Stop()
        self._cut: list[Any] = []
        self._closing = threading.Event()
        self._current: Any = None
        self._pending = 0
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=THREAD_NAME, daemon=True)
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

    def close(self, budget_seconds: float = 0.0, grace_seconds: float = STOP_GRACE_SECONDS) -> list[Any]:
        """Finish pending jobs (within ``budget_seconds`` if > 0, else all); return the jobs that were cut.

        Past the budget the running job is stopped; if it has not stopped ``grace_seconds`` later,
        it and every queued job are given up as cut.
        """
        self._closing.set()
        self._thread.join(timeout=budget_seconds if budget_seconds > 0 else None)
        if self._thread.is_alive():
            self.stop.set()
            self._thread.join(timeout=grace_seconds)
        with self._lock:
            cut = list(self._cut)
            if self._thread.is_alive():  # stuck in code that never polls its stop
                cut += [job for job in [self._current, *self._drain()]
                        if job is not None and all(job is not other for other in cut)]
        return cut

    def _record_cut(self, job: Any) -> None:
        with self._lock:
            self._cut.append(job)

    def _drain(self) -> list[Any]:
        jobs = []
        while True:
            try:
                jobs.append(self._queue.get_nowait())
            except queue.Empty:
                return jobs

    def _loop(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            with self._lock:
                self._current = job
            try:
                if self.stop.is_set():
                    self._record_cut(job)
                else:
                    self._handle(job, self.stop)
            except AttackStopped:
                self._record_cut(job)
            finally:
                with self._lock:
                    self._pending -= 1
                    self._current = None
