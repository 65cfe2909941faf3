"""The deployment files: what goes into the app's image, compose.yaml's settings, and its proxy configuration
run for real by Debian's nginx in front of two app replicas.

The images themselves are not built here (no Docker daemon on the test machines).
"""

from __future__ import annotations

import gzip
import re
import urllib.request
from dataclasses import fields
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import expect, sync_playwright

from accounts.service import Accounts
from accounts.store import credential_store
from app_server import app_environ, compose_http_block, nginx, serve
from conftest import FIXTURES, ROOT
from ingest import passes
from net import free_port
from session import init_db, make_engine
from settings import Settings, load_settings
from test_browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, readme_nginx_block

README = (ROOT / "README.md").read_text()
REPLICAS = ("app1", "app2")


def compose() -> dict:
    return yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_the_replicas_are_configured_only_with_settings_the_app_reads_and_the_readme_documents():
    known = {field.metadata["env"] for field in fields(Settings)}
    for replica in REPLICAS:
        environment = compose()["services"][replica]["environment"]
        assert environment["CARBUROAM_DATABASE_URL"].startswith("postgresql+psycopg://"), "replicas share PostgreSQL"
        assert environment["LOAD_MODE"] == "remote", "and the credentials, in S3"
        assert environment["BACKUP_TARGET"].startswith("s3://"), "backups outlive the replicas' disks"
        unknown = {name for name in environment if name not in known and not name.startswith("AWS_")}
        assert unknown == set(), f"{replica} sets what no setting reads"
        assert {name for name in environment if f"`{name}`" not in README} == set(), "undocumented settings"


def test_the_proxy_of_compose_serves_the_readmes_site_block_in_front_of_both_replicas():
    proxy = compose()["services"]["proxy"]
    assert "./deploy/site.conf:/etc/nginx/site.conf:ro" in proxy["volumes"]
    assert readme_nginx_block().lstrip("\n") == (ROOT / "deploy" / "site.conf").read_text(), "one site block"
    upstream = (ROOT / "deploy" / "nginx.conf").read_text()
    assert re.findall(r"^\s*server (\w+):8501;$", upstream, re.MULTILINE) == list(REPLICAS)
    assert re.search(r"^\s*ip_hash;$", upstream, re.MULTILINE), "each browser stays on the replica of its session"


def test_the_image_holds_no_secret_and_no_local_data():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for secret in ("credentials.yaml*", ".streamlit/secrets.toml", "db.sqlite3*", ".venv", ".git", "backups", "mail"):
        assert secret in ignored
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile, "run-time requirements only"
    assert "USER carburoam" in dockerfile, "not root"


@pytest.mark.browser
def test_people_sign_in_through_the_compose_proxy_in_front_of_two_replicas(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    env = app_environ(data_dir, FIXTURES / "feed_a.zip")
    settings = load_settings(env)
    engine = make_engine(settings.database_url)
    init_db(engine)
    passes.run_pass(engine, settings, str(FIXTURES / "feed_a.zip"))
    password = "Two-Replicas-One-Proxy-1"
    Accounts(settings, credential_store(settings), engine).register(
        "replicas.browser", "replicas@example.org", "Ada", "Test", password, password
    )
    engine.dispose()
    port = free_port()
    with serve(env, tmp_path / "app1.log") as first, serve(env, tmp_path / "app2.log") as second:
        http = compose_http_block(port, {"app1": first, "app2": second}, tmp_path / "static-cache")
        with nginx(tmp_path, http, f"http://127.0.0.1:{port}") as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                page = browser.new_page()
                page.set_default_timeout(TIMEOUT_MS)
                page.goto(url)
                expect(page.get_by_text("Stop overpaying at the pump")).to_be_visible(timeout=TIMEOUT_MS)
                form = page.locator('[data-testid="stMain"] [data-testid="stForm"]')  # the Welcome page's sign-in
                form.locator('input[aria-label="Username"]').fill("replicas.browser")
                form.locator('input[aria-label="Password"]').fill(password)
                form.get_by_role("button", name="Sign in").click()
                sidebar = page.locator('[data-testid="stSidebar"]')
                expect(sidebar.get_by_text("Signed in as replicas.browser")).to_be_visible(timeout=TIMEOUT_MS)
            finally:
                browser.close()
            _the_proxy_keeps_streamlits_static_files_and_sends_them_compressed(url, tmp_path / "static-cache")


def _the_proxy_keeps_streamlits_static_files_and_sends_them_compressed(url: str, cache: Path) -> None:
    with urllib.request.urlopen(url) as answer:
        script = re.search(r'src="\./(static/js/[^"]+\.js)"', answer.read().decode()).group(1)
    assert any(cache.rglob("*")), "the browser's visit filled nginx's cache of static files"
    request = urllib.request.Request(f"{url}/{script}", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request) as answer:
        assert answer.headers["Content-Encoding"] == "gzip"
        assert "immutable" in answer.headers["Cache-Control"], "browsers keep it too"
        assert b"function" in gzip.decompress(answer.read())
