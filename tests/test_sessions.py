"""Sign-in sessions as people and operators see them: a token per browser, live until it is ended.

Each sign-in opens a server-side session (a `user_sessions` row keyed by the SHA-256 of the
browser's token). It ends on sign-out, on a password change or reset, when an administrator ends
it, 30 days after sign-in, or after 14 days unused. Time is passed explicitly (`now=`), except for
the command line, which lives in the present.
"""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import event

from accounts.errors import AccountMissing, CodeRefused, WrongPassword
from accounts.service import Accounts
from models import UserSession
from prices import queries
from session import session_factory
from test_auth import NEW_PASSWORD, PASSWORD, T0, count, last_code, register, rows_of, run_cli, texts_of

DAY, MINUTE, SECOND = dt.timedelta(days=1), dt.timedelta(minutes=1), dt.timedelta(seconds=1)
pytestmark = pytest.mark.usefixtures("cheap_bcrypt")

FIREFOX_WINDOWS = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Firefox/128.0"
CHROME_ANDROID = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Mobile Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1"
)
CHROME_LINUX = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"


def devices(accounts: Accounts, user_id: int, now: dt.datetime) -> list[str]:
    return [row.device for row in accounts.live_sessions(user_id, now)]


# --------------------------------------------------------------------------- the token


def test_the_token_signs_in_and_only_its_digest_is_stored(accounts, engine):
    alice = register(accounts, "alice")

    signed = accounts.sign_in("alice", PASSWORD, T0, user_agent=FIREFOX_WINDOWS)

    assert len(signed.token) >= 43, "at least 256 random bits"
    assert accounts.resume(signed.token, T0 + MINUTE) == alice
    values = texts_of(engine, UserSession.__table__)
    assert values and not [value for value in values if signed.token in value]
    assert hashlib.sha256(signed.token.encode()).hexdigest() in values
    assert signed.token not in accounts.store.path.read_text()
    # What the database holds signs nobody in: neither the digest nor a guess.
    [row] = accounts.live_sessions(alice.user_id, T0)
    for forged in (row.id, signed.token[:-1], signed.token + "x", "", "null"):
        assert accounts.resume(forged, T0) is None
    assert accounts.sign_in("alice", PASSWORD, T0).token != signed.token


def test_signing_out_ends_the_session_for_every_copy_of_the_token(accounts):
    alice = register(accounts, "alice")
    laptop = accounts.sign_in("alice", PASSWORD, T0, user_agent=FIREFOX_WINDOWS)
    phone = accounts.sign_in("alice", PASSWORD, T0, user_agent=CHROME_ANDROID)
    stolen = "".join(laptop.token)  # a copy taken before the sign-out, e.g. from a cookie jar

    accounts.sign_out(laptop.token, T0 + MINUTE)

    assert accounts.resume(laptop.token, T0 + 2 * MINUTE) is None
    assert accounts.resume(stolen, T0 + 2 * MINUTE) is None
    assert accounts.resume(phone.token, T0 + 2 * MINUTE) == alice, "the other device stays signed in"
    assert devices(accounts, alice.user_id, T0 + 2 * MINUTE) == ["Chrome Mobile on Android"]
    accounts.sign_out(laptop.token, T0 + 3 * MINUTE)  # signing out twice is harmless
    accounts.sign_out("not a token", T0 + 3 * MINUTE)
    assert accounts.resume(phone.token, T0 + 3 * MINUTE) == alice


def test_a_session_follows_the_credentials_document_within_a_minute(accounts):
    """The document is the authority: a role changed or an account removed there applies to live sessions."""
    register(accounts, "alice")
    signed = accounts.sign_in("alice", PASSWORD, T0)
    accounts.store.update(
        lambda document: document["credentials"]["usernames"]["alice"].update(roles=["user", "admin"])
    )

    assert accounts.resume(signed.token, T0 + SECOND).role == "user", "within the minute, the session as it was"
    assert accounts.resume(signed.token, T0 + MINUTE).role == "admin"

    accounts.store.update(lambda document: document["credentials"]["usernames"].pop("alice"))
    assert accounts.resume(signed.token, T0 + 2 * MINUTE) is None
    assert accounts.resume(signed.token, T0 + 2 * MINUTE + SECOND) is None, "the session stays ended"


# --------------------------------------------------------------------------- lifetimes


def test_a_session_ends_thirty_days_after_sign_in_even_if_used_every_day(accounts):
    alice = register(accounts, "alice")
    signed = accounts.sign_in("alice", PASSWORD, T0)
    assert signed.expires_at == T0 + 30 * DAY

    for day in range(1, 30):
        assert accounts.resume(signed.token, T0 + day * DAY) == alice, day
    assert accounts.resume(signed.token, T0 + 30 * DAY - SECOND) == alice

    assert accounts.resume(signed.token, T0 + 30 * DAY) is None
    assert accounts.resume(signed.token, T0 + 30 * DAY + MINUTE) is None
    assert accounts.live_sessions(alice.user_id, T0 + 30 * DAY) == []
    assert accounts.sign_in("alice", PASSWORD, T0 + 30 * DAY).account == alice  # signing in again works


