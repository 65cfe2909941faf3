"""The Streamlit settings the project ships (`.streamlit/config.toml`), as Streamlit itself reads them.

`streamlit config show` prints the settings in force in the project folder, so a misspelt key or
section (which Streamlit ignores silently) fails here.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from conftest import ROOT

PRODUCTION = {
    ("server", "enableXsrfProtection"): "true",
    ("server", "enableCORS"): "true",
    ("server", "headless"): "true",
    # With .venv inside the project, the watcher overflowed inotify and kept a core busy (issue 9).
    ("server", "fileWatcherType"): '"none"',
    ("server", "runOnSave"): "false",
    ("client", "showErrorDetails"): '"none"',
    ("browser", "gatherUsageStats"): "false",
    ("runner", "magicEnabled"): "false",
    # A full collection after every script run was a fifth of the server's CPU (bench/load_bench.py).
    ("runner", "postScriptGC"): "false",
}


def settings_in_force() -> dict[tuple[str, str], str]:
    streamlit = Path(sys.executable).with_name("streamlit")
    shown = subprocess.run(
        [str(streamlit), "config", "show"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    settings, section = {}, ""
    for line in shown.splitlines():
        if header := re.fullmatch(r"\[(\w+)\]", line.strip()):
            section = header[1]
        elif setting := re.fullmatch(r"(\w+) = (.+)", line.strip()):
            settings[(section, setting[1])] = setting[2]
    return settings


def test_the_shipped_settings_are_those_of_production():
    in_force = settings_in_force()
    assert {key: in_force.get(key) for key in PRODUCTION} == PRODUCTION
