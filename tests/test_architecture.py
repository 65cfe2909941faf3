"""The layering the design asks for, checked on the code itself.

- import-linter (the contracts in pyproject.toml): nothing under accounts/ imports Streamlit or
  streamlit-authenticator.
- Only pages, home.py and the UI layer (shell.py, ui.py, finder_ui.py, map_ui.py, authenticator.py)
  import streamlit, and only authenticator.py imports streamlit-authenticator, its cookie component
  or the JWT library: a library upgrade touches one file. (import-linter analyses packages only; these top-level
  modules are read with `ast` until they move into one.)
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

UI_LAYER = {"home.py", "shell.py", "ui.py", "finder_ui.py", "map_ui.py", "authenticator.py"}
LIBRARY_ADAPTER = {"authenticator.py"}
LIBRARY = {"streamlit_authenticator", "extra_streamlit_components", "jwt"}


def project_modules() -> list[Path]:
    skipped = {".venv", "tests", "bench", "migrations", "node_modules"}
    return [
        path
        for path in ROOT.rglob("*.py")
        if not skipped.intersection(path.relative_to(ROOT).parts) and not path.name.startswith(".")
    ]


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def importers_of(modules: set[str]) -> set[str]:
    return {str(path.relative_to(ROOT)) for path in project_modules() if imported_roots(path) & modules}


def test_the_import_linter_contracts_are_kept():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_only_pages_and_the_ui_layer_import_streamlit():
    importers = importers_of({"streamlit"})
    assert importers, "the scan finds the app's own imports"
    assert {name for name in importers if not name.startswith("pages/")} <= UI_LAYER


def test_only_the_adapter_talks_to_streamlit_authenticator():
    assert importers_of(LIBRARY) == LIBRARY_ADAPTER
