"""The results directory of a run, written so that nothing already written is ever lost.

``results/<run-id>/`` holds the resolved ``config.json``, an append-only ``events.jsonl``
(one JSON object per line, flushed as it is written), ``metrics.csv`` (one row per round),
the final global model ``model.pt``, ``summary.json``, and ``checkpoint.pt`` (the global model
after the last completed round, for ``fl-sim run --resume``). Whole files are written to a
temporary name and renamed, so a reader never sees half a file; an event line is whole or
absent (a failed append is cut back, a torn tail left by a crash is cut on reopen).

A run directory has one writer: :class:`ResultsWriter` holds an advisory lock on its
``.lock`` file (``flock``), which the kernel releases when the process ends, however it ends.
"""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import json
import math
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fl_sim import events
from fl_sim.config import RunConfig
from fl_sim.errors import ConfigError

if TYPE_CHECKING:
    import torch

EVENTS = "events.jsonl"
METRICS = "metrics.csv"
CONFIG = "config.json"
SUMMARY = "summary.json"
MODEL = "model.pt"
CHECKPOINT = "checkpoint.pt"
LOCK = ".lock"


def new_run_id() -> str:
    """A sortable, unique run id: the local time and four random hex digits."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def resolve_run_dir(config: RunConfig) -> RunConfig:
    """Fix the run's results directory: an absolute ``output.dir`` and a non-empty ``output.run-id``."""
    run_id = config.output.run_id or new_run_id()
    return config.with_overrides({"output.dir": str(Path(config.output.dir).resolve()),
                                  "output.run-id": run_id})