def test_a_session_unused_for_fourteen_days_ends(accounts):
    alice = register(accounts, "alice")
    forgotten = accounts.sign_in("alice", PASSWORD, T0, user_agent=CHROME_ANDROID)
    used = accounts.sign_in("alice", PASSWORD, T0, user_agent=FIREFOX_WINDOWS)
    assert accounts.resume(used.token, T0 + 5 * DAY) == alice  # used on the fifth day, then left

    both = ["Firefox on Windows", "Chrome Mobile on Android"]
    assert devices(accounts, alice.user_id, T0 + 14 * DAY - SECOND) == both
    assert accounts.resume(forgotten.token, T0 + 14 * DAY) is None
    assert devices(accounts, alice.user_id, T0 + 19 * DAY - SECOND) == ["Firefox on Windows"]
    assert devices(accounts, alice.user_id, T0 + 19 * DAY) == []
    assert accounts.resume(used.token, T0 + 19 * DAY) is None
    assert accounts.resume(forgotten.token, T0 + 19 * DAY) is None


def test_last_seen_moves_at_most_once_a_minute(accounts, engine):
    alice = register(accounts, "alice")
    signed = accounts.sign_in("alice", PASSWORD, T0)
    writes: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("UPDATE USER_SESSIONS"):
            writes.append(statement)

    def last_seen(now: dt.datetime) -> dt.datetime:
        [row] = accounts.live_sessions(alice.user_id, now)
        return row.last_seen_at

    event.listen(engine, "before_cursor_execute", record)
    try:
        for second in range(0, 60, 2):  # a page that reruns every two seconds
            assert accounts.resume(signed.token, T0 + second * SECOND) == alice
        assert (writes, last_seen(T0 + 59 * SECOND)) == ([], T0)

        assert accounts.resume(signed.token, T0 + MINUTE) == alice
        assert (len(writes), last_seen(T0 + MINUTE)) == (1, T0 + MINUTE)
        for second in range(61, 120, 3):
            accounts.resume(signed.token, T0 + second * SECOND)
        assert (len(writes), last_seen(T0 + 2 * MINUTE)) == (1, T0 + MINUTE)
        accounts.resume(signed.token, T0 + 2 * MINUTE + SECOND)
        assert (len(writes), last_seen(T0 + 3 * MINUTE)) == (2, T0 + 2 * MINUTE + SECOND)
    finally:
        event.remove(engine, "before_cursor_execute", record)


# --------------------------------------------------------------------------- ending sessions


def test_changing_the_password_ends_every_other_session_and_signs_this_device_in(accounts):
    alice = register(accounts, "alice")
    laptop = accounts.sign_in("alice", PASSWORD, T0, user_agent=FIREFOX_WINDOWS)
    phone = accounts.sign_in("alice", PASSWORD, T0 + MINUTE, user_agent=CHROME_ANDROID)
    with pytest.raises(WrongPassword):  # a refused change ends nothing
        accounts.change_password("alice", "not my password", NEW_PASSWORD, NEW_PASSWORD, T0 + 2 * MINUTE)
    assert accounts.resume(phone.token, T0 + 2 * MINUTE) == alice

    changed_at = T0 + 5 * MINUTE
    changed = accounts.change_password(
        "alice", PASSWORD, NEW_PASSWORD, NEW_PASSWORD, changed_at, user_agent=FIREFOX_WINDOWS
    )

    assert accounts.resume(laptop.token, changed_at) is None, "even the session of the device that changed it"
    assert accounts.resume(phone.token, changed_at) is None
    assert accounts.resume(changed.token, changed_at + MINUTE) == alice == changed.account
    assert changed.expires_at == changed_at + 30 * DAY
    assert devices(accounts, alice.user_id, changed_at + MINUTE) == ["Firefox on Windows"]


