"""The credentials document store: a local YAML file, and an S3 object through moto's server mode.

S3 is a real HTTP server on 127.0.0.1 (moto's `ThreadedMotoServer`), reached by boto3 through
AWS_ENDPOINT_URL exactly as in production; each test gets a fresh bucket. Concurrent writers are
real threads and real processes started together behind a barrier; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import boto3
import pytest
import yaml
from botocore.client import BaseClient
from moto.server import ThreadedMotoServer

from accounts.store import (
    COOKIE_NAME,
    Document,
    LocalCredentialStore,
    S3CredentialStore,
    Snapshot,
    StoreConflict,
    StoreUnavailable,
    credential_store,
    new_document,
)
from conftest import ROOT
from net import free_port, run_together
from settings import Settings, load_settings

REGION = "eu-west-3"
KEY = "credentials.yaml"
WRITERS = 20
PROCESSES = 5
UPDATES_PER_PROCESS = 4

# Each process imports the store, says it is ready, waits for the go line, then adds its users.
PROCESS_SCRIPT = """
import sys
from pathlib import Path
from accounts.store import LocalCredentialStore

path, prefix, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
store = LocalCredentialStore(path)
print("ready", flush=True)
sys.stdin.readline()
for i in range(count):
    name = f"{prefix}-{i}"
    store.update(lambda doc, name=name: doc["credentials"]["usernames"].__setitem__(name, {"email": name}))
"""


class Boom(Exception):
    pass


def user(name: str) -> dict:
    """An entry shaped like the ones streamlit-authenticator's register_user writes."""
    return {
        "email": f"{name}@example.org",
        "first_name": name.capitalize(),
        "last_name": "Test",
        "password": "$2b$12$" + "x" * 53,
        "roles": ["user"],
        "failed_login_attempts": 0,
        "logged_in": False,
    }


def add_user(name: str) -> Callable[[Document], str]:
    def change(document: Document) -> str:
        document["credentials"]["usernames"][name] = user(name)
        return name

    return change


def usernames(snapshot: Snapshot) -> set[str]:
    return set(snapshot.document["credentials"]["usernames"])


# --------------------------------------------------------------------------- document


def test_new_document_is_what_authenticate_is_built_from():
    document = new_document()
    assert document["credentials"] == {"usernames": {}}
    assert document["cookie"]["name"] == COOKIE_NAME
    assert document["cookie"]["expiry_days"] == 30
    assert len(document["cookie"]["key"]) >= 32
    assert new_document()["cookie"]["key"] != document["cookie"]["key"]


# --------------------------------------------------------------------------- local store


@pytest.fixture
def path(sqlite_settings: Settings) -> Path:
    return sqlite_settings.credentials_file


def test_local_first_load_creates_a_private_file_with_a_random_cookie_key(tmp_path, path):
    snapshot = LocalCredentialStore(path).load()

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert yaml.safe_load(path.read_bytes()) == snapshot.document
    assert snapshot.document["credentials"] == {"usernames": {}}
    assert snapshot.document["cookie"]["name"] == COOKIE_NAME
    assert not snapshot.stale
    other = LocalCredentialStore(tmp_path / "elsewhere" / "credentials.yaml").load()
    assert other.document["cookie"]["key"] != snapshot.document["cookie"]["key"]
    assert LocalCredentialStore(path).load() == snapshot, "a second load reuses the file"


def test_local_update_persists_across_store_instances(path):
    store = LocalCredentialStore(path)
    before = store.load()

    assert store.update(add_user("alice")) == "alice"

    after = LocalCredentialStore(path).load()
    assert after.document["credentials"]["usernames"] == {"alice": user("alice")}
    assert after.document["cookie"] == before.document["cookie"]
    assert after.version != before.version
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_local_change_that_raises_writes_nothing(path):
    store = LocalCredentialStore(path)
    store.update(add_user("alice"))
    content = path.read_bytes()
    boom = Boom("refused")

    def change(document: Document) -> None:
        document["credentials"]["usernames"].clear()
        raise boom

    with pytest.raises(Boom) as raised:
        store.update(change)

    assert raised.value is boom
    assert path.read_bytes() == content


def test_local_concurrent_updates_from_threads_are_all_kept(path):
    run_together(WRITERS, lambda i: LocalCredentialStore(path).update(add_user(f"user{i:02d}")))

    assert usernames(LocalCredentialStore(path).load()) == {f"user{i:02d}" for i in range(WRITERS)}
    assert {p.name for p in path.parent.iterdir()} == {path.name, path.name + ".lock"}, "no temp file left"


def test_local_concurrent_updates_from_processes_are_all_kept(path):
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS_SCRIPT, str(path), f"proc{n}", str(UPDATES_PER_PROCESS)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(PROCESSES)
    ]
    try:
        for process in processes:
            assert process.stdout.readline() == "ready\n"
        for process in processes:
            process.stdin.write("go\n")
            process.stdin.flush()
        for process in processes:
            assert process.wait(timeout=30) == 0
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
            process.stdin.close()
            process.stdout.close()

    expected = {f"proc{n}-{i}" for n in range(PROCESSES) for i in range(UPDATES_PER_PROCESS)}
    assert usernames(LocalCredentialStore(path).load()) == expected
    assert {p.name for p in path.parent.iterdir()} == {path.name, path.name + ".lock"}, "no temp file left"


