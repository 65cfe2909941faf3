"""Accounts as people use them: register, sign in, get throttled, change and recover passwords, leave.

Credentials live in a real local credentials file (per test); the database is SQLite and, when a
server answers, PostgreSQL. Mail goes to the console backend (.eml files) or to a real aiosmtpd
server on 127.0.0.1. Time is passed explicitly (`now=`), so expiry and throttling need no sleeps.
bcrypt runs at its lowest cost here, only to keep the suite fast.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import email
import email.policy
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage

import bcrypt
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import Engine, String, cast, column, func, select, table
from sqlalchemy.exc import OperationalError
from streamlit_authenticator.utilities import Hasher

import auth
from auth import (
    CODE_REFUSED,
    EMAIL_INVALID,
    EMAIL_TAKEN,
    PASSWORD_BLANK,
    PASSWORD_LONG,
    PASSWORD_SHORT,
    PASSWORD_TOO_MANY_BYTES,
    PASSWORDS_DIFFER,
    USERNAME_RULE,
    USERNAME_TAKEN,
    WRONG_CREDENTIALS,
    Account,
    Accounts,
    AccountValidator,
    CodeRefused,
    RegistrationRefused,
    SignInThrottled,
    WrongPassword,
    check_email,
    check_password_policy,
    check_username,
    cookie_is_current,
)
from conftest import ROOT
from credentials import LocalCredentialStore, StoreUnavailable
from mailer import USER_MESSAGE, MailError
from models import Base, CustomStation, Station, User, UserGasType, VerificationCode
from net import free_port, run_together
from session import session_factory
from settings import Settings

UTC = dt.UTC
T0 = dt.datetime(2030, 3, 1, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple and stable 42"
DEFAULT_FUELS = {1, 2, 5}
THROTTLED = re.compile(r"Too many attempts\. Try again in \d+ minutes?\.")
CODE = re.compile(r"\b(\d{8})\b")


# --------------------------------------------------------------------------- fixtures and helpers


@pytest.fixture(autouse=True)
def cheap_bcrypt(monkeypatch: pytest.MonkeyPatch) -> None:
    """bcrypt at cost 4 instead of 12: the same code paths, a fraction of the time."""
    real = bcrypt.gensalt
    monkeypatch.setattr(bcrypt, "gensalt", lambda rounds=12, prefix=b"2b": real(4, prefix))


@pytest.fixture
def console_settings(settings: Settings) -> Settings:
    """The test's settings with mail going to .eml files under settings.mail_dir."""
    return dataclasses.replace(settings, smtp_host="")


@pytest.fixture
def store(console_settings: Settings) -> LocalCredentialStore:
    return LocalCredentialStore(console_settings.credentials_file)


@pytest.fixture
def accounts(console_settings: Settings, store: LocalCredentialStore, engine: Engine) -> Accounts:
    return Accounts(console_settings, store, engine)


def register(accounts: Accounts, username: str, mail: str | None = None, password: str = PASSWORD) -> Account:
    return accounts.register(
        username, mail or f"{username}@example.org", username.capitalize(), "Martin", password, password, now=T0
    )


def entries(store: LocalCredentialStore) -> dict[str, dict]:
    return store.load().document["credentials"]["usernames"]


def mails(settings: Settings) -> list[EmailMessage]:
    if not settings.mail_dir.exists():
        return []
    return [
        email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        for path in sorted(settings.mail_dir.glob("*.eml"))
    ]


def code_in(message: EmailMessage) -> str:
    return CODE.search(message.get_content()).group(1)


def last_code(settings: Settings) -> str:
    return code_in(mails(settings)[-1])


def rows_of(engine: Engine, user_id: int) -> dict[str, int]:
    """Rows referring to this user in every table that has a user_id column, and in users."""
    counts = {}
    with engine.connect() as conn:
        for name, tbl in Base.metadata.tables.items():
            key = tbl.c.id if name == "users" else tbl.c.get("user_id")
            if key is not None:
                counts[name] = conn.scalar(select(func.count()).select_from(tbl).where(key == user_id))
    return counts


def fuels_of(engine: Engine, user_id: int) -> set[int]:
    with engine.connect() as conn:
        return set(conn.scalars(select(UserGasType.gastype_id).where(UserGasType.user_id == user_id)))


def user_row(engine: Engine, username: str) -> User | None:
    with session_factory(engine)() as session:
        return session.scalar(select(User).where(User.username == username))


def add_stations(engine: Engine, *station_ids: int) -> None:
    with session_factory(engine).begin() as session:
        session.add_all(
            Station(id=i, zip_code="75001", town="Paris", address=f"{i} rue de Rivoli", last_seen_at=T0)
            for i in station_ids
        )


def follow(engine: Engine, user_id: int, *station_ids: int) -> None:
    with session_factory(engine).begin() as session:
        session.add_all(CustomStation(user_id=user_id, station_id=i, custom_name=f"Station {i}") for i in station_ids)