def test_a_password_reset_with_a_code_ends_every_session(console_settings, accounts):
    alice = register(accounts, "alice")
    bob = register(accounts, "bob")
    laptop = accounts.sign_in("alice", PASSWORD, T0, user_agent=FIREFOX_WINDOWS)
    phone = accounts.sign_in("alice", PASSWORD, T0, user_agent=CHROME_ANDROID)
    bobs = accounts.sign_in("bob", PASSWORD, T0)
    assert accounts.recovery.request_password_reset("alice", T0)
    code = last_code(console_settings)
    with pytest.raises(CodeRefused):  # a refused code ends nothing
        accounts.recovery.reset_password("alice", "00000000", NEW_PASSWORD, NEW_PASSWORD, T0 + MINUTE)
    assert accounts.resume(laptop.token, T0 + MINUTE) == alice

    accounts.recovery.reset_password("alice", code, NEW_PASSWORD, NEW_PASSWORD, T0 + 2 * MINUTE)

    assert accounts.resume(laptop.token, T0 + 2 * MINUTE) is None
    assert accounts.resume(phone.token, T0 + 2 * MINUTE) is None
    assert accounts.live_sessions(alice.user_id, T0 + 2 * MINUTE) == []
    assert accounts.resume(bobs.token, T0 + 2 * MINUTE) == bob
    fresh = accounts.sign_in("alice", NEW_PASSWORD, T0 + 3 * MINUTE)
    assert accounts.resume(fresh.token, T0 + 3 * MINUTE) == alice


def test_signing_out_everywhere_ends_all_of_that_users_sessions_and_no_one_elses(accounts):
    alice, bob = register(accounts, "alice"), register(accounts, "bob")
    mine = [accounts.sign_in("alice", PASSWORD, T0, user_agent=agent) for agent in (FIREFOX_WINDOWS, CHROME_ANDROID)]
    bobs = accounts.sign_in("bob", PASSWORD, T0)

    assert accounts.sign_out_everywhere("Alice", T0 + MINUTE) == 2

    assert [accounts.resume(signed.token, T0 + MINUTE) for signed in mine] == [None, None]
    assert accounts.resume(bobs.token, T0 + MINUTE) == bob
    assert accounts.sign_out_everywhere("alice", T0 + MINUTE) == 0
    with pytest.raises(AccountMissing):
        accounts.sign_out_everywhere("nobody", T0 + MINUTE)
    assert accounts.resume(accounts.sign_in("alice", PASSWORD, T0 + MINUTE).token, T0 + MINUTE) == alice


def test_ending_one_session_works_only_on_ones_own(accounts):
    alice, bob = register(accounts, "alice"), register(accounts, "bob")
    laptop = accounts.sign_in("alice", PASSWORD, T0, user_agent=FIREFOX_WINDOWS)
    phone = accounts.sign_in("alice", PASSWORD, T0 + MINUTE, user_agent=CHROME_ANDROID)
    phone_id, laptop_id = (row.id for row in accounts.live_sessions(alice.user_id, T0 + MINUTE))

    assert accounts.end_session(bob.user_id, phone_id, T0 + 2 * MINUTE) is False
    assert accounts.end_session(bob.user_id, laptop_id, T0 + 2 * MINUTE) is False
    assert accounts.resume(phone.token, T0 + 2 * MINUTE) == alice
    assert accounts.resume(laptop.token, T0 + 2 * MINUTE) == alice

    assert accounts.end_session(alice.user_id, phone_id, T0 + 3 * MINUTE) is True
    assert accounts.resume(phone.token, T0 + 3 * MINUTE) is None
    assert accounts.resume(laptop.token, T0 + 3 * MINUTE) == alice
    assert accounts.end_session(alice.user_id, phone_id, T0 + 4 * MINUTE) is False  # already ended


def test_deleting_the_account_removes_its_sessions(accounts, engine):
    alice, bob = register(accounts, "alice"), register(accounts, "bob")
    mine = [accounts.sign_in("alice", PASSWORD, T0, user_agent=agent) for agent in (FIREFOX_WINDOWS, CHROME_ANDROID)]
    accounts.sign_out(mine[0].token, T0)  # an ended session is a row too
    bobs = accounts.sign_in("bob", PASSWORD, T0)

    accounts.delete_account("alice", PASSWORD, T0 + MINUTE)

    assert rows_of(engine, alice.user_id)["user_sessions"] == 0
    assert [accounts.resume(signed.token, T0 + MINUTE) for signed in mine] == [None, None]
    assert count(engine, UserSession) == 1
    assert accounts.resume(bobs.token, T0 + MINUTE) == bob


# --------------------------------------------------------------------------- devices


def test_devices_are_named_after_the_user_agent(accounts):
    alice = register(accounts, "alice")
    agents = {
        FIREFOX_WINDOWS: "Firefox on Windows",
        CHROME_ANDROID: "Chrome Mobile on Android",
        SAFARI_IPHONE: "Mobile Safari on iOS",
        CHROME_LINUX: "Chrome on Linux",
        "": "Unknown device",
        "   ": "Unknown device",
        "xyz": "Unknown device",
        "<script>alert(1)</script>": "Unknown device",
        "Mozilla/5.0 " + "x" * 5000: "Unknown device",
    }
    for minute, agent in enumerate(agents):
        accounts.sign_in("alice", PASSWORD, T0 + minute * MINUTE, user_agent=agent)

    listed = devices(accounts, alice.user_id, T0 + len(agents) * MINUTE)

    assert listed == list(reversed(agents.values()))


