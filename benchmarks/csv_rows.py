"""A table that grows row by row.

Each row appended to a CSV file at once and printed, so that an interrupted benchmark keeps what it measured.
"""

from __future__ import annotations

import csv
from pathlib import Path
from types import TracebackType


class RowLog:
    """Append rows of ``fields`` to ``path`` (header written for a new file) and print each one."""

    def __init__(self, path: Path, fields: list[str]) -> None:
        self.fields = fields
        new_file = not path.exists()
        self._handle = open(path, "a", newline="")
        self._writer = csv.DictWriter(self._handle, fieldnames=fields)
        if new_file:
            self._writer.writeheader()
        print(" | ".join(fields), flush=True)

    def add(self, row: dict) -> None:
        """Write ``row`` to the file now and print it (floats with 4 significant digits)."""
        self._writer.writerow(row)
        self._handle.flush()
        print(" | ".join(f"{row[f]:.4g}" if isinstance(row[f], float) else str(row[f]) for f in self.fields),
              flush=True)

    def __enter__(self) -> RowLog:
        return self

    def __exit__(self, kind: type | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self._handle.close()
