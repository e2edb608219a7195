"""A user's own module for a test: written outside the project, importable under a name of its own."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest


def write_user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefix: str, source: str) -> str:
    """Write ``source`` as ``<prefix>_<test>.py`` in a folder outside the project, put it on the path; its name.

    The name is the test's own, so that modules of different tests never shadow each other in ``sys.modules``.
    """
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    name = f"{prefix}_{abs(hash(str(tmp_path))) % 10**8}"
    (folder / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(folder))
    return name