@pytest.mark.parametrize("content", [b"credentials: [unclosed\n", b"- just\n- a list\n", b"\xff\xfe garbage"])
def test_local_corrupt_file_is_reported_and_left_untouched(path, content):
    path.write_bytes(content)
    store = LocalCredentialStore(path)

    with pytest.raises(StoreUnavailable, match="not a valid credentials document") as raised:
        store.load()
    assert str(path) in str(raised.value)
    with pytest.raises(StoreUnavailable):
        store.update(add_user("alice"))

    assert path.read_bytes() == content


def test_local_failed_write_keeps_the_old_file_and_leaves_no_temp_file(path, monkeypatch):
    store = LocalCredentialStore(path)
    store.update(add_user("alice"))
    content = path.read_bytes()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("accounts.store.os.replace", broken_replace)
    with pytest.raises(StoreUnavailable, match="cannot be written: No space left on device"):
        store.update(add_user("bob"))

    assert path.read_bytes() == content
    assert {p.name for p in path.parent.iterdir()} == {path.name, path.name + ".lock"}


def test_local_temp_file_is_private_before_any_data_is_written(path, monkeypatch):
    seen: list[tuple[int, int]] = []
    real_mkstemp = tempfile.mkstemp

    def spying_mkstemp(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        info = os.fstat(fd)
        seen.append((stat.S_IMODE(info.st_mode), info.st_size))
        return fd, name

    monkeypatch.setattr("accounts.store.tempfile.mkstemp", spying_mkstemp)
    LocalCredentialStore(path).update(add_user("alice"))

    assert seen == [(0o600, 0), (0o600, 0)], "one temp file to create the document, one to update it"


def test_local_change_that_breaks_the_document_is_refused(path):
    store = LocalCredentialStore(path)
    store.load()
    content = path.read_bytes()

    with pytest.raises(ValueError, match="cookie section"):
        store.update(lambda document: document.pop("cookie"))

    assert path.read_bytes() == content


# --------------------------------------------------------------------------- S3 store


def start_moto() -> tuple[ThreadedMotoServer, str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return server, f"http://{host}:{port}"


def s3_client() -> BaseClient:
    return boto3.session.Session().client("s3")


def read_object(bucket: str) -> bytes:
    return s3_client().get_object(Bucket=bucket, Key=KEY)["Body"].read()


def create_bucket() -> str:
    name = f"carburoam-test-{uuid.uuid4().hex[:12]}"
    s3_client().create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION})
    return name


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server, endpoint = start_moto()
    yield endpoint
    server.stop()


def aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, tmp_path: Path) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    # Keep the developer's own AWS configuration out of the tests.
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def bucket(moto_endpoint, monkeypatch, tmp_path) -> str:
    aws_env(monkeypatch, moto_endpoint, tmp_path)
    return create_bucket()


def test_s3_first_load_creates_the_object(bucket):
    snapshot = S3CredentialStore(bucket, KEY).load()

    head = s3_client().head_object(Bucket=bucket, Key=KEY)
    assert snapshot.version == head["ETag"]
    assert yaml.safe_load(read_object(bucket)) == snapshot.document
    assert snapshot.document["credentials"] == {"usernames": {}}
    assert snapshot.document["cookie"]["name"] == COOKIE_NAME
    assert not snapshot.stale
    assert S3CredentialStore(bucket, KEY).load() == snapshot, "a second store reads the same object"


def test_s3_update_round_trip(bucket):
    store = S3CredentialStore(bucket, KEY)
    before = store.load()

    assert store.update(add_user("alice")) == "alice"

    after = S3CredentialStore(bucket, KEY).load()
    assert after.document["credentials"]["usernames"] == {"alice": user("alice")}
    assert after.document["cookie"] == before.document["cookie"]
    assert after.version != before.version
    assert store.load() == after


def test_s3_change_that_raises_writes_nothing(bucket):
    store = S3CredentialStore(bucket, KEY)
    store.update(add_user("alice"))
    content = read_object(bucket)

    def change(document: Document) -> None:
        document["credentials"]["usernames"].clear()
        raise Boom("refused")

    with pytest.raises(Boom):
        store.update(change)

    assert read_object(bucket) == content


def test_s3_concurrent_registrations_are_all_kept(bucket):
    calls: list[str] = []

    def register(i: int) -> None:
        name = f"user{i:02d}"

        def change(document: Document) -> None:
            calls.append(name)
            add_user(name)(document)

        S3CredentialStore(bucket, KEY).update(change)

    run_together(WRITERS, register)

    final = yaml.safe_load(read_object(bucket))
    assert set(final["credentials"]["usernames"]) == {f"user{i:02d}" for i in range(WRITERS)}
    assert len(calls) > WRITERS, "the writers collided, and the losers re-applied their change"


