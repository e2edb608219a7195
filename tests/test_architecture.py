"""The plan of the code, read from its imports: a shared base, three roles that know only the base, one root.

``fl_sim`` is the base; ``clients``, ``strategies`` and ``attacker`` are the roles; ``lab`` is the
composition root, the only package that may import all of them. Imports inside functions count too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BASE, ROLES, COMPOSITION_ROOT = "fl_sim", ("clients", "strategies", "attacker"), "lab"
PROJECT = (BASE, *ROLES, COMPOSITION_ROOT)


def _project_imports(package: str) -> list[tuple[str, str]]:
    """(file, imported project package) for every import of a project package in ``package``."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            found += [(str(path.relative_to(ROOT)), name.split(".")[0]) for name in names
                      if name.split(".")[0] in PROJECT]
    return found


def test_the_base_imports_no_role_and_not_the_root():
    upward = [(path, name) for path, name in _project_imports(BASE) if name != BASE]
    assert not upward, f"the base imports upward: {upward}"


@pytest.mark.parametrize("role", ROLES)
def test_a_role_imports_only_the_base_and_itself(role):
    sideways = [(path, name) for path, name in _project_imports(role) if name not in (BASE, role)]
    assert not sideways, f"{role} imports another role or the root: {sideways}"


def test_only_the_root_knows_every_role():
    assert {name for _, name in _project_imports(COMPOSITION_ROOT)} >= set(ROLES)


@pytest.mark.parametrize("argv", [["run", "--set", "train.lrr=1"],
                                  ["run", "--dataset", "cifar10", "--data-root", "nowhere"],
                                  ["run", "--out", "/etc/hostname/results"]])
def test_fl_sim_run_refuses_bad_settings_before_loading_torch_flower_or_ray(argv):
    probe = ("import sys; from lab.cli import main; code = main(sys.argv[1:]); "
             "print(code, sorted({'torch', 'flwr', 'ray'} & {m.split('.')[0] for m in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", probe, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.split("\n")[0] == "2 []", done.stdout + done.stderr
    assert done.stderr.startswith("fl-sim: error: ") and done.stderr.count("\n") == 1
