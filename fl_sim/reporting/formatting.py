"""How figures are written in every view of a run: ``-`` for a figure a run does not have."""

from __future__ import annotations

from typing import Any


def fmt(value: Any, spec: str = ".3f") -> str:
    """``value`` formatted with ``spec``, or ``-`` when it is missing (None)."""
    return "-" if value is None else format(value, spec)


def duration(seconds: float | None) -> str:
    """Seconds as ``h:mm:ss``, or ``-``."""
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def setting(value: Any) -> str:
    """A configuration value as it is written in TOML and ``--set``: ``true``/``false``, not Python's ``True``."""
    return str(value).lower() if isinstance(value, bool) else str(value)
