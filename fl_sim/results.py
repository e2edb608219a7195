"""The results directory of a run, written so that nothing already written is ever lost.

``results/<run-id>/`` holds the resolved ``config.json``, an append-only ``events.jsonl``
(one JSON object per line, flushed as it is written), ``metrics.csv`` (one row per round),
the final global model ``model.pt`` and ``summary.json``. Whole files are written to a
temporary name and renamed, so a reader never sees half a file.
"""

from __future__ import annotations

import csv
import json
import math
import os
import secrets
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from fl_sim.config import RunConfig
from fl_sim.errors import ConfigError

EVENTS = "events.jsonl"
METRICS = "metrics.csv"
CONFIG = "config.json"
SUMMARY = "summary.json"
MODEL = "model.pt"


def new_run_id() -> str:
    """A sortable, unique run id: the local time and four random hex digits."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"


def resolve_run_dir(config: RunConfig) -> RunConfig:
    """Fix the run's results directory: an absolute ``output.dir`` and a non-empty ``output.run-id``."""
    run_id = config.output.run_id or new_run_id()
    return config.with_overrides({"output.dir": str(Path(config.output.dir).resolve()),
                                  "output.run-id": run_id})


class ResultsWriter:
    """Writes one run's results directory; safe to call from several threads."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._csv_fields: list[str] | None = None

    @classmethod
    def create(cls, config: RunConfig) -> ResultsWriter:
        """Create a new, empty results directory for ``config`` and write ``config.json``.

        Refuses an existing non-empty directory, so a run never overwrites another's results.
        """
        config = resolve_run_dir(config)
        directory = Path(config.output.dir) / config.output.run_id
        if directory.exists() and any(directory.iterdir()):
            raise ConfigError(f"results directory '{directory}' already exists and is not empty; "
                              f"choose another output.run-id or remove it")
        directory.mkdir(parents=True, exist_ok=True)
        writer = cls(directory)
        writer.write_json(CONFIG, config.to_flat())
        return writer

    def event(self, kind: str, **fields: Any) -> None:
        """Append one event line ``{"event": kind, "time": ..., **fields}`` and flush it to disk."""
        line = json.dumps({"event": kind, "time": round(time.time(), 3), **_jsonable(fields)})
        with self._lock, open(self.directory / EVENTS, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
            handle.flush()
            os.fsync(handle.fileno())

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
        self._atomic(MODEL, lambda path: torch.save(dict(state_dict), path))

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


def read_events(directory: Path) -> list[dict[str, Any]]:
    """All events of a results directory, in order (a torn last line, if any, is skipped)."""
    path = Path(directory) / EVENTS
    if not path.exists():
        return []
    events = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


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
