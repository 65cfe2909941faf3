"""The layering the design asks for, checked on the code itself.

    pages/, home.py, etl.py, auth.py   entry points: pages draw, the two command lines parse arguments
    ui/                                widgets and the app shell; with pages, the only Streamlit users
    backups/                           backups of the accounts and what they follow, and their restore
    alerts/                            price alerts by e-mail, evaluated after each pass
    accounts/                          people's accounts, sessions and recovery
    prices/                            the read side and each person's stations and fuels
    ingest/                            the price pipeline
    mailer, session, models            mail, the database, its tables
    i18n                               the active language, the catalogs and how values are written
    settings, utils                    configuration and small pure helpers

A module imports only from its own package and the layers below it. import-linter checks the
six packages (the contracts in pyproject.toml); it cannot analyse top-level modules, so the
entry points and the modules below the packages are read here with `ast`, against the same table.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import FIXTURES, ROOT

LAYERS = [
    {"pages", "home", "etl", "auth"},
    {"ui"},
    {"backups"},
    {"alerts"},
    {"accounts"},
    {"prices"},
    {"ingest"},
    {"mailer"},
    {"session"},
    {"models"},
    {"i18n"},
    {"settings", "utils"},
]
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}
# The command lines are thin: each talks to its own service package and what lies below the packages.
ENTRY_POINT_SERVICES = {"etl": {"ingest", "backups", "alerts"}, "auth": {"accounts"}}
PACKAGES = ["ui", "backups", "alerts", "prices", "accounts", "ingest"]
STREAMLIT = {"streamlit"}
LIBRARY = {"streamlit_authenticator", "extra_streamlit_components", "jwt"}
LIBRARY_ADAPTER = {"ui/authenticator.py"}


def project_modules() -> list[Path]:
    skipped = {".venv", "tests", "bench", "migrations", "node_modules"}
    return [
        path
        for path in ROOT.rglob("*.py")
        if not skipped.intersection(path.relative_to(ROOT).parts) and not path.name.startswith(".")
    ]


def owner(path: Path) -> str:
    """The layer name of a project file: its package, or its module name at the top level."""
    first = path.relative_to(ROOT).parts[0]
    return first.removesuffix(".py")


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


def layer_breaches(paths: list[Path]) -> list[str]:
    breaches = []
    for path in paths:
        here = owner(path)
        for name in imported_roots(path) & RANK.keys():
            services = ENTRY_POINT_SERVICES.get(here)
            too_high = RANK[name] <= RANK[here] and name != here
            other_service = services is not None and RANK[name] <= RANK["ingest"] and name not in services
            if too_high or other_service:
                breaches.append(f"{path.relative_to(ROOT)} imports {name}")
    return breaches


def run_import_linter(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    linter = Path(sys.executable).with_name("lint-imports")
    return subprocess.run([str(linter)], cwd=root, env=env, capture_output=True, text=True, timeout=120)


def test_every_project_module_has_a_layer():
    assert {owner(path) for path in project_modules()} <= RANK.keys()


def test_the_import_linter_contracts_are_kept():
    result = run_import_linter(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "upward_import"),
    [("ingest/errors.py", "from prices import hours"), ("prices/detour.py", "import streamlit")],
    ids=["pipeline-imports-read-side", "read-side-imports-streamlit"],
)
def test_the_import_linter_contracts_catch_a_breach(tmp_path, module: str, upward_import: str):
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__", "*.csv"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    target = tmp_path / module
    target.write_text(f"{target.read_text()}\n{upward_import}\n")

    result = run_import_linter(tmp_path)

    assert result.returncode != 0
    assert "1 broken" in result.stdout


def test_the_modules_outside_the_packages_import_only_the_layers_below_them():
    outside = [path for path in project_modules() if owner(path) not in PACKAGES]
    assert {owner(path) for path in outside} >= {"pages", "home", "etl", "session", "models", "i18n", "utils"}
    assert layer_breaches(outside) == []


def test_the_layer_check_catches_a_breach(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "models.py").write_text("from session import make_engine\n")
    (tmp_path / "etl.py").write_text("from accounts.service import Accounts\nfrom ingest import passes\n")
    assert sorted(layer_breaches([tmp_path / "models.py", tmp_path / "etl.py"])) == [
        "etl.py imports accounts",
        "models.py imports session",
    ]


def test_only_pages_and_the_ui_layer_import_streamlit():
    importers = importers_of(STREAMLIT)
    assert importers, "the scan finds the app's own imports"
    assert {owner(ROOT / name) for name in importers} <= {"pages", "home", "ui"}


def test_only_the_adapter_talks_to_streamlit_authenticator():
    assert importers_of(LIBRARY) == LIBRARY_ADAPTER


def test_the_etl_command_line_imports_what_a_command_needs_when_it_runs():
    """`import etl` stays cheap: the scheduler's start and `--help` load no database or XML library."""
    probe = "import sys, etl; print(sorted({'sqlalchemy', 'lxml', 'requests', 'psutil'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# What an hourly price run on SQLite never uses: each costs a whole-process run CPU beside the feed's parse.
NOT_FOR_A_PRICE_RUN = {"sqlalchemy.dialects.postgresql", "alembic", "babel", "requests", "tqdm", "psutil"}


def test_an_hourly_run_on_sqlite_loads_only_what_a_price_run_needs(tmp_path):
    """A run on a current SQLite database, from a local file: no other database's dialects, no migration tool,
    no translations, no download or progress-bar library."""
    env = {**os.environ, "CARBUROAM_DATA_DIR": str(tmp_path)}
    env.pop("CARBUROAM_DATABASE_URL", None)
    probe = (
        "import sys, etl\n"
        "code = etl.main(['run', '--source', sys.argv[1]])\n"
        f"print(code, sorted(name for name in {sorted(NOT_FOR_A_PRICE_RUN)} if name in sys.modules))"
    )
    outcomes = [
        subprocess.run(
            [sys.executable, "-c", probe, str(FIXTURES / feed)], cwd=ROOT, env=env, capture_output=True, text=True
        )
        for feed in ("feed_a.zip", "feed_b.zip")
    ]

    assert [outcome.returncode for outcome in outcomes] == [0, 0], outcomes[-1].stderr
    assert outcomes[-1].stdout.splitlines()[-1] == "0 []"