def test_s3_write_between_read_and_write_is_retried(bucket):
    store, other = S3CredentialStore(bucket, KEY), S3CredentialStore(bucket, KEY)
    seen: list[set[str]] = []

    def change(document: Document) -> str:
        seen.append(set(document["credentials"]["usernames"]))
        if len(seen) == 1:
            other.update(add_user("bob"))  # lands after `store` read the document, before it writes
        return add_user("alice")(document)

    assert store.update(change) == "alice"

    assert seen == [set(), {"bob"}], "the change was re-applied to the document holding bob"
    assert usernames(S3CredentialStore(bucket, KEY).load()) == {"alice", "bob"}


def test_s3_object_deleted_between_read_and_write_is_recreated(bucket):
    store = S3CredentialStore(bucket, KEY)
    store.update(add_user("alice"))
    calls = 0

    def change(document: Document) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            s3_client().delete_object(Bucket=bucket, Key=KEY)
        return add_user("bob")(document)

    assert store.update(change) == "bob"

    assert calls == 2
    assert usernames(S3CredentialStore(bucket, KEY).load()) == {"bob"}


def test_s3_gives_up_after_bounded_conflicts_without_writing(bucket):
    store, other = S3CredentialStore(bucket, KEY, attempts=3), S3CredentialStore(bucket, KEY)
    calls = 0

    def change(document: Document) -> None:
        nonlocal calls
        calls += 1
        other.update(add_user(f"rival{calls}"))
        add_user("alice")(document)

    with pytest.raises(StoreConflict):
        store.update(change)

    assert calls == 3
    assert usernames(S3CredentialStore(bucket, KEY).load()) == {"rival1", "rival2", "rival3"}


def test_s3_outage_serves_the_last_good_copy_and_overwrites_nothing(monkeypatch, tmp_path):
    server, endpoint = start_moto()  # its own server, so that stopping it disturbs no other test
    try:
        aws_env(monkeypatch, endpoint, tmp_path)
        bucket = create_bucket()
        store = S3CredentialStore(bucket, KEY)
        store.update(add_user("alice"))
        good = store.load()
        content = read_object(bucket)
    finally:
        server.stop()

    with pytest.raises(StoreUnavailable, match="account service is unreachable right now") as raised:
        store.update(add_user("bob"))
    assert "cannot be reached" in str(raised.value)
    stale = store.load()
    assert stale.stale
    assert stale.document == good.document
    assert stale.version == good.version
    stale.document["credentials"]["usernames"].clear()
    assert usernames(store.load()) == {"alice"}, "callers cannot spoil the remembered copy"
    with pytest.raises(StoreUnavailable):
        S3CredentialStore(bucket, KEY).load()  # a store that never read anything has no copy to offer

    # Back up: moto keeps its state per process, so a new server on another port serves the same bucket.
    server, endpoint = start_moto()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        assert read_object(bucket) == content, "the outage overwrote nothing"
        assert S3CredentialStore(bucket, KEY).load() == good
    finally:
        server.stop()


def test_s3_unreachable_endpoint_without_a_copy_is_reported(monkeypatch, tmp_path):
    aws_env(monkeypatch, f"http://127.0.0.1:{free_port()}", tmp_path)
    store = S3CredentialStore("carburoam-test-nowhere", KEY)

    with pytest.raises(StoreUnavailable, match="account service is unreachable right now"):
        store.load()
    with pytest.raises(StoreUnavailable, match="account service is unreachable right now"):
        store.update(add_user("alice"))


def test_s3_missing_bucket_is_reported_clearly(moto_endpoint, monkeypatch, tmp_path):
    aws_env(monkeypatch, moto_endpoint, tmp_path)
    store = S3CredentialStore("carburoam-test-missing", KEY)

    with pytest.raises(StoreUnavailable, match="bucket 'carburoam-test-missing' does not exist"):
        store.load()
    with pytest.raises(StoreUnavailable, match="does not exist"):
        store.update(add_user("alice"))


def test_s3_corrupt_object_is_reported_and_left_untouched(bucket):
    s3_client().put_object(Bucket=bucket, Key=KEY, Body=b"credentials: [unclosed\n")

    with pytest.raises(StoreUnavailable, match="not a valid credentials document"):
        S3CredentialStore(bucket, KEY).update(add_user("alice"))

    assert read_object(bucket) == b"credentials: [unclosed\n"


# --------------------------------------------------------------------------- factory


def test_factory_picks_the_local_store_by_default_and_creates_nothing(sqlite_settings):
    store = credential_store(sqlite_settings)

    assert isinstance(store, LocalCredentialStore)
    assert store.path == sqlite_settings.credentials_file
    assert not store.path.exists()


def test_factory_picks_the_s3_store_in_remote_mode(sqlite_settings, monkeypatch):
    monkeypatch.setenv("LOAD_MODE", "remote")
    monkeypatch.setenv("BUCKET_NAME_STORE", "carburoam-prod")
    monkeypatch.setenv("CREDENTIALS_OBJECT_KEY", "auth/credentials.yaml")

    store = credential_store(load_settings())

    assert isinstance(store, S3CredentialStore)
    assert (store.bucket, store.key) == ("carburoam-prod", "auth/credentials.yaml")
