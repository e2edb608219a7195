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


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _loaded_with(body: list[ast.stmt]) -> list[str]:
    """What a module's top level imports as it is loaded: every name that could be a module, type-only ones left out.

    ``from a.b import c`` may load ``a.b.c``; imports under ``if TYPE_CHECKING:`` and inside functions do not run then.
    """
    found: list[str] = []
    for node in body:
        if isinstance(node, ast.If):
            found += _loaded_with(node.orelse) + ([] if "TYPE_CHECKING" in ast.unparse(node.test) else
                                                  _loaded_with(node.body))
        elif isinstance(node, ast.Try):
            found += [name for block in (node.body, *(h.body for h in node.handlers), node.orelse, node.finalbody)
                      for name in _loaded_with(block)]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return found


def test_no_module_is_loaded_by_what_it_loads():
    """The project's import graph, as modules load, is a tree of floors: no circle, however long."""
    paths = {_module_name(path): path for package in PROJECT for path in (ROOT / package).rglob("*.py")}
    graph = {name: {m for m in _loaded_with(ast.parse(path.read_text()).body) if m in paths and m != name}
             for name, path in paths.items()}
    state: dict[str, str] = {}

    def circle_from(name: str, path: list[str]) -> list[str] | None:
        """The first circle the load of ``name`` (reached by ``path``, ``name`` last) runs into."""
        state[name] = "open"
        for loaded in sorted(graph[name]):
            if state.get(loaded) == "open":  # still being loaded: a circle back to it
                return [*path[path.index(loaded):], loaded]
            if loaded not in state and (circle := circle_from(loaded, [*path, loaded])):
                return circle
        state[name] = "done"
        return None

    circle = next((found for name in sorted(graph) if name not in state and (found := circle_from(name, [name]))),
                  None)
    assert circle is None, "an import circle: " + " -> ".join(circle)


@pytest.mark.parametrize("argv", [["run", "--set", "train.lrr=1"],
                                  ["run", "--dataset", "cifar10", "--data-root", "nowhere"],
                                  ["run", "--out", "/etc/hostname/results"]])
def test_fl_sim_run_refuses_bad_settings_before_loading_torch_flower_or_ray(argv):
    probe = ("import sys; from lab.cli import main; code = main(sys.argv[1:]); "
             "print(code, sorted({'torch', 'flwr', 'ray'} & {m.split('.')[0] for m in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", probe, *argv], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.stdout.split("\n")[0] == "2 []", done.stdout + done.stderr
    assert done.stderr.startswith("fl-sim: error: ") and done.stderr.count("\n") == 1


#: The words that say an expression holds a choice (``config.defense.name``, ``method``, ``entry.name``):
#: compared with a registered name, it is code that knows what a choice does by its name, not by its entry.
CHOICE_WORDS = ("defense", "attack", "method", "model", "strategy", "dataset", "name")


def _choice_names() -> set[str]:
    from fl_sim.attack_registry import ATTACKS
    from fl_sim.dataset_registry import DATASETS
    from fl_sim.defense_registry import DEFENSES
    from fl_sim.model_registry import MODELS
    from fl_sim.strategy_registry import STRATEGIES

    return {name for registry in (ATTACKS, DATASETS, DEFENSES, MODELS, STRATEGIES) for name in registry}


def _literals(node: ast.AST) -> list[str]:
    """The strings ``node`` spells out: a string, or the strings of a tuple, list or set of them."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return [value for element in node.elts for value in _literals(element)]
    return []


def _name_comparisons(source: str, names: set[str]) -> list[str]:
    """Every comparison (``==``, ``in``, a set's ``&``) in ``source`` of a choice with one of ``names``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
        elif isinstance(node, ast.BinOp) and isinstance(node.op, (ast.BitAnd, ast.BitOr, ast.Sub)):
            sides = [node.left, node.right]
        else:
            continue
        named = [value for side in sides for value in _literals(side) if value in names]
        held = [ast.unparse(side) for side in sides if not _literals(side)]
        if named and any(word in text for text in held for word in CHOICE_WORDS):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_the_finder_sees_a_choice_compared_by_its_name():
    names = _choice_names()
    assert len(_name_comparisons('if config.defense.name == "dpsgd" or method in ("ig", "cpa"): pass\n'
                                 'both = {defense.name, *other} & {"dp", "dpsgd"}', names)) == 3
    assert not _name_comparisons('ok = config.init == "dlg" and config.compile == "auto"', names)


def test_no_code_knows_a_choice_by_its_name_outside_the_registries():
    """What a choice does is on its registry entry (a flag, a default, its code); the rest of the code reads that."""
    names, found = _choice_names(), []
    for package in (*PROJECT, "examples"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if not path.name.endswith("_registry.py"):
                found += [f"{path.relative_to(ROOT)} {hit}" for hit in _name_comparisons(path.read_text(), names)]
    assert not found, "compare the entry's flags, not the name:\n" + "\n".join(found)