def check_output_dir(out: Path) -> None:
    """``output.dir`` must be a directory this process can write (or be creatable as one)."""
    existing = next((p for p in (out, *out.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        raise ConfigError(f"config key 'output.dir' is '{out}', but '{existing}' is a file; set it to a directory")
    if existing is not None and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"config key 'output.dir' is '{out}', but '{existing}' is not writable; "
                          f"set it to a directory you can write")


def resume_config(run_dir: Path) -> RunConfig:
    """The configuration of an earlier run, read back from its ``config.json``, writing to ``run_dir`` itself.

    A copied or moved run directory resumes where it is, not where it was first written.
    """
    saved = json.loads((require_run_directory(run_dir) / CONFIG).read_text())
    where = Path(run_dir).resolve()
    return RunConfig.from_flat({**saved, "output.dir": str(where.parent), "output.run-id": where.name})


def run_directory(config: RunConfig) -> Path:
    """``output.dir / output.run-id`` of a config whose run id is fixed."""
    return Path(config.output.dir) / config.output.run_id


class _DirectoryLocks:
    """The run directories this process writes, each locked once with ``flock`` and shared by its writers."""

    def __init__(self) -> None:
        self._held: dict[Path, list[int]] = {}  # directory -> [file descriptor, writers]
        self._guard = threading.Lock()

    def acquire(self, directory: Path, exclusive: bool) -> None:
        """Lock ``directory`` for this process; ``exclusive`` refuses one this process already writes."""
        key = directory.resolve()
        with self._guard:
            if key in self._held:
                if exclusive:
                    raise ConfigError(f"results directory '{directory}' is being written by this process; "
                                      f"choose another output.run-id")
                self._held[key][1] += 1
                return
            fd = os.open(key / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise ConfigError(f"results directory '{directory}' is being written by another fl-sim process; "
                                  f"wait for that run to end (or stop it) before resuming it, or choose another "
                                  f"output.run-id") from None
            self._held[key] = [fd, 1]

    def release(self, directory: Path) -> None:
        """One writer of ``directory`` is done; the last one unlocks it."""
        key = directory.resolve()
        with self._guard:
            held = self._held.get(key)
            if held is None:
                return
            held[1] -= 1
            if held[1] == 0:
                os.close(held[0])  # closing the descriptor releases the flock
                del self._held[key]


_LOCKS = _DirectoryLocks()


class ResultsWriter:
    """Writes one run's results directory; safe to call from several threads."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        #: Called with every event written, its time set (the console's lines, a TensorBoard sink); must not raise.
        self.listeners: list[Callable[[events.Event], None]] = []
        self._lock = threading.Lock()
        self._csv_fields: list[str] | None = None

    @classmethod
    def create(cls, config: RunConfig) -> ResultsWriter:
        """Create a new, empty results directory for ``config`` and write ``config.json``.

        Refuses an existing non-empty directory, so a run never overwrites another's results.
        """
        config = resolve_run_dir(config)
        directory = run_directory(config)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ConfigError(f"cannot create the results directory '{directory}' ({err.strerror}); "
                              f"set output.dir to a writable directory") from err
        _LOCKS.acquire(directory, exclusive=True)  # emptiness is checked under the lock: one creator wins
        if holds_results(directory):
            _LOCKS.release(directory)
            raise ConfigError(f"results directory '{directory}' already exists and is not empty; "
                              f"choose another output.run-id or remove it")
        writer = cls(directory)
        writer.write_json(CONFIG, config.to_flat())
        return writer

    @classmethod
    def reopen(cls, directory: Path, last_round: int | None = None, exclusive: bool = True) -> ResultsWriter:
        """A writer that appends to an existing run's directory (to resume it, or to mark its end).

        A torn last event line (a crash mid-write) is cut. With ``last_round``, ``metrics.csv``
        keeps only the rounds up to it: rows of rounds after the checkpoint are redone by the resumed
        run. ``exclusive=False`` shares the directory with a writer of this same process.
        """
        require_run_directory(directory)
        _LOCKS.acquire(Path(directory), exclusive=exclusive)
        writer = cls(Path(directory))
        _cut_torn_tail(writer.directory / EVENTS)
        if (writer.directory / METRICS).is_file():
            with open(writer.directory / METRICS, newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                rows = list(reader)
                writer._csv_fields = list(reader.fieldnames) if reader.fieldnames else None
            if last_round is not None and any(int(float(row["round"])) > last_round for row in rows):
                kept = [row for row in rows if int(float(row["round"])) <= last_round]
                writer._atomic(METRICS, lambda path: _write_csv(path, writer._csv_fields, kept))
        return writer

    def close(self) -> None:
        """Give up this writer's hold on the directory (the lock goes with the last writer)."""
        _LOCKS.release(self.directory)

    def emit(self, event: events.Event) -> None:
        """Append one event line ``{"event": KIND, "time": ..., **fields}`` and flush it to disk."""
        record = {"event": event.KIND, "time": round(time.time(), 3), **_jsonable(event.fields())}
        with self._lock:
            with open(self.directory / EVENTS, "a", encoding="utf-8") as handle:
                start = handle.tell()
                try:
                    handle.write(json.dumps(record) + "\n")
                    handle.flush()
                    os.fsync(handle.fileno())
                except OSError:
                    _truncate_quietly(handle, start)  # whole or absent: no torn line for the next event
                    raise
            for listener in self.listeners:
                listener(dataclasses.replace(event, time=record["time"]))

    def metrics_row(self, row: Mapping[str, Any]) -> None:
        """Append one row to ``metrics.csv`` (the first row fixes the columns)."""
        with self._lock:
            path = self.directory / METRICS
            if self._csv_fields is None:
                self._csv_fields = list(row)
            with open(path, "a", newline="", encoding="utf-8") as handle:
                writer = csv.DictWriter(handle, fieldnames=self._csv_fields)
                if handle.tell() == 0:
                    writer.writeheader()
                writer.writerow({key: row.get(key, "") for key in self._csv_fields})

    def write_json(self, name: str, payload: Any) -> None:
        """Write ``name`` atomically as indented JSON."""
        self._atomic(name, lambda path: path.write_text(json.dumps(_jsonable(payload), indent=2) + "\n"))

    def save_model(self, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Save the global model's state dict atomically as ``model.pt``."""
        import torch  # here, not at the top: the CLI reads and checks results before it loads torch

        self._atomic(MODEL, lambda path: torch.save(dict(state_dict), path))

    def save_checkpoint(self, server_round: int, state_dict: Mapping[str, torch.Tensor]) -> None:
        """Save the global model after ``server_round`` atomically as ``checkpoint.pt``."""
        import torch

        self._atomic(CHECKPOINT, lambda path: torch.save({"round": server_round, "arrays": dict(state_dict)}, path))

    def _atomic(self, name: str, write) -> None:
        with self._lock:
            handle, temp = tempfile.mkstemp(dir=self.directory, prefix=f".{name}.", suffix=".tmp")
            os.close(handle)
            try:
                write(Path(temp))
                os.chmod(temp, 0o644)
                os.replace(temp, self.directory / name)
            finally:
                if os.path.exists(temp):
                    os.unlink(temp)


def _truncate_quietly(handle, size: int) -> None:
    try:
        handle.truncate(size)
    except OSError:
        pass  # the disk refuses even that; reopening cuts the torn tail


def _cut_torn_tail(path: Path) -> None:
    """Cut a last line that has no newline (an append that a crash interrupted)."""
    if not path.is_file() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as handle:
        data = handle.read()
        if not data.endswith(b"\n"):
            handle.truncate(data.rfind(b"\n") + 1)


def _write_csv(path: Path, fields: list[str] | None, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields or [])
        writer.writeheader()
        writer.writerows(rows)


def holds_results(directory: Path) -> bool:
    """Whether ``directory`` exists with anything in it besides a run's lock file."""
    return directory.is_dir() and any(path.name != LOCK for path in directory.iterdir())


def ensure_not_in_use(directory: Path) -> None:
    """A one-line user error if another process (or a writer of this one) is writing ``directory``."""
    if Path(directory).is_dir():
        _LOCKS.acquire(Path(directory), exclusive=True)
        _LOCKS.release(Path(directory))


def require_run_directory(directory: Path) -> Path:
    """``directory`` if it holds a run's ``config.json``; a one-line user error otherwise."""
    path = Path(directory)
    if not (path / CONFIG).is_file():
        raise ConfigError(f"'{directory}' is not a results directory (no {CONFIG}); pass results/<run-id>")
    return path


def load_checkpoint(directory: Path) -> tuple[int, dict[str, torch.Tensor]]:
    """(last completed round, global model state) of a run; a user error if there is none."""
    path = Path(directory) / CHECKPOINT
    if not path.is_file():
        raise ConfigError(f"'{directory}' has no {CHECKPOINT} to resume from; start a new run instead")
    import torch

    checkpoint = torch.load(path)
    return int(checkpoint["round"]), checkpoint["arrays"]


def read_metrics(directory: Path) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.csv`` with numbers parsed (empty cells become ``None``)."""
    path = Path(directory) / METRICS
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as handle:
        return [{key: _number(value) for key, value in row.items()} for row in csv.DictReader(handle)]


def summarise(rows: list[dict[str, Any]], status: str) -> dict[str, Any]:
    """A run's summary from its per-round rows (round 0 is the initial model)."""
    rounds = [row for row in rows if row["round"] > 0]
    final = rows[-1] if rows else {}
    return {
        "status": status,
        "rounds": len(rounds),
        "last_completed_round": rounds[-1]["round"] if rounds else 0,
        "final_test_accuracy": final.get("test_accuracy"),
        "final_test_loss": final.get("test_loss"),
        "best_test_accuracy": max((row["test_accuracy"] for row in rounds), default=None),
    }


def mark_interrupted(directory: Path) -> dict[str, Any]:
    """Record that a run was stopped by a signal: ``summary.json`` and a ``run-end`` event say ``interrupted``."""
    summary = summarise(read_metrics(directory), "interrupted")
    writer = ResultsWriter.reopen(Path(directory), exclusive=False)  # the run's own writer is still open
    try:
        writer.write_json(SUMMARY, summary)
        writer.emit(events.RunEnd(**summary))
    finally:
        writer.close()
    return summary


def read_summary(directory: Path) -> dict[str, Any]:
    """A run's ``summary.json``, or ``{}`` if it has none yet."""
    path = Path(directory) / SUMMARY
    return json.loads(path.read_text()) if path.is_file() else {}


def _number(text: str) -> float | int | None:
    if text == "":
        return None
    value = float(text)
    return int(value) if value.is_integer() and "." not in text else value


def load_events(directory: Path) -> list[events.Event]:
    """All events of a results directory as their classes, in order (each line parsed once, by its kind)."""
    return [events.parse(line) for line in read_events(directory)]


def read_events(directory: Path) -> list[dict[str, Any]]:
    """All events of a results directory as the JSON lines hold them, in order (a torn last line is skipped)."""
    path = Path(directory) / EVENTS
    if not path.exists():
        return []
    found = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            found.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return found


def _jsonable(value: Any) -> Any:
    """JSON-safe copy: NaN/inf become null, NumPy and torch scalars become Python numbers."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
