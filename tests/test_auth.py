"""Accounts as people use them: register, sign in, get throttled, change and recover passwords, leave.

Credentials live in a real local credentials file (per test); the database is SQLite and, when a
server answers, PostgreSQL. Mail goes to the console backend (.eml files) or to a real aiosmtpd
server on 127.0.0.1. Time is passed explicitly (`now=`), so expiry and throttling need no sleeps.
bcrypt runs at its lowest cost here, only to keep the suite fast. Sign-in sessions have their own
file, test_sessions.py.
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
import threading
from email.message import EmailMessage

import bcrypt
import pytest
from sqlalchemy import Engine, String, Table, cast, func, select
from sqlalchemy.exc import OperationalError
from streamlit_authenticator.utilities import Hasher

import auth
from accounts import rules
from accounts.errors import CodeRefused, RegistrationRefused, SignInThrottled, WrongPassword
from accounts.recovery import CODE_REFUSED
from accounts.rules import (
    EMAIL_INVALID,
    PASSWORD_BLANK,
    PASSWORDS_DIFFER,
    USERNAME_RULE,
    check_email,
    check_password_policy,
    check_username,
    say,
)
from accounts.service import EMAIL_TAKEN, USERNAME_TAKEN, WRONG_CREDENTIALS, Accounts
from accounts.store import LocalCredentialStore, StoreUnavailable
from accounts.users import Account
from conftest import ROOT
from mailer import USER_MESSAGE, MailError
from models import (
    AlertMailDay,
    AlertOutbox,
    AlertRule,
    AlertState,
    Base,
    CustomStation,
    SignInThrottle,
    Station,
    User,
    UserGasType,
    UserSession,
    VerificationCode,
)
from net import free_port, run_together
from session import session_factory
from settings import Settings
from ui.authenticator import AccountValidator

pytestmark = pytest.mark.usefixtures("cheap_bcrypt")

UTC = dt.UTC
T0 = dt.datetime(2030, 3, 1, 9, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
# The rules with limits, as a person reads them (the tests speak English, the code's own language).
PASSWORD_SHORT, PASSWORD_LONG, PASSWORD_TOO_MANY_BYTES = (
    say(rules.PASSWORD_SHORT),
    say(rules.PASSWORD_LONG),
    say(rules.PASSWORD_TOO_MANY_BYTES),
)
NEW_PASSWORD = "staple and stable 42"
DEFAULT_FUELS = {1, 2, 5}
THROTTLED = re.compile(r"Too many attempts\. Try again in \d+ minutes?\.")
CODE = re.compile(r"\b(\d{8})\b")
FUTURE_TIMEOUT = 30  # seconds to wait for work queued on the accounts' background worker


# --------------------------------------------------------------------------- fixtures and helpers


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


def texts_of(engine: Engine, tbl: Table) -> list[str]:
    """Every value of every row of a table, as the database renders it in text."""
    with engine.connect() as conn:
        rows = conn.execute(select(*(cast(c, String) for c in tbl.c))).all()
    return [str(value) for row in rows for value in row]


def count(engine: Engine, model: type[Base]) -> int:
    with engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(model))


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


def set_alerts(engine: Engine, user_id: int, station_id: int) -> None:
    """An alert of each table's kind: a rule, its state, a day's count of mails and a mail waiting to be sent."""
    with session_factory(engine).begin() as session:
        rule = AlertRule(user_id=user_id, kind="rupture", station_id=station_id, gastype_id=1, created_at=T0)
        session.add(rule)
        session.flush()
        session.add_all(
            [
                AlertState(rule_id=rule.id, user_id=user_id, active=True, changed_at=T0),
                AlertMailDay(user_id=user_id, day="2024-05-08", sent=1),
                AlertOutbox(user_id=user_id, created_at=T0, subject="Carburoam", text_body="x", html_body="<p>x</p>"),
            ]
        )


def live_codes(engine: Engine, user_id: int) -> int:
    with engine.connect() as conn:
        return conn.scalar(
            select(func.count()).where(VerificationCode.user_id == user_id, VerificationCode.used_at.is_(None))
        )


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
    assert count(engine, User) == 0


def test_registration_writes_the_library_entry_the_users_row_and_default_fuels(accounts, store, engine):
    account = accounts.register("  Alice ", "Alice@Example.org", " Alice ", "Martin", PASSWORD, PASSWORD, now=T0)

    entry = entries(store)["alice"]
    assert bcrypt.checkpw(PASSWORD.encode(), entry["password"].encode())
    assert Hasher.is_hash(entry["password"]) and Hasher.check_pw(PASSWORD, entry["password"])  # the library agrees
    assert entry == {
        "email": "alice@example.org",
        "first_name": "Alice",
        "last_name": "Martin",
        "password": entry["password"],
        "roles": ["user"],
        "failed_login_attempts": 0,
        "logged_in": False,
    }
    row = user_row(engine, "alice")
    assert (row.email, row.name, row.role, row.created_at) == ("alice@example.org", "Alice Martin", "user", T0)
    assert account == Account("alice", "alice@example.org", "Alice Martin", "user", row.id)
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

    monkeypatch.setattr("accounts.users.follow_default_fuels", broken)
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
    assert count(engine, UserSession) == 0


def test_sign_ins_refused_by_a_store_outage_do_not_count_as_wrong_passwords(accounts, store):
    register(accounts, "alice")
    content = store.path.read_bytes()
    store.path.write_text("credentials: [not, a, mapping\n")
    for _ in range(5):  # alice types her right password while the store is broken
        with pytest.raises(StoreUnavailable):
            accounts.sign_in("alice", PASSWORD, T0)

    store.path.write_bytes(content)

    assert accounts.sign_in("alice", PASSWORD, T0).account.username == "alice"


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

    assert (account.username, account.email, account.name, account.role) == (
        "bob",
        "bob@example.org",
        "Bob Martin",
        "user",
    )
    assert entries(store)["bob"]["roles"] == ["user"]
    assert fuels_of(engine, account.user_id) == DEFAULT_FUELS
    assert accounts.sign_in("bob", PASSWORD, T0).account == account
    with pytest.raises(RegistrationRefused, match=USERNAME_TAKEN):
        accounts.adopt_registration("bob", widget_entry | {"email": "bob2@example.org"}, now=T0)
    with pytest.raises(RegistrationRefused, match=EMAIL_TAKEN):
        accounts.adopt_registration("bobby", widget_entry, now=T0)
    with pytest.raises(RegistrationRefused, match="no usable password"):
        accounts.adopt_registration("carol", widget_entry | {"email": "c@example.org", "password": PASSWORD}, now=T0)
    assert set(entries(store)) == {"bob"}


# --------------------------------------------------------------------------- users rows


def test_users_rows_follow_the_document(accounts, store, engine):
    def add_by_hand(document):  # an entry written by the library alone, without a users row
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
    dora = accounts.account("dora", now=T0)
    assert (dora.email, dora.name, dora.role) == ("dora@example.org", "Dora Explorer", "user")
    assert fuels_of(engine, dora.user_id) == DEFAULT_FUELS

    store.update(lambda document: document["credentials"]["usernames"]["dora"].update(email="dora@new.example.org"))
    assert accounts.account("dora").user_id == dora.user_id
    assert user_row(engine, "dora").email == "dora@new.example.org"

    with session_factory(engine).begin() as session:  # a row whose account is gone, with data and a session
        ghost = User(username="ghost", email="ghost@example.org", name="Ghost", role="user", created_at=T0)
        session.add(ghost)
        session.flush()
        session.add(UserGasType(user_id=ghost.id, gastype_id=1))
        session.add(
            UserSession(
                id="0" * 64, user_id=ghost.id, created_at=T0, last_seen_at=T0, expires_at=T0, device="Unknown device"
            )
        )
    store.update(lambda document: document["credentials"]["usernames"]["dora"].update(last_name="Explora"))
    alice = register(accounts, "alice")
    with session_factory(engine).begin() as session:  # lose alice's row
        session.execute(UserGasType.__table__.delete().where(UserGasType.user_id == alice.user_id))
        session.execute(User.__table__.delete().where(User.id == alice.user_id))

    result = accounts.users.sync_all(now=T0)

    assert (result.created, result.updated, result.deleted) == (1, 1, 1)
    assert user_row(engine, "ghost") is None
    assert count(engine, UserSession) == 0
    with session_factory(engine)() as session:  # (ghost's id may be reused by alice's new row)
        users = dict(session.execute(select(User.id, User.username)).all())
        followed = session.execute(select(UserGasType.user_id, UserGasType.gastype_id)).all()
    assert sorted(users.values()) == ["alice", "dora"]
    assert sorted(followed) == sorted((user_id, fuel) for user_id in users for fuel in DEFAULT_FUELS)
    assert user_row(engine, "dora").name == "Dora Explora"
    assert fuels_of(engine, user_row(engine, "alice").id) == DEFAULT_FUELS
    assert accounts.account("nobody") is None


# --------------------------------------------------------------------------- sign-in and throttling


def test_sign_in_returns_the_account_and_a_session(accounts):
    alice = accounts.register("alice", "alice@example.org", "Alice", "Martin", f"  {PASSWORD} ", PASSWORD, now=T0)

    signed = accounts.sign_in("alice", PASSWORD, T0)
    assert (signed.account, signed.expires_at) == (alice, T0 + dt.timedelta(days=30))
    assert accounts.resume(signed.token, T0) == alice
    assert accounts.sign_in(" Alice ", f" {PASSWORD}", T0).account == alice  # as the library's widgets clean them
    with pytest.raises(WrongPassword) as wrong:
        accounts.sign_in("alice", PASSWORD.upper(), T0)
    assert str(wrong.value) == WRONG_CREDENTIALS
    assert len(accounts.live_sessions(alice.user_id, T0)) == 2, "a refused sign-in opens no session"


def test_five_failures_are_free_then_each_failure_imposes_a_longer_wait(accounts, store, engine):
    register(accounts, "alice")
    document = store.path.read_bytes()
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
    assert store.path.read_bytes() == document, "failures are counted in the database, not in the credentials"

    now += dt.timedelta(seconds=3600)
    assert accounts.sign_in("alice", PASSWORD, now).account.username == "alice"
    assert count(engine, SignInThrottle) == 0, "a success forgets the failures"
    for _ in range(4):  # a success starts the count again: four more failures are still free
        with pytest.raises(WrongPassword):
            accounts.sign_in("alice", "wrong password", now)
    assert accounts.sign_in("alice", PASSWORD, now).account.username == "alice"


def test_unknown_names_get_exactly_the_answers_known_ones_get(accounts, store, engine):
    register(accounts, "alice")
    document = store.path.read_bytes()

    def answers(username: str) -> list[tuple[type, str]]:
        seen = []
        for attempt in range(8):
            with pytest.raises((WrongPassword, SignInThrottled)) as refused:
                accounts.sign_in(username, "wrong password", T0 + dt.timedelta(seconds=attempt))
            seen.append((type(refused.value), str(refused.value)))
        return seen

    assert answers("alice") == answers("mallory")
    assert answers("alice")[-1][0] is SignInThrottled
    with pytest.raises(SignInThrottled):  # the stranger's name is throttled as a real one would be
        accounts.sign_in("mallory", PASSWORD, T0 + dt.timedelta(seconds=10))

    assert store.path.read_bytes() == document, "failed sign-ins never write the credentials document"
    assert count(engine, SignInThrottle) == 2  # one row per name typed
    throttle_texts = texts_of(engine, SignInThrottle.__table__)
    assert not [value for value in throttle_texts if "mallory" in value or "alice" in value]
    for tbl in Base.metadata.sorted_tables:  # the stranger's name is nowhere in the database
        assert not [value for value in texts_of(engine, tbl) if "mallory" in value], tbl.name
    assert accounts.account("mallory") is None


def test_throttling_survives_a_restart(console_settings, accounts, engine):
    register(accounts, "alice")
    for _ in range(5):
        with pytest.raises(WrongPassword):
            accounts.sign_in("alice", "wrong password", T0)

    restarted = Accounts(console_settings, LocalCredentialStore(console_settings.credentials_file), engine)

    with pytest.raises(SignInThrottled) as throttled:
        restarted.sign_in("alice", PASSWORD, T0 + dt.timedelta(seconds=10))
    assert throttled.value.wait_seconds == 20
    assert restarted.sign_in("alice", PASSWORD, T0 + dt.timedelta(seconds=30)).account.username == "alice"


def test_thirty_simultaneous_wrong_passwords_check_at_most_five(accounts, monkeypatch):
    register(accounts, "alice")
    real_checkpw, lock, checked = bcrypt.checkpw, threading.Lock(), [0]

    def counting_checkpw(password: bytes, hashed: bytes) -> bool:
        with lock:
            checked[0] += 1
        return real_checkpw(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting_checkpw)
    outcomes: list[object] = [None] * 30

    def attempt(i: int) -> None:
        try:
            outcomes[i] = accounts.sign_in("alice", f"wrong password {i}", T0)
        except (WrongPassword, SignInThrottled) as refused:
            outcomes[i] = refused

    run_together(len(outcomes), attempt)

    wrong = [outcome for outcome in outcomes if isinstance(outcome, WrongPassword)]
    throttled = [outcome for outcome in outcomes if isinstance(outcome, SignInThrottled)]
    assert len(wrong) + len(throttled) == 30, outcomes
    assert checked[0] <= 5, f"{checked[0]} passwords were checked"
    assert len(wrong) == checked[0]
    assert len(throttled) >= 25
    wait = max(refusal.wait_seconds for refusal in throttled)
    assert 0 < wait <= 30
    for seconds in (0, wait - 1):  # the right password waits too
        with pytest.raises(SignInThrottled):
            accounts.sign_in("alice", PASSWORD, T0 + dt.timedelta(seconds=seconds))
    assert checked[0] <= 5
    assert accounts.sign_in("alice", PASSWORD, T0 + dt.timedelta(seconds=wait)).account.username == "alice"


def test_a_password_reset_lifts_the_sign_in_wait(console_settings, accounts):
    register(accounts, "alice")
    for _ in range(5):
        with pytest.raises(WrongPassword):
            accounts.sign_in("alice", "wrong password", T0)
    with pytest.raises(SignInThrottled):
        accounts.sign_in("alice", PASSWORD, T0 + dt.timedelta(seconds=1))

    assert accounts.recovery.request_password_reset("alice", T0 + dt.timedelta(seconds=2))
    accounts.recovery.reset_password(
        "alice", last_code(console_settings), NEW_PASSWORD, NEW_PASSWORD, T0 + dt.timedelta(seconds=3)
    )

    assert accounts.sign_in("alice", NEW_PASSWORD, T0 + dt.timedelta(seconds=4)).account.username == "alice"
    with pytest.raises(WrongPassword):  # refused for being wrong, not for waiting
        accounts.sign_in("alice", PASSWORD, T0 + dt.timedelta(seconds=5))


# --------------------------------------------------------------------------- credentials


def test_changing_the_password_needs_the_current_one(accounts, store):
    register(accounts, "alice")
    hash_before = entries(store)["alice"]["password"]

    with pytest.raises(WrongPassword):
        accounts.change_password("alice", "not my password", NEW_PASSWORD, NEW_PASSWORD, T0)
    with pytest.raises(RegistrationRefused, match=PASSWORDS_DIFFER):
        accounts.change_password("alice", PASSWORD, NEW_PASSWORD, NEW_PASSWORD + "x", T0)
    with pytest.raises(RegistrationRefused, match=PASSWORD_SHORT):
        accounts.change_password("alice", PASSWORD, "short", "short", T0)
    with pytest.raises(RegistrationRefused, match="must be different"):
        accounts.change_password("alice", PASSWORD, PASSWORD, PASSWORD, T0)
    assert entries(store)["alice"]["password"] == hash_before

    changed_at = T0 + dt.timedelta(minutes=5)
    signed = accounts.change_password("alice", PASSWORD, NEW_PASSWORD, NEW_PASSWORD, changed_at)

    assert signed.account.username == "alice"
    assert accounts.resume(signed.token, changed_at) == signed.account
    with pytest.raises(WrongPassword):
        accounts.sign_in("alice", PASSWORD, changed_at)
    assert accounts.sign_in("alice", NEW_PASSWORD, changed_at).account == signed.account
    assert NEW_PASSWORD not in store.path.read_text()


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
    set_alerts(engine, alice.user_id, 101)
    set_alerts(engine, bob.user_id, 101)
    accounts.recovery.request_password_reset("alice", T0)
    alice_signed = accounts.sign_in("alice", PASSWORD, T0)
    bob_signed = accounts.sign_in("bob", PASSWORD, T0)
    assert {"user_sessions", "verification_codes", "custom_stations", "user_gastypes"} <= set(rows_of(engine, 0))
    assert all(rows_of(engine, alice.user_id).values())  # something in every table to delete
    bob_rows = rows_of(engine, bob.user_id)

    with pytest.raises(WrongPassword):
        accounts.delete_account("alice", "not my password", T0)
    assert all(rows_of(engine, alice.user_id).values()) and "alice" in entries(store)
    assert accounts.resume(alice_signed.token, T0) == alice

    accounts.delete_account("alice", PASSWORD, T0)

    assert set(rows_of(engine, alice.user_id).values()) == {0}
    assert user_row(engine, "alice") is None
    assert "alice" not in entries(store)
    assert count(engine, SignInThrottle) == 0, "the wrong password typed before is forgotten too"
    assert accounts.resume(alice_signed.token, T0) is None
    assert rows_of(engine, bob.user_id) == bob_rows
    assert accounts.resume(bob_signed.token, T0) == bob
    with pytest.raises(WrongPassword):
        accounts.sign_in("alice", PASSWORD, T0)
    again = register(accounts, "alice")  # the name is free again, with nothing of the old account
    assert rows_of(engine, again.user_id) == {
        "users": 1,
        "user_gastypes": 3,
        "custom_stations": 0,
        "verification_codes": 0,
        "user_sessions": 0,
        "alert_rules": 0,
        "alert_states": 0,
        "alert_mail_days": 0,
        "alert_outbox": 0,
    }


def test_a_deletion_the_document_refuses_changes_nothing(accounts, store, engine, monkeypatch):
    alice = register(accounts, "alice")
    add_stations(engine, 101)
    follow(engine, alice.user_id, 101)
    signed = accounts.sign_in("alice", PASSWORD, T0)
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
    assert accounts.resume(signed.token, T0) == alice, "still signed in: the account was not deleted"
    accounts.delete_account("alice", PASSWORD, T0)  # and it can be deleted once the store is back
    assert set(rows_of(engine, alice.user_id).values()) == {0}


def test_deleting_an_account_deletes_the_mails_written_about_it(console_settings, accounts):
    register(accounts, "alice")
    register(accounts, "bob")
    assert accounts.recovery.request_password_reset("alice", T0)
    accounts.recovery.remind_username_later("Alice@example.org").result(timeout=FUTURE_TIMEOUT)
    assert accounts.recovery.request_password_reset("bob", T0)
    assert sorted(message["To"] for message in mails(console_settings)) == [
        "alice@example.org",
        "alice@example.org",
        "bob@example.org",
    ]

    accounts.delete_account("alice", PASSWORD, T0)

    assert [message["To"] for message in mails(console_settings)] == ["bob@example.org"]
    left = [path.read_bytes() for path in console_settings.mail_dir.iterdir()]
    assert len(left) == 1 and b"alice" not in left[0]


# --------------------------------------------------------------------------- admins


def test_create_admin_creates_a_new_admin_and_promotes_an_existing_user(accounts, store, engine):
    admin = accounts.create_admin("root", "Root@Example.org", PASSWORD, now=T0)
    assert (admin.role, entries(store)["root"]["roles"], user_row(engine, "root").role) == (
        "admin",
        ["user", "admin"],
        "admin",
    )
    assert accounts.sign_in("root", PASSWORD, T0).account.role == "admin"

    register(accounts, "bob")
    assert accounts.create_admin("bob", "BOB@example.org").role == "admin"
    assert user_row(engine, "bob").role == "admin"
    assert accounts.sign_in("bob", PASSWORD, T0).account.role == "admin"  # promotion keeps the password
    assert accounts.create_admin("bob", "bob@example.org").role == "admin"  # idempotent
    assert entries(store)["bob"]["roles"] == ["user", "admin"]

    with pytest.raises(RegistrationRefused, match="another e-mail"):
        accounts.create_admin("bob", "someone@example.org")
    with pytest.raises(RegistrationRefused, match="needs a password"):
        accounts.create_admin("carol", "carol@example.org")
    with pytest.raises(RegistrationRefused, match=PASSWORD_SHORT):
        accounts.create_admin("carol", "carol@example.org", "short")
    assert accounts.account("carol") is None


def test_create_admin_command_line(console_settings, accounts, engine):
    created = run_cli(
        console_settings, "create-admin", "--username", "root", "--email", "Root@example.org", password=PASSWORD
    )

    assert created.returncode == 0, created.stderr
    assert created.stdout.splitlines() == ["Created the admin account root (root@example.org)."]
    assert created.stderr == "", "no warnings on success"
    assert accounts.sign_in("root", PASSWORD, T0).account.role == "admin"
    assert user_row(engine, "root").role == "admin"

    register(accounts, "bob")
    promoted = run_cli(console_settings, "create-admin", "--username", "bob", "--email", "bob@example.org")
    assert promoted.returncode == 0, promoted.stderr
    assert promoted.stdout.splitlines() == ["bob is now an admin."]
    assert promoted.stderr == ""

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

    assert accounts.recovery.request_password_reset("ALICE@example.org", T0) is True

    [message] = mails(console_settings)
    assert message["To"] == "alice@example.org"
    code = code_in(message)
    assert PASSWORD not in message.get_content()
    later = T0 + dt.timedelta(minutes=9)
    account = accounts.recovery.reset_password("alice", code, NEW_PASSWORD, NEW_PASSWORD, later)
    assert account.username == "alice"
    assert accounts.sign_in("alice", NEW_PASSWORD, later).account == account
    with pytest.raises(WrongPassword):
        accounts.sign_in("alice", PASSWORD, later)
    with pytest.raises(CodeRefused, match=re.escape(CODE_REFUSED)):  # single use
        accounts.recovery.reset_password("alice", code, PASSWORD, PASSWORD, later)
    assert len(mails(console_settings)) == 1, "no password is ever mailed"


def test_password_recovery_through_a_real_smtp_server(console_settings, store, engine, smtp_inbox):
    port, inbox = smtp_inbox
    smtp = dataclasses.replace(console_settings, smtp_host="127.0.0.1", smtp_port=port, smtp_security="none")
    accounts = Accounts(smtp, store, engine)
    register(accounts, "alice")

    # As the page asks: queued, then sent by the background worker (at the real time of day).
    accounts.recovery.request_password_reset_later("alice").result(timeout=FUTURE_TIMEOUT)

    [message] = inbox.received
    assert message["To"] == "alice@example.org"
    code = code_in(message)
    accounts.recovery.reset_password("alice", code, NEW_PASSWORD, NEW_PASSWORD)
    assert accounts.sign_in("alice", NEW_PASSWORD).account.username == "alice"
    with pytest.raises(WrongPassword):
        accounts.sign_in("alice", PASSWORD)
    assert mails(console_settings) == []


def test_wrong_expired_and_other_peoples_codes_are_refused(console_settings, accounts):
    register(accounts, "alice")
    register(accounts, "bob")
    accounts.recovery.request_password_reset("alice", T0)
    alice_code = last_code(console_settings)
    accounts.recovery.request_password_reset("bob", T0)
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
            accounts.recovery.reset_password(who, code, NEW_PASSWORD, NEW_PASSWORD, when)
        assert str(refused.value) == CODE_REFUSED

    accounts.recovery.reset_password("alice", f" {alice_code[:4]} {alice_code[4:]} ", NEW_PASSWORD, NEW_PASSWORD, T0)
    accounts.recovery.reset_password("bob", bob_code, NEW_PASSWORD, NEW_PASSWORD, T0)
    assert accounts.sign_in("alice", NEW_PASSWORD, T0).account.username == "alice"
    assert accounts.sign_in("bob", NEW_PASSWORD, T0).account.username == "bob"


def test_five_wrong_tries_burn_the_code_so_the_sixth_fails_even_when_right(console_settings, accounts):
    register(accounts, "alice")
    register(accounts, "bob")
    accounts.recovery.request_password_reset("alice", T0)
    alice_code = last_code(console_settings)
    accounts.recovery.request_password_reset("bob", T0)
    bob_code = last_code(console_settings)

    for attempt in range(5):
        with pytest.raises(CodeRefused):
            accounts.recovery.reset_password("alice", f"{attempt:08d}", NEW_PASSWORD, NEW_PASSWORD, T0)
    with pytest.raises(CodeRefused):
        accounts.recovery.reset_password("alice", alice_code, NEW_PASSWORD, NEW_PASSWORD, T0)
    assert accounts.sign_in("alice", PASSWORD, T0).account.username == "alice"

    for attempt in range(4):  # four wrong tries leave the code usable
        with pytest.raises(CodeRefused):
            accounts.recovery.reset_password("bob", f"{attempt:08d}", NEW_PASSWORD, NEW_PASSWORD, T0)
    accounts.recovery.reset_password("bob", bob_code, NEW_PASSWORD, NEW_PASSWORD, T0)
    assert accounts.sign_in("bob", NEW_PASSWORD, T0).account.username == "bob"


def test_unknown_accounts_get_the_same_answer_and_no_mail(console_settings, accounts):
    register(accounts, "alice")
    recovery = accounts.recovery

    # What the page gets back is the same whatever the account; only a known one is mailed.
    answers = [
        recovery.request_password_reset_later(identifier).result(timeout=FUTURE_TIMEOUT)
        for identifier in ("nobody", "nobody@example.org")
    ]
    answers.append(recovery.remind_username_later("nobody@example.org").result(timeout=FUTURE_TIMEOUT))
    assert mails(console_settings) == []
    assert recovery.request_password_reset("nobody", T0) is False
    assert recovery.remind_username("nobody@example.org") is False
    assert mails(console_settings) == []

    answers.append(recovery.request_password_reset_later("alice").result(timeout=FUTURE_TIMEOUT))
    assert len(set(answers)) == 1
    assert [message["To"] for message in mails(console_settings)] == ["alice@example.org"]


def test_at_most_three_requests_per_account_per_hour(console_settings, accounts):
    register(accounts, "alice")
    recovery = accounts.recovery
    for minute in range(3):
        assert recovery.request_password_reset("alice", T0 + dt.timedelta(minutes=minute))
    third = last_code(console_settings)

    assert not recovery.request_password_reset("alice", T0 + dt.timedelta(minutes=3))
    assert not recovery.request_password_reset("alice@example.org", T0 + dt.timedelta(minutes=4))

    assert len(mails(console_settings)) == 3
    assert recovery.request_password_reset("alice", T0 + dt.timedelta(minutes=61))
    assert len(mails(console_settings)) == 4
    with pytest.raises(CodeRefused):  # the request an hour later voided it
        recovery.reset_password("alice", third, NEW_PASSWORD, NEW_PASSWORD, T0 + dt.timedelta(minutes=62))
    recovery.reset_password(
        "alice", last_code(console_settings), NEW_PASSWORD, NEW_PASSWORD, T0 + dt.timedelta(minutes=62)
    )


def test_a_new_request_voids_the_older_code(console_settings, accounts, engine):
    alice = register(accounts, "alice")
    accounts.recovery.request_password_reset("alice", T0)
    first = last_code(console_settings)
    accounts.recovery.request_password_reset("alice", T0 + dt.timedelta(minutes=1))
    second = last_code(console_settings)

    assert live_codes(engine, alice.user_id) == 1
    with pytest.raises(CodeRefused):
        accounts.recovery.reset_password("alice", first, NEW_PASSWORD, NEW_PASSWORD, T0 + dt.timedelta(minutes=2))
    accounts.recovery.reset_password("alice", second, NEW_PASSWORD, NEW_PASSWORD, T0 + dt.timedelta(minutes=2))


def test_an_smtp_server_that_is_down_gives_a_clear_error_and_leaves_no_usable_code(
    console_settings, accounts, store, engine
):
    alice = register(accounts, "alice")
    accounts.recovery.request_password_reset("alice", T0)
    earlier = last_code(console_settings)
    down = dataclasses.replace(
        console_settings, smtp_host="127.0.0.1", smtp_port=free_port(), smtp_security="none", smtp_timeout=2.0
    )

    with pytest.raises(MailError) as failed:
        Accounts(down, store, engine).recovery.request_password_reset("alice", T0 + dt.timedelta(minutes=1))

    assert str(failed.value) == USER_MESSAGE
    assert live_codes(engine, alice.user_id) == 1, "only the earlier code, which the user did receive"
    # The failed request cost nothing: the earlier code still works.
    accounts.recovery.reset_password("alice", earlier, NEW_PASSWORD, NEW_PASSWORD, T0 + dt.timedelta(minutes=2))
    assert live_codes(engine, alice.user_id) == 0


def test_codes_are_stored_only_as_keyed_hashes(console_settings, accounts, store, engine):
    alice = register(accounts, "alice")
    accounts.recovery.request_password_reset("alice", T0)
    code = last_code(console_settings)

    values = texts_of(engine, VerificationCode.__table__)
    assert values and all(code not in value for value in values)
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
    accounts.recovery.request_password_reset("alice", T0)

    assert "valid for 30 minutes" in mails(console_settings)[-1].get_content()
    accounts.recovery.reset_password(
        "alice", last_code(console_settings), NEW_PASSWORD, NEW_PASSWORD, T0 + dt.timedelta(minutes=29)
    )


def test_forgotten_usernames_are_mailed_to_known_addresses_only(console_settings, accounts):
    register(accounts, "alice")

    assert accounts.recovery.remind_username("  ALICE@example.org ") is True

    [message] = mails(console_settings)
    assert message["To"] == "alice@example.org"
    assert "alice" in message.get_content()
    assert accounts.recovery.remind_username("bob@example.org") is False
    assert len(mails(console_settings)) == 1
