"""Every third-party package the code imports is declared in pyproject.toml, not just pulled in by another.

An undeclared import works only while some declared package happens to depend on it: the next release of
that package can drop it, and requirements.lock would drop it with it. The application (src/) may import
only its runtime dependencies; the tests and benchmarks may import the dev extra too.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# bench/ scripts import the modules beside them (_common.py, bulk_keys.py, ...).
OURS = {"thotbot", "tests"} | {path.stem for path in (ROOT / "bench").glob("*.py")}


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement ("psycopg[binary]==3.3.9" is "psycopg")."""
    return re.sub(r"[-_.]+", "-", re.split(r"[\s\[=<>!~;]", requirement, maxsplit=1)[0]).lower()


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    return runtime, runtime | {_name(r) for r in project["optional-dependencies"]["dev"]}


def _imported(folder: str) -> set[str]:
    """Top-level names of the absolute imports of every Python file under ``folder``, less ours and stdlib."""
    names: set[str] = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.partition(".")[0])
    return {n for n in names if n not in sys.stdlib_module_names and n not in OURS and n != "__future__"}


@pytest.mark.parametrize(("folder", "extra"), [("src", False), ("tests", True), ("bench", True)])
def test_every_imported_package_is_declared(folder: str, extra: bool) -> None:
    runtime, with_dev = _declared()
    allowed = with_dev if extra else runtime
    distributions = importlib.metadata.packages_distributions()
    imported = _imported(folder)
    assert imported, f"no third-party import found under {folder}/"
    undeclared = {
        module: sorted(_name(d) for d in distributions.get(module, [f"? {module} (not installed)"]))
        for module in sorted(imported)
        if not {_name(d) for d in distributions.get(module, [])} & allowed
    }
    assert not undeclared, f"imported under {folder}/, not declared in pyproject.toml: {undeclared}"