def test_live_sessions_lists_only_live_ones_most_recent_first(accounts):
    alice, bob = register(accounts, "alice"), register(accounts, "bob")
    now = T0 + 20 * DAY
    accounts.sign_in("alice", PASSWORD, T0, user_agent=CHROME_LINUX)  # unused for 20 days
    laptop = accounts.sign_in("alice", PASSWORD, now - 3 * DAY, user_agent=FIREFOX_WINDOWS)
    accounts.sign_in("alice", PASSWORD, now - 2 * DAY, user_agent=CHROME_ANDROID)
    accounts.sign_in("alice", PASSWORD, now - DAY, user_agent=SAFARI_IPHONE)
    gone = accounts.sign_in("alice", PASSWORD, now - DAY, user_agent=CHROME_LINUX)
    accounts.sign_out(gone.token, now - DAY)
    accounts.sign_in("bob", PASSWORD, now - DAY, user_agent=CHROME_LINUX)
    assert accounts.resume(laptop.token, now - MINUTE) == alice

    rows = accounts.live_sessions(alice.user_id, now)

    assert [row.device for row in rows] == ["Firefox on Windows", "Mobile Safari on iOS", "Chrome Mobile on Android"]
    assert [row.last_seen_at for row in rows] == [now - MINUTE, now - DAY, now - 2 * DAY]
    assert [row.created_at for row in rows] == [now - 3 * DAY, now - DAY, now - 2 * DAY]
    assert devices(accounts, bob.user_id, now) == ["Chrome on Linux"]


# --------------------------------------------------------------------------- command line


def test_the_sessions_command_lists_and_ends_an_accounts_sessions(console_settings, accounts):
    alice = register(accounts, "alice")
    register(accounts, "bob")
    # The command line lives in the present: these sessions are opened now.
    mine = [accounts.sign_in("alice", PASSWORD, user_agent=agent) for agent in (FIREFOX_WINDOWS, CHROME_ANDROID)]
    accounts.sign_out(accounts.sign_in("alice", PASSWORD, user_agent=SAFARI_IPHONE).token)
    bobs = accounts.sign_in("bob", PASSWORD, user_agent=CHROME_LINUX)

    listed = run_cli(console_settings, "sessions", "alice")

    assert (listed.returncode, listed.stderr) == (0, ""), listed.stderr
    head, *lines = listed.stdout.splitlines()
    assert head == "alice has 2 live sessions."
    assert len(lines) == 2
    assert lines[0].strip().startswith("Chrome Mobile on Android:")  # the most recent first
    assert lines[1].strip().startswith("Firefox on Windows:")
    assert "Safari" not in listed.stdout and "Linux" not in listed.stdout

    ended = run_cli(console_settings, "sessions", "ALICE", "--revoke-all")

    assert (ended.returncode, ended.stderr) == (0, ""), ended.stderr
    assert ended.stdout.splitlines() == ["Ended 2 sessions of alice."]
    assert [accounts.resume(signed.token) for signed in mine] == [None, None]
    assert accounts.resume(bobs.token) is not None, "nobody else is signed out"
    assert accounts.live_sessions(alice.user_id) == []
    again = run_cli(console_settings, "sessions", "alice")
    assert again.stdout.splitlines() == ["alice has 0 live sessions."]


def test_the_sessions_command_refuses_an_unknown_account_in_one_line(console_settings, accounts):
    register(accounts, "alice")

    for args in (("nobody",), ("nobody", "--revoke-all")):
        refused = run_cli(console_settings, "sessions", *args)

        assert refused.returncode == 1
        assert refused.stdout == ""
        assert refused.stderr.splitlines() == ["sessions: There is no account nobody."]


def test_the_data_download_lists_the_accounts_sessions_without_their_tokens(accounts, engine):
    alice = register(accounts, "alice")
    laptop = accounts.sign_in("alice", PASSWORD, T0, user_agent=FIREFOX_WINDOWS)
    phone = accounts.sign_in("alice", PASSWORD, T0 + MINUTE, user_agent=CHROME_ANDROID)
    accounts.sign_out(laptop.token, T0 + 2 * MINUTE)

    with session_factory(engine)() as session:
        export = queries.user_data(session, alice.user_id)

    assert [(row["device"], row["signed_out_at"]) for row in export["sign_in_sessions"]] == [
        ("Firefox on Windows", (T0 + 2 * MINUTE).isoformat()),
        ("Chrome Mobile on Android", None),
    ]
    assert laptop.token not in str(export) and phone.token not in str(export)
