"""A table of named choices, one per kind (models, strategies, ...), each entry declared once.

The configuration's allowed values, its help and its errors come from these tables, and the code
that builds a choice looks its entry up here. Entries name their implementation by import path
(``package.module:attribute``), so that a configuration is checked without importing torch or
Flower, and so that a user's own ``package.module:builder`` can enter the same table.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator
from typing import Any, Generic, Protocol, TypeVar


class Named(Protocol):
    """What every entry has: the name the configuration uses."""

    name: str


EntryT = TypeVar("EntryT", bound=Named)


class Registry(Generic[EntryT]):
    """The entries of one kind of choice, by name, in the order they were registered."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, EntryT] = {}

    def register(self, entry: EntryT) -> EntryT:
        """Add ``entry``; a name may be declared once."""
        if entry.name in self._entries:
            raise ValueError(f"{self.kind} {entry.name!r} is declared twice")
        self._entries[entry.name] = entry
        return entry

    def __getitem__(self, name: str) -> EntryT:
        return self._entries[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def values(self) -> list[EntryT]:
        """Every entry, in registration order."""
        return list(self._entries.values())


def load(path: str) -> Any:
    """The attribute an import path ``package.module:attribute`` names."""
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


#: ``package.module:attribute``: a user's own builder or loader, named where a choice of ours would be.
IMPORT_PATH = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z_]\w*$")


def is_import_path(name: str) -> bool:
    """Whether ``name`` reads as ``package.module:attribute`` (a user's own, not one of ours)."""
    return bool(IMPORT_PATH.match(name))