def live_codes(engine: Engine, user_id: int) -> int:
    with engine.connect() as conn:
        return conn.scalar(
            select(func.count()).where(VerificationCode.user_id == user_id, VerificationCode.used_at.is_(None))
        )


class Inbox:
    """An aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.received: list[EmailMessage] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.received.append(email.message_from_bytes(envelope.original_content, policy=email.policy.default))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_inbox() -> Iterator[tuple[int, Inbox]]:
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, server_hostname="mail.test")
    controller.start()
    yield port, inbox
    controller.stop()


# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    ("check", "value", "message"),
    [
        (check_username, "ab", USERNAME_RULE),
        (check_username, "a" * 33, USERNAME_RULE),
        (check_username, "Alice", USERNAME_RULE),
        (check_username, "al ice", USERNAME_RULE),
        (check_username, "alice/../x", USERNAME_RULE),
        (check_username, "élodie", USERNAME_RULE),
        (check_email, "alice", EMAIL_INVALID),
        (check_email, "alice@", EMAIL_INVALID),
        (check_email, "alice@localhost", EMAIL_INVALID),
        (check_email, "al ice@example.org", EMAIL_INVALID),
        (check_email, "alice@example.org\nBcc: all@example.org", EMAIL_INVALID),
        (check_email, "a" * 65 + "@example.org", EMAIL_INVALID),
        (check_password_policy, "", PASSWORD_BLANK),
        (check_password_policy, " " * 12, PASSWORD_BLANK),
        (check_password_policy, "nine char", PASSWORD_SHORT),
        (check_password_policy, "x" * 65, PASSWORD_LONG),
        (check_password_policy, "é" * 40, PASSWORD_TOO_MANY_BYTES),  # 40 characters, 80 bytes
    ],
)
def test_each_rule_refuses_with_its_own_message(check, value, message):
    with pytest.raises(RegistrationRefused) as refused:
        check(value)
    assert str(refused.value) == message


def test_good_values_pass_and_come_back_normalised():
    assert check_username("jean-luc.p_2") == "jean-luc.p_2"
    assert check_email("  Alice.Martin+fuel@Example.ORG ") == "alice.martin+fuel@example.org"
    assert check_password_policy("x" * 10) == "x" * 10
    assert check_password_policy("x" * 64) == "x" * 64
    assert check_password_policy("é" * 36) == "é" * 36  # exactly 72 bytes
    assert check_password_policy("  inner spaces ok  ") == "inner spaces ok"


def test_the_library_validator_applies_the_same_rules():
    validator = AccountValidator()
    assert validator.validate_username("alice") and not validator.validate_username("Al")
    assert validator.validate_email("alice@example.org") and not validator.validate_email("alice@")
    assert validator.validate_name("Élodie") and not validator.validate_name("   ")
    assert validator.validate_password(PASSWORD) and not validator.validate_password("short")
    assert validator.diagnose_password("short") == PASSWORD_SHORT
    assert validator.diagnose_password("é" * 40) == PASSWORD_TOO_MANY_BYTES
    assert validator.validate_length("x", 1)  # the library's own checks are kept


# --------------------------------------------------------------------------- registration


def test_registration_refuses_each_broken_rule_and_writes_nothing(accounts, store, engine):
    good = {
        "username": "alice",
        "email": "alice@example.org",
        "first_name": "Alice",
        "last_name": "Martin",
        "password": PASSWORD,
        "repeat": PASSWORD,
    }
    cases = [
        ({"username": "al"}, USERNAME_RULE),
        ({"username": "alice!"}, USERNAME_RULE),
        ({"email": "alice@example"}, EMAIL_INVALID),
        ({"first_name": "  "}, "Please enter your first name."),
        ({"last_name": "x" * 51}, "A last name has at most 50 characters."),
        ({"password": "short", "repeat": "short"}, PASSWORD_SHORT),
        ({"password": " " * 12, "repeat": " " * 12}, PASSWORD_BLANK),
        ({"repeat": PASSWORD + "!"}, PASSWORDS_DIFFER),
    ]
    for change, message in cases:
        with pytest.raises(RegistrationRefused) as refused:
            accounts.register(**(good | change), now=T0)
        assert str(refused.value) == message, change

    assert entries(store) == {}
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(User)) == 0


def test_registration_writes_the_library_entry_the_users_row_and_default_fuels(accounts, store, engine):
    account = accounts.register("  Alice ", "Alice@Example.org", " Alice ", "Martin", PASSWORD, PASSWORD, now=T0)

    entry = entries(store)["alice"]
    assert Hasher.is_hash(entry["password"]) and Hasher.check_pw(PASSWORD, entry["password"])
    assert entry == {
        "email": "alice@example.org",
        "first_name": "Alice",
        "last_name": "Martin",
        "password": entry["password"],
        "roles": ["user"],
        "failed_login_attempts": 0,
        "logged_in": False,
        "credential_version": 1,
        "credentials_changed_at": T0.timestamp(),
    }
    row = user_row(engine, "alice")
    assert (row.email, row.name, row.role, row.created_at) == ("alice@example.org", "Alice Martin", "user", T0)
    assert account == Account("alice", "alice@example.org", "Alice", "Martin", "Alice Martin", "user", 1, row.id)
    assert fuels_of(engine, row.id) == DEFAULT_FUELS
    assert PASSWORD not in store.path.read_text()


def test_taken_usernames_and_emails_are_refused_whatever_their_case(accounts, store, engine):
    register(accounts, "alice")

    for username, mail, message in [
        ("alice", "other@example.org", USERNAME_TAKEN),
        ("ALICE", "other@example.org", USERNAME_TAKEN),
        ("alice2", "ALICE@Example.ORG", EMAIL_TAKEN),
    ]:
        with pytest.raises(RegistrationRefused) as refused:
            register(accounts, username, mail)
        assert str(refused.value) == message

    # An address held only by a users row (no credentials entry) is taken too.
    with session_factory(engine).begin() as session:
        session.add(User(username="legacy", email="legacy@example.org", name="Legacy", role="user", created_at=T0))
    with pytest.raises(RegistrationRefused, match=EMAIL_TAKEN):
        register(accounts, "newcomer", "Legacy@example.org")
    assert set(entries(store)) == {"alice"}


def test_twenty_concurrent_registrations_are_all_kept(console_settings, engine):
    names = [f"user{i:02d}" for i in range(20)]

    def sign_up(i: int) -> None:
        own = Accounts(console_settings, LocalCredentialStore(console_settings.credentials_file), engine)
        register(own, names[i])

    run_together(len(names), sign_up)

    assert set(entries(LocalCredentialStore(console_settings.credentials_file))) == set(names)
    with session_factory(engine)() as session:
        users = {user.username: user.id for user in session.scalars(select(User))}
    assert set(users) == set(names)
    assert all(fuels_of(engine, user_id) == DEFAULT_FUELS for user_id in users.values())


def test_a_database_failure_after_the_document_write_leaves_no_half_account(accounts, store, engine, monkeypatch):
    failure = OperationalError("INSERT INTO user_gastypes", {}, Exception("disk I/O error"))

    def broken(session, user_id):
        raise failure

    monkeypatch.setattr(auth, "follow_default_fuels", broken)
    with pytest.raises(OperationalError) as raised:
        register(accounts, "alice")
    assert raised.value is failure
    assert entries(store) == {}
    assert user_row(engine, "alice") is None

    monkeypatch.undo()
    assert register(accounts, "alice").username == "alice"


def test_store_errors_pass_through_unchanged_and_nothing_is_written(accounts, store, engine):
    store.path.parent.mkdir(parents=True, exist_ok=True)
    store.path.write_text("credentials: [not, a, mapping\n")
    content = store.path.read_bytes()

    with pytest.raises(StoreUnavailable):
        register(accounts, "alice")
    with pytest.raises(StoreUnavailable):
        accounts.sign_in("alice", PASSWORD, T0)

    assert store.path.read_bytes() == content
    assert user_row(engine, "alice") is None


def test_adopting_an_entry_from_the_library_widget_goes_through_the_same_checks(accounts, store, engine):
    # What streamlit-authenticator's register_user puts in its in-memory copy of the document.
    widget_entry = {
        "email": "Bob@Example.org",
        "logged_in": False,
        "first_name": "Bob",
        "last_name": "Martin",
        "password": Hasher.hash(PASSWORD),
        "roles": ["admin"],  # whatever the page passed, a new account is a user
    }

    account = accounts.adopt_registration("bob", widget_entry, now=T0)

    assert (account.username, account.email, account.role, account.credential_version) == (
        "bob",
        "bob@example.org",
        "user",
        1,
    )
    assert entries(store)["bob"]["roles"] == ["user"]
    assert fuels_of(engine, account.user_id) == DEFAULT_FUELS
    assert accounts.sign_in("bob", PASSWORD, T0).user_id == account.user_id
    with pytest.raises(RegistrationRefused, match=USERNAME_TAKEN):
        accounts.adopt_registration("bob", widget_entry | {"email": "bob2@example.org"}, now=T0)
    with pytest.raises(RegistrationRefused, match=EMAIL_TAKEN):
        accounts.adopt_registration("bobby", widget_entry, now=T0)
    with pytest.raises(RegistrationRefused, match="no usable password"):
        accounts.adopt_registration("carol", widget_entry | {"email": "c@example.org", "password": PASSWORD}, now=T0)
    assert set(entries(store)) == {"bob"}


# --------------------------------------------------------------------------- users rows


def test_users_rows_follow_the_document(accounts, store, engine):
    def add_by_hand(document):  # an entry written by the library alone, without our fields
        document["credentials"]["usernames"]["dora"] = {
            "email": "Dora@example.org",
            "first_name": "Dora",
            "last_name": "Explorer",
            "password": Hasher.hash(PASSWORD),
            "roles": ["user"],
            "failed_login_attempts": 0,
            "logged_in": False,
        }

    store.update(add_by_hand)
    dora = accounts.ensure_user_row("dora", now=T0)
    assert (dora.email, dora.name, dora.credential_version) == ("dora@example.org", "Dora Explorer", 1)
    assert fuels_of(engine, dora.user_id) == DEFAULT_FUELS

    store.update(lambda document: document["credentials"]["usernames"]["dora"].update(email="dora@new.example.org"))
    assert accounts.ensure_user_row("dora").user_id == dora.user_id
    assert user_row(engine, "dora").email == "dora@new.example.org"

    with session_factory(engine).begin() as session:  # a row whose account is gone, with data
        ghost = User(username="ghost", email="ghost@example.org", name="Ghost", role="user", created_at=T0)
        session.add(ghost)
        session.flush()
        session.add(UserGasType(user_id=ghost.id, gastype_id=1))
    store.update(lambda document: document["credentials"]["usernames"]["dora"].update(last_name="Explora"))
    alice = register(accounts, "alice")
    with session_factory(engine).begin() as session:  # lose alice's row
        session.execute(UserGasType.__table__.delete().where(UserGasType.user_id == alice.user_id))
        session.execute(User.__table__.delete().where(User.id == alice.user_id))

    result = accounts.sync_all(now=T0)

    assert (result.created, result.updated, result.deleted) == (1, 1, 1)
    assert user_row(engine, "ghost") is None
    with session_factory(engine)() as session:  # (ghost's id may be reused by alice's new row)
        users = dict(session.execute(select(User.id, User.username)).all())
        followed = session.execute(select(UserGasType.user_id, UserGasType.gastype_id)).all()
    assert sorted(users.values()) == ["alice", "dora"]
    assert sorted(followed) == sorted((user_id, fuel) for user_id in users for fuel in DEFAULT_FUELS)
    assert user_row(engine, "dora").name == "Dora Explora"
    assert fuels_of(engine, user_row(engine, "alice").id) == DEFAULT_FUELS
    assert accounts.account("nobody") is None
    assert accounts.credential_version("nobody") is None


# --------------------------------------------------------------------------- sign-in and throttling


def test_sign_in_returns_the_account(accounts):
    alice = accounts.register("alice", "alice@example.org", "Alice", "Martin", f"  {PASSWORD} ", PASSWORD, now=T0)

    assert accounts.sign_in("alice", PASSWORD, T0) == alice
    assert accounts.sign_in(" Alice ", f" {PASSWORD}", T0) == alice  # as the library's widgets clean them
    with pytest.raises(WrongPassword) as wrong:
        accounts.sign_in("alice", PASSWORD.upper(), T0)
    assert str(wrong.value) == WRONG_CREDENTIALS


def test_five_failures_are_free_then_each_failure_imposes_a_longer_wait(accounts, store):
    register(accounts, "alice")
    now = T0
    for _ in range(5):
        with pytest.raises(WrongPassword):
            accounts.sign_in("alice", "wrong password", now)

    waits = []
    for _ in range(9):
        with pytest.raises(SignInThrottled) as throttled:
            accounts.sign_in("alice", PASSWORD, now)  # even the right password waits
        assert THROTTLED.fullmatch(str(throttled.value))
        waits.append(throttled.value.wait_seconds)
        now += dt.timedelta(seconds=throttled.value.wait_seconds)
        with pytest.raises(WrongPassword):
            accounts.sign_in("alice", "wrong password", now)
    assert waits == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert str(SignInThrottled(30)) == "Too many attempts. Try again in 1 minute."
    assert str(SignInThrottled(3600)) == "Too many attempts. Try again in 60 minutes."

    now += dt.timedelta(seconds=3600)
    assert accounts.sign_in("alice", PASSWORD, now).username == "alice"
    entry = entries(store)["alice"]
    assert entry["failed_login_attempts"] == 0 and "not_before" not in entry
    for _ in range(4):  # a success starts the count again: four more failures are still free
        with pytest.raises(WrongPassword):
            accounts.sign_in("alice", "wrong password", now)
    assert accounts.sign_in("alice", PASSWORD, now).username == "alice"


def test_unknown_names_get_exactly_the_answers_known_ones_get(accounts, store):
    register(accounts, "alice")
    before = store.path.read_bytes()

    def answers(username: str) -> list[tuple[type, str]]:
        seen = []
        for attempt in range(8):
            with pytest.raises((WrongPassword, SignInThrottled)) as refused:
                accounts.sign_in(username, "wrong password", T0 + dt.timedelta(seconds=attempt))
            seen.append((type(refused.value), str(refused.value)))
        return seen

    assert answers("alice") == answers("mallory")
    assert answers("alice")[-1][0] is SignInThrottled
    assert "mallory" not in store.path.read_text(), "names typed by strangers never reach the document"
    assert store.path.read_bytes() != before  # alice's failures did


def test_throttling_survives_a_restart(console_settings, accounts, engine):
    register(accounts, "alice")
    for _ in range(5):
        with pytest.raises(WrongPassword):
            accounts.sign_in("alice", "wrong password", T0)

    restarted = Accounts(console_settings, LocalCredentialStore(console_settings.credentials_file), engine)

    with pytest.raises(SignInThrottled) as throttled:
        restarted.sign_in("alice", PASSWORD, T0 + dt.timedelta(seconds=10))
    assert throttled.value.wait_seconds == 20
    assert restarted.sign_in("alice", PASSWORD, T0 + dt.timedelta(seconds=30)).username == "alice"


# --------------------------------------------------------------------------- credentials


def test_changing_the_password_needs_the_current_one_and_bumps_the_version(accounts, store):
    register(accounts, "alice")

    with pytest.raises(WrongPassword):
        accounts.change_password("alice", "not my password", NEW_PASSWORD, NEW_PASSWORD, T0)
    with pytest.raises(RegistrationRefused, match=PASSWORDS_DIFFER):
        accounts.change_password("alice", PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x", T0)
    with pytest.raises(RegistrationRefused, match=PASSWORD_SHORT):
        accounts.change_password("alice", PASSWORD, "short", "short", T0)
    with pytest.raises(RegistrationRefused, match="must be different"):
        accounts.change_password("alice", PASSWORD, PASSWORD, PASSWORD, T0)
    assert accounts.credential_version("alice") == 1

    changed_at = T0 + dt.timedelta(minutes=5)
    account = accounts.change_password("alice", PASSWORD, NEW_PASSWORD, NEW_PASSWORD, changed_at)

    assert account.credential_version == 2 == accounts.credential_version("alice")
    assert entries(store)["alice"]["credentials_changed_at"] == changed_at.timestamp()
    with pytest.raises(WrongPassword):
        accounts.sign_in("alice", PASSWORD, changed_at)
    assert accounts.sign_in("alice", NEW_PASSWORD, changed_at).credential_version == 2


def test_cookies_issued_before_a_password_change_stop_working(accounts, store):
    register(accounts, "alice")
    days = store.load().document["cookie"]["expiry_days"]

    def cookie_expiry(issued: dt.datetime) -> float:  # as streamlit-authenticator computes exp_date
        return (issued + dt.timedelta(days=days)).timestamp()

    old_cookie = cookie_expiry(T0 + dt.timedelta(minutes=1))
    assert cookie_is_current(store.load().document, "alice", old_cookie, days)
    assert not cookie_is_current(store.load().document, "alice", cookie_expiry(T0 - dt.timedelta(days=1)), days)

    accounts.change_password("alice", PASSWORD, NEW_PASSWORD, NEW_PASSWORD, T0 + dt.timedelta(minutes=2))

    document = store.load().document
    assert not accounts.cookie_is_current(document, "alice", old_cookie, days)
    assert accounts.cookie_is_current(document, "alice", cookie_expiry(T0 + dt.timedelta(minutes=3)), days)
    assert not cookie_is_current(document, "mallory", cookie_expiry(T0 + dt.timedelta(minutes=3)), days)
    del document["credentials"]["usernames"]["alice"]["credentials_changed_at"]  # an entry made by the library
    assert cookie_is_current(document, "alice", old_cookie, days)


def test_update_details_keeps_emails_unique_and_the_row_in_step(accounts, store, engine):
    register(accounts, "alice")
    register(accounts, "bob")

    with pytest.raises(RegistrationRefused, match=EMAIL_TAKEN):
        accounts.update_details("alice", "Alice", "Martin", "BOB@example.org")
    with pytest.raises(RegistrationRefused, match=EMAIL_INVALID):
        accounts.update_details("alice", "Alice", "Martin", "bob@")
    assert entries(store)["alice"]["email"] == "alice@example.org"

    same = accounts.update_details("alice", "Alice", "Martin", "ALICE@example.org")
    assert same.email == "alice@example.org"
    account = accounts.update_details("alice", "Alicia", "Durand", "Alicia.Durand@Example.org")

    assert (account.name, account.email) == ("Alicia Durand", "alicia.durand@example.org")
    entry = entries(store)["alice"]
    assert (entry["first_name"], entry["last_name"], entry["email"]) == (
        "Alicia",
        "Durand",
        "alicia.durand@example.org",
    )
    row = user_row(engine, "alice")
    assert (row.id, row.name, row.email) == (account.user_id, "Alicia Durand", "alicia.durand@example.org")
    with pytest.raises(RegistrationRefused, match=EMAIL_TAKEN):  # the old address is free again; the new one is not
        register(accounts, "carol", "alicia.durand@example.org")
    register(accounts, "carol", "alice@example.org")


# --------------------------------------------------------------------------- deletion


def test_deleting_an_account_leaves_zero_rows_of_it_in_every_table(accounts, store, engine):
    alice, bob = register(accounts, "alice"), register(accounts, "bob")
    add_stations(engine, 101, 102)
    follow(engine, alice.user_id, 101, 102)
    follow(engine, bob.user_id, 101)
    accounts.request_password_reset("alice", T0)
    assert all(rows_of(engine, alice.user_id).values())  # something in every table to delete
    bob_rows = rows_of(engine, bob.user_id)

    with pytest.raises(WrongPassword):
        accounts.delete_account("alice", "not my password", T0)
    assert all(rows_of(engine, alice.user_id).values()) and "alice" in entries(store)

    accounts.delete_account("alice", PASSWORD, T0)

    assert set(rows_of(engine, alice.user_id).values()) == {0}
    assert user_row(engine, "alice") is None
    assert "alice" not in entries(store)
    assert rows_of(engine, bob.user_id) == bob_rows
    with pytest.raises(WrongPassword):
        accounts.sign_in("alice", PASSWORD, T0)
    again = register(accounts, "alice")  # the name is free again, with nothing of the old account
    assert rows_of(engine, again.user_id) == {
        "users": 1,
        "user_gastypes": 3,
        "custom_stations": 0,
        "verification_codes": 0,
    }


def test_a_deletion_the_document_refuses_changes_nothing(accounts, store, engine, monkeypatch):
    alice = register(accounts, "alice")
    add_stations(engine, 101)
    follow(engine, alice.user_id, 101)
    before = rows_of(engine, alice.user_id)
    outage = StoreUnavailable("The account service is unreachable right now. Please try again later.")

    def unavailable(change):
        raise outage

    monkeypatch.setattr(store, "update", unavailable)
    with pytest.raises(StoreUnavailable) as raised:
        accounts.delete_account("alice", PASSWORD, T0)
    assert raised.value is outage

    monkeypatch.undo()
    assert rows_of(engine, alice.user_id) == before
    assert "alice" in entries(store)
    accounts.delete_account("alice", PASSWORD, T0)  # and it can be deleted once the store is back
    assert set(rows_of(engine, alice.user_id).values()) == {0}


# --------------------------------------------------------------------------- admins


def test_create_admin_creates_a_new_admin_and_promotes_an_existing_user(accounts, store, engine):
    admin = accounts.create_admin("root", "Root@Example.org", PASSWORD, now=T0)
    assert (admin.role, entries(store)["root"]["roles"], user_row(engine, "root").role) == (
        "admin",
        ["user", "admin"],
        "admin",
    )
    assert accounts.sign_in("root", PASSWORD, T0).role == "admin"

    register(accounts, "bob")
    assert accounts.create_admin("bob", "BOB@example.org").role == "admin"
    assert user_row(engine, "bob").role == "admin"
    assert accounts.sign_in("bob", PASSWORD, T0).role == "admin"  # promotion keeps the password
    assert accounts.create_admin("bob", "bob@example.org").role == "admin"  # idempotent
    assert entries(store)["bob"]["roles"] == ["user", "admin"]

    with pytest.raises(RegistrationRefused, match="another e-mail"):
        accounts.create_admin("bob", "someone@example.org")
    with pytest.raises(RegistrationRefused, match="needs a password"):
        accounts.create_admin("carol", "carol@example.org")
    with pytest.raises(RegistrationRefused, match=PASSWORD_SHORT):
        accounts.create_admin("carol", "carol@example.org", "short")


def run_cli(settings: Settings, *args: str, password: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **settings.environ()}
    env.pop(auth.ADMIN_PASSWORD_ENV, None)
    if password is not None:
        env[auth.ADMIN_PASSWORD_ENV] = password
    return subprocess.run(
        [sys.executable, "auth.py", *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # no controlling terminal: getpass reads the (empty) stdin
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_create_admin_command_line(console_settings, accounts, engine):
    created = run_cli(
        console_settings, "create-admin", "--username", "root", "--email", "Root@example.org", password=PASSWORD
    )

    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines() == ["Created the admin account root (root@example.org)."]
    assert accounts.sign_in("root", PASSWORD, T0).role == "admin"
    assert user_row(engine, "root").role == "admin"

    register(accounts, "bob")
    promoted = run_cli(console_settings, "create-admin", "--username", "bob", "--email", "bob@example.org")
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout.splitlines() == ["bob is now an admin."]

    for args, password, message in [
        (("--username", "No Good", "--email", "x@example.org"), PASSWORD, USERNAME_RULE),
        (("--username", "carol", "--email", "carol@"), PASSWORD, EMAIL_INVALID),
        (("--username", "carol", "--email", "carol@example.org"), "short", PASSWORD_SHORT),
        (("--username", "carol", "--email", "carol@example.org"), None, "no password was given."),
    ]:
        refused = run_cli(console_settings, "create-admin", *args, password=password)
        assert refused.returncode != 0
        assert refused.stdout == ""
        assert refused.stderr.splitlines()[-1] == f"create-admin: {message}"
    assert accounts.account("carol") is None


# --------------------------------------------------------------------------- recovery


def test_password_recovery_end_to_end_with_the_code_from_the_mail(console_settings, accounts, store):
    register(accounts, "alice")

    assert accounts.request_password_reset("ALICE@example.org", T0) is None

    [message] = mails(console_settings)
    assert message["To"] == "alice@example.org"
    code = code_in(message)
    assert PASSWORD not in message.get_content()
    account = accounts.reset_password("alice", code, NEW_PASSWORD, NEW_PASSWORD, T0 + dt.timedelta(minutes=9))
    assert account.credential_version == 2
    assert accounts.sign_in("alice", NEW_PASSWORD, T0 + dt.timedelta(minutes=9)).username == "alice"
    with pytest.raises(WrongPassword):
        accounts.sign_in("alice", PASSWORD, T0 + dt.timedelta(minutes=9))
    with pytest.raises(CodeRefused, match=re.escape(CODE_REFUSED)):  # single use
        accounts.reset_password("alice", code, PASSWORD, PASSWORD, T0 + dt.timedelta(minutes=9))
    assert len(mails(console_settings)) == 1, "no password is ever mailed"


def test_password_recovery_through_a_real_smtp_server(console_settings, store, engine, smtp_inbox):
    port, inbox = smtp_inbox
    smtp = dataclasses.replace(console_settings, smtp_host="127.0.0.1", smtp_port=port, smtp_security="none")
    accounts = Accounts(smtp, store, engine)
    register(accounts, "alice")

    accounts.request_password_reset("alice", T0)

    [message] = inbox.received
    assert message["To"] == "alice@example.org"
    code = code_in(message)
    accounts.reset_password("alice", code, NEW_PASSWORD, NEW_PASSWORD, T0 + dt.timedelta(minutes=1))
    assert accounts.sign_in("alice", NEW_PASSWORD, T0).username == "alice"
    with pytest.raises(WrongPassword):
        accounts.sign_in("alice", PASSWORD, T0)
    assert mails(console_settings) == []


def test_wrong_expired_and_other_peoples_codes_are_refused(console_settings, accounts):
    register(accounts, "alice")
    register(accounts, "bob")
    accounts.request_password_reset("alice", T0)
    alice_code = last_code(console_settings)
    accounts.request_password_reset("bob", T0)
    bob_code = last_code(console_settings)
    wrong = f"{(int(alice_code) + 1) % 10**8:08d}"

    for who, code, when in [
        ("alice", wrong, T0),
        ("alice", bob_code, T0),  # bob's code is bound to bob
        ("alice", alice_code, T0 + dt.timedelta(minutes=10)),  # expired
        ("bob", alice_code, T0),
        ("nobody", alice_code, T0),
        ("nobody@example.org", alice_code, T0),
    ]:
        with pytest.raises(CodeRefused) as refused:
            accounts.reset_password(who, code, NEW_PASSWORD, NEW_PASSWORD, when)
        assert str(refused.value) == CODE_REFUSED

    accounts.reset_password("alice", f" {alice_code[:4]} {alice_code[4:]} ", NEW_PASSWORD, NEW_PASSWORD, T0)
    accounts.reset_password("bob", bob_code, NEW_PASSWORD, NEW_PASSWORD, T0)


def test_five_wrong_tries_burn_the_code_so_the_sixth_fails_even_when_right(console_settings, accounts):
    register(accounts, "alice")
    register(accounts, "bob")
    accounts.request_password_reset("alice", T0)
    alice_code = last_code(console_settings)
    accounts.request_password_reset("bob", T0)
    bob_code = last_code(console_settings)

    for attempt in range(5):
        with pytest.raises(CodeRefused):
            accounts.reset_password("alice", f"{attempt:08d}", NEW_PASSWORD, NEW_PASSWORD, T0)
    with pytest.raises(CodeRefused):
        accounts.reset_password("alice", alice_code, NEW_PASSWORD, NEW_PASSWORD, T0)
    assert accounts.sign_in("alice", PASSWORD, T0).username == "alice"

    for attempt in range(4):  # four wrong tries leave the code usable
        with pytest.raises(CodeRefused):
            accounts.reset_password("bob", f"{attempt:08d}", NEW_PASSWORD, NEW_PASSWORD, T0)
    accounts.reset_password("bob", bob_code, NEW_PASSWORD, NEW_PASSWORD, T0)
    assert accounts.sign_in("bob", NEW_PASSWORD, T0).username == "bob"


def test_unknown_accounts_get_the_same_answer_and_no_mail(console_settings, accounts):
    register(accounts, "alice")

    assert accounts.request_password_reset("nobody", T0) is None
    assert accounts.request_password_reset("nobody@example.org", T0) is None
    assert accounts.remind_username("nobody@example.org") is None
    assert mails(console_settings) == []

    assert accounts.request_password_reset("alice", T0) is None
    assert len(mails(console_settings)) == 1


def test_at_most_three_requests_per_account_per_hour(console_settings, accounts):
    register(accounts, "alice")
    for minute in range(3):
        accounts.request_password_reset("alice", T0 + dt.timedelta(minutes=minute))
    third = last_code(console_settings)

    accounts.request_password_reset("alice", T0 + dt.timedelta(minutes=3))
    accounts.request_password_reset("alice@example.org", T0 + dt.timedelta(minutes=4))

    assert len(mails(console_settings)) == 3
    accounts.request_password_reset("alice", T0 + dt.timedelta(minutes=61))
    assert len(mails(console_settings)) == 4
    with pytest.raises(CodeRefused):  # the request an hour later voided it
        accounts.reset_password("alice", third, NEW_PASSWORD, NEW_PASSWORD, T0 + dt.timedelta(minutes=62))
    accounts.reset_password(
        "alice", last_code(console_settings), NEW_PASSWORD, NEW_PASSWORD, T0 + dt.timedelta(minutes=62)
    )


def test_a_new_request_voids_the_older_code(console_settings, accounts, engine):
    alice = register(accounts, "alice")
    accounts.request_password_reset("alice", T0)
    first = last_code(console_settings)
    accounts.request_password_reset("alice", T0 + dt.timedelta(minutes=1))
    second = last_code(console_settings)

    assert live_codes(engine, alice.user_id) == 1
    with pytest.raises(CodeRefused):
        accounts.reset_password("alice", first, NEW_PASSWORD, NEW_PASSWORD, T0 + dt.timedelta(minutes=2))
    accounts.reset_password("alice", second, NEW_PASSWORD, NEW_PASSWORD, T0 + dt.timedelta(minutes=2))


def test_an_smtp_server_that_is_down_gives_a_clear_error_and_leaves_no_usable_code(
    console_settings, accounts, store, engine
):
    alice = register(accounts, "alice")
    accounts.request_password_reset("alice", T0)
    earlier = last_code(console_settings)
    down = dataclasses.replace(
        console_settings, smtp_host="127.0.0.1", smtp_port=free_port(), smtp_security="none", smtp_timeout=2.0
    )

    with pytest.raises(MailError) as failed:
        Accounts(down, store, engine).request_password_reset("alice", T0 + dt.timedelta(minutes=1))

    assert str(failed.value) == USER_MESSAGE
    assert live_codes(engine, alice.user_id) == 1, "only the earlier code, which the user did receive"
    # The failed request cost nothing: the earlier code still works.
    accounts.reset_password("alice", earlier, NEW_PASSWORD, NEW_PASSWORD, T0 + dt.timedelta(minutes=2))
    assert live_codes(engine, alice.user_id) == 0


def test_codes_are_stored_only_as_keyed_hashes(console_settings, accounts, store, engine):
    alice = register(accounts, "alice")
    accounts.request_password_reset("alice", T0)
    code = last_code(console_settings)

    with engine.connect() as conn:
        codes = table("verification_codes", *(column(c.name) for c in VerificationCode.__table__.columns))
        rows = conn.execute(select(*(cast(c, String) for c in codes.c))).all()
    assert len(rows) == 1
    assert all(code not in str(value) for value in rows[0])
    with session_factory(engine)() as session:
        row = session.scalar(select(VerificationCode))
    assert (row.user_id, row.purpose, row.attempts, row.used_at) == (alice.user_id, "password_reset", 0, None)
    assert (row.created_at, row.expires_at) == (T0, T0 + dt.timedelta(minutes=10))
    assert re.fullmatch(r"[0-9a-f]{64}", row.code_hash)
    assert len(store.load().document["recovery_key"]) == 64
    assert code not in store.path.read_text()


def test_the_code_lifetime_is_configurable(console_settings, store, engine):
    accounts = Accounts(console_settings, store, engine, code_ttl=dt.timedelta(minutes=30))
    register(accounts, "alice")
    accounts.request_password_reset("alice", T0)

    assert "valid for 30 minutes" in mails(console_settings)[-1].get_content()
    accounts.reset_password(
        "alice", last_code(console_settings), NEW_PASSWORD, NEW_PASSWORD, T0 + dt.timedelta(minutes=29)
    )


def test_forgotten_usernames_are_mailed_to_known_addresses_only(console_settings, accounts):
    register(accounts, "alice")

    assert accounts.remind_username("  ALICE@example.org ") is None

    [message] = mails(console_settings)
    assert message["To"] == "alice@example.org"
    assert "alice" in message.get_content()
    assert accounts.remind_username("bob@example.org") is None
    assert len(mails(console_settings)) == 1
