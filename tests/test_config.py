"""The Streamlit settings the project ships (`.streamlit/config.toml`), as Streamlit itself reads them.

Streamlit ignores a misspelt key or section silently; reading the options back through Streamlit, in
the project folder as `streamlit run` does, fails here instead.
"""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT

PRODUCTION = {
    "server.enableXsrfProtection": True,
    "server.enableCORS": True,
    "server.headless": True,
    # With .venv inside the project, the watcher overflowed inotify and kept a core busy (issue 9).
    "server.fileWatcherType": "none",
    "server.runOnSave": False,
    "client.showErrorDetails": "none",
    "browser.gatherUsageStats": False,
    "runner.magicEnabled": False,
    # A full collection after every script run was a fifth of the server's CPU (bench/load_bench.py).
    "runner.postScriptGC": False,
}
READ_BACK = """
import json, sys
from streamlit import config
config.get_config_options()
print(json.dumps({name: config.get_option(name) for name in sys.argv[1:]}))
"""


def test_the_shipped_settings_are_those_of_production():
    shown = subprocess.run(
        [sys.executable, "-c", READ_BACK, *PRODUCTION],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert json.loads(shown.splitlines()[-1]) == PRODUCTION
