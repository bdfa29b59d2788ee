"""The package's shape: one implementation per pytest hook, old import paths that say where
their contents went, a public API that imports nothing heavy."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import pytest_tokenguard
from pytest_tokenguard._moved import MOVED

PACKAGE = Path(pytest_tokenguard.__file__).parent


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)


def test_each_pytest_hook_is_implemented_once() -> None:
    """One object per hook: no two modules (or classes) implement the same pytest hook."""
    hooks: Counter[str] = Counter()
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name.startswith("pytest_"):
                hooks[node.name] += 1
    assert hooks, "no hooks found"
    assert {name: n for name, n in hooks.items() if n > 1} == {}


def test_only_the_plugin_package_imports_pytest() -> None:
    importers = []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name == "pytest" or name.startswith("_pytest") for name in names):
                importers.append(path.relative_to(PACKAGE).as_posix())
    assert sorted(set(importers)) == sorted(
        p.relative_to(PACKAGE).as_posix() for p in (PACKAGE / "plugin").glob("*.py")
        if "import pytest" in p.read_text(encoding="utf-8"))


@pytest.mark.parametrize("old", sorted(set(MOVED) - {"baseline", "cli", "gpu"}))
def test_a_moved_module_names_its_new_home(old: str) -> None:
    with pytest.raises(ImportError, match=f"pytest_tokenguard.{old} moved in pytest-tokenguard "
                                          "0.2: import from "):
        __import__(f"pytest_tokenguard.{old}")


def test_public_api_resolves_and_stays_light() -> None:
    script = (
        "import sys, pytest_tokenguard as t\n"
        "heavy = [m for m in ('torch', 'transformers', 'PIL', 'hypothesis', 'pytest') "
        "if m in sys.modules]\n"
        "assert heavy == [], heavy\n"
        "missing = [n for n in t.__all__ if not hasattr(t, n)]\n"
        "assert missing == [], missing\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr


def _declared_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        value: ast.expr | None
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign):
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            assert isinstance(value, ast.List | ast.Tuple), "__all__ must be a literal list"
            return [ast.literal_eval(e) for e in value.elts]
    return None


def test_every_module_declares_its_public_names() -> None:
    """A curated API: every module says what it exports, and exports only what it defines
    (or, for the package itself, what it loads lazily)."""
    undeclared, unknown = [], []
    for path in _modules():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        names = _declared_all(tree)
        name = path.relative_to(PACKAGE).as_posix()
        if names is None:
            undeclared.append(name)
            continue
        defined = {n.name for n in ast.walk(tree)
                   if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                defined |= {t.id for t in targets if isinstance(t, ast.Name)}
            elif isinstance(node, ast.Import | ast.ImportFrom):
                defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        lazy = getattr(pytest_tokenguard, "_LAZY", {}) if name == "__init__.py" else {}
        unknown += [f"{name}: {n}" for n in names if n not in defined | set(lazy)]
    assert (undeclared, unknown) == ([], [])


def test_the_readme_imports_only_public_names() -> None:
    """Every ``from pytest_tokenguard... import x`` in the README names something the module
    lists in ``__all__`` (and the module exists)."""
    import importlib
    import re

    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    found = re.findall(r"^from (pytest_tokenguard[\w.]*) import ([\w, ]+)$", readme, re.M)
    assert found, "the README shows no imports"
    private = []
    for module, names in found:
        public = importlib.import_module(module).__all__
        private += [f"{module}.{n.strip()}" for n in names.split(",") if n.strip() not in public]
    assert private == []
