"""The admin console: engagement figures, the prices pipeline, and actions checked and audited on the server."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import threading
import time
from collections.abc import Iterator

import psutil
import pytest
from sqlalchemy import select, update

import i18n
from accounts.admin import Administration, NotAllowed
from accounts.engagement import engagement
from accounts.errors import SignInThrottled, WrongPassword
from app_helpers import (
    PASSWORD,
    App,
    button,
    errors,
    new_app,
    open_app,
    open_page,
    sign_in,
    successes,
    tables,
    warnings,
)
from backups.targets import backup_name
from conftest import FIXTURES, ROOT
from ingest import passes, pidfile, scheduler
from models import AdminAction, EtlRun, PassRequest, User, UserSession, VerificationCode
from prices import preferences, queries
from session import session_factory, writer
from ui import admin_ui
from utils import utcnow

FEED_A, FEED_B = FIXTURES / "feed_a.zip", FIXTURES / "feed_b.zip"


@pytest.fixture
def console(monkeypatch, data_dir) -> Iterator[App]:
    """The app on feed_a, with the administrator root and the users alice and bob; the feed URL is feed_b."""
    opened = open_app(monkeypatch, data_dir, CARBUROAM_FEED_URL=str(FEED_B))
    passes.run_pass(opened.engine, opened.settings, str(FEED_A))
    opened.accounts.create_admin("root", "root@example.org", PASSWORD)
    opened.register("alice")
    opened.register("bob")
    yield opened
    opened.engine.dispose()


def administration(app: App) -> Administration:
    engine = app.engine
    return Administration(app.accounts, app.settings, session_factory(engine), session_factory(writer(engine)))


def admin_page() -> object:
    at = new_app().run()
    sign_in(at, "root", PASSWORD)
    return open_page(at, "pages/admin.py")


def audit(app: App) -> list[tuple[str, int | None, str]]:
    with app.session() as session:
        rows = session.scalars(select(AdminAction).order_by(AdminAction.id))
        return [(row.action, row.target_id, row.detail) for row in rows]


def code_of(actions: dict[str, str], label: str) -> str:
    """The action a radio button's label stands for (the radio's values are codes, shown as labels)."""
    return next(code for code, shown in actions.items() if shown == label)


def act_on_account(at, action: str, username: str, role: str = "user", confirm: bool = True):
    at.selectbox(key="admin-target").set_value(username)
    at.radio(key="account-choice").set_value(code_of(admin_ui.ACCOUNT_ACTIONS, action))
    at.selectbox(key="account-role").set_value(role)
    at.checkbox(key="account-confirm").set_value(confirm)
    return button(at, "Apply to this account").click().run()


def act_on_service(at, action: str, confirm: bool = True, backup: str | None = None):
    at.radio(key="service-choice").set_value(code_of(admin_ui.SERVICE_ACTIONS, action))
    if backup is not None:
        at.selectbox(key="service-backup").set_value(backup)
    at.checkbox(key="service-confirm").set_value(confirm)
    return button(at, "Apply to the service").click().run()


# --------------------------------------------------------------------------- figures


def test_engagement_counts_accounts_activity_followed_stations_and_codes(console):
    alice, now = console.accounts.account("alice"), dt.datetime.now(dt.UTC)
    with console.session() as session, session.begin():
        preferences.follow_station(session, alice.user_id, 35200001, "Home")
        preferences.follow_station(session, alice.user_id, 64000001, "Work")
    console.accounts.sign_in("alice", PASSWORD)
    console.accounts.sign_in("root", PASSWORD)
    with console.session() as session, session.begin():  # root last came 10 days ago
        root = console.accounts.account("root")
        session.execute(
            update(UserSession)
            .where(UserSession.user_id == root.user_id)
            .values(last_seen_at=now - dt.timedelta(days=10))
        )
    console.accounts.recovery.request_password_reset("bob")

    with console.session() as session:
        figures = engagement(session, now)

    assert (figures.accounts, figures.active, figures.with_stations, figures.followed) == (3, {7: 1, 30: 2}, 1, 2)
    assert (figures.codes_pending, figures.codes_spent) == (1, 0)
    assert figures.sign_ups[-1][1] == 3 and sum(count for _, count in figures.sign_ups) == 3
    assert figures.sign_ups[-1][0].weekday() == 0, "weeks start on Monday"
    assert [count for _, count in figures.most_followed] == [1, 1]


def test_the_page_shows_the_figures_and_the_scheduler_log_as_text(console):
    console.settings.outputs_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"line {i} **not bold** <b>not html</b>\n" for i in range(300)]
    (console.settings.outputs_dir / "etl-20260101-000000-000000.log").write_text("".join(lines))

    at = admin_page()

    assert not at.exception
    metrics = {metric.label: metric.value for metric in at.metric}
    assert (metrics["Accounts"], metrics["Active, 7 days"], metrics["With a station"]) == ("3", "1", "0")
    (log,) = [code.value for code in at.code]
    assert log == "".join(lines[-200:]).rstrip("\n"), "the last 200 lines, exactly as written"


# --------------------------------------------------------------------------- price updates


def scheduler_answering(app: App, settings=None) -> threading.Thread:
    """The scheduler's part, in another thread: as soon as the page asks, one look (a pass not due, but asked)."""

    def look() -> None:
        deadline = time.monotonic() + 30
        while app.count(PassRequest) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        scheduler._scheduled_pass(app.engine, settings or app.settings)

    thread = threading.Thread(target=look)
    thread.start()
    return thread


def test_a_price_update_is_asked_of_the_scheduler_and_the_page_follows_it_to_the_end(console):
    with console.session() as session, session.begin():  # the last update was two hours ago
        two_hours_ago = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
        session.execute(update(EtlRun).values(started_at=two_hours_ago, finished_at=two_hours_ago))
    at = admin_page()
    assert list(tables(at)[1]["Status"]) == ["success"]
    assert {metric.label: metric.value for metric in at.metric}["Last update"] == "2 hr ago"
    answering = scheduler_answering(console)

    button(at, "Update prices now").click().run()
    answering.join()

    (message,) = successes(at)
    assert message.startswith("loaded 60 stations and ") and f"from {FEED_B} in " in message
    assert {metric.label: metric.value for metric in at.metric}["Last update"] == "just now"
    assert list(tables(at)[1]["Status"]) == ["success", "success"], "the page's figures are drawn again"
    assert audit(console) == [("update prices", None, "request 1")]


def test_without_a_scheduler_the_page_says_so_and_runs_no_pass_itself(console, monkeypatch):
    monkeypatch.setattr(admin_ui, "UPDATE_WAIT_SECONDS", 0.5)
    at = admin_page()

    button(at, "Update prices now").click().run()

    assert any("has not answered yet" in text for text in warnings(at))
    assert console.count(EtlRun) == 1, "the web process never runs a pass itself"
    assert console.count(PassRequest, PassRequest.started_at.is_(None)) == 1, "the request waits for the scheduler"


def test_a_failed_update_shows_why(console):
    at = admin_page()
    broken = dataclasses.replace(console.settings, feed_url=str(FIXTURES / "missing.zip"))
    answering = scheduler_answering(console, broken)

    button(at, "Update prices now").click().run()
    answering.join()

    (message,) = errors(at)
    assert message.startswith("The update failed: no feed file at ") and "missing.zip" in message


# --------------------------------------------------------------------------- actions on accounts


def test_roles_change_and_the_last_administrator_stays_one(console):
    at = act_on_account(admin_page(), "Change the role", "alice", "admin")
    assert successes(at) == ["alice is now an administrator."]
    assert console.accounts.account("alice").role == "admin"

    act_on_account(at, "Change the role", "alice", "user")
    act_on_account(at, "Change the role", "root", "user")
    assert errors(at) == ["root is the only administrator: make someone else one first."]
    assert console.accounts.account("root").role == "admin"
    alice = console.accounts.account("alice").user_id
    assert audit(console) == [("change role", alice, "user -> admin"), ("change role", alice, "admin -> user")]


def test_nothing_happens_without_confirmation(console):
    at = act_on_account(admin_page(), "Delete the account", "bob", confirm=False)
    assert errors(at) == ["Tick “I confirm” first."]
    assert console.accounts.account("bob") is not None and audit(console) == []


def test_a_sign_in_wait_is_lifted(console):
    for _ in range(6):
        with pytest.raises((WrongPassword, SignInThrottled)):
            console.accounts.sign_in("alice", "wrong password")
    with pytest.raises(SignInThrottled):
        console.accounts.sign_in("alice", PASSWORD)

    at = act_on_account(admin_page(), "Lift a sign-in wait", "alice")

    assert successes(at) == ["alice can sign in again at once."]
    assert console.accounts.sign_in("alice", PASSWORD).account.username == "alice"


def test_signing_someone_out_everywhere_and_deleting_an_account(console):
    console.accounts.sign_in("bob", PASSWORD)
    bob = console.accounts.account("bob").user_id
    at = act_on_account(admin_page(), "Sign out everywhere", "bob")
    assert successes(at) == ["bob is signed out everywhere (1 session ended)."]
    assert console.accounts.live_sessions(bob) == []

    act_on_account(at, "Delete the account", "bob")

    assert successes(at) == ["The account bob is deleted, with all its data."]
    assert "bob" not in console.entries() and console.count(User, User.id == bob) == 0
    (accounts,) = [table for table in tables(at) if "Username" in table]
    assert list(accounts["Username"]) == ["root", "alice"], "the page is drawn again without the account"
    trail = tables(at)[-1]
    assert list(trail["What"]) == ["Deleted an account", "Signed out everywhere"]
    assert list(trail["On whom"]) == [f"deleted account #{bob}"] * 2, "the trail names nobody once the account is gone"


def test_an_administrator_cannot_delete_their_own_account_here(console):
    at = act_on_account(admin_page(), "Delete the account", "root")
    assert errors(at) == ["Delete your own account from your profile page."]
    assert console.accounts.account("root") is not None


def test_a_reset_code_is_e_mailed_and_spent_codes_are_flushed(console):
    at = act_on_account(admin_page(), "E-mail a reset code", "alice")
    assert successes(at) == ["A reset code was sent to the address of alice."]
    assert any(console.settings.mail_dir.glob("*.eml")), "the mail went out (to files: no SMTP here)"
    with console.session() as session, session.begin():
        session.execute(update(VerificationCode).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)))

    act_on_service(at, "Remove expired and used reset codes")

    assert successes(at) == ["1 reset code removed."]
    assert console.count(VerificationCode) == 0


# --------------------------------------------------------------------------- checked on the server


def test_every_action_checks_the_role_on_the_server_at_the_time_of_the_action(console):
    service = administration(console)
    with pytest.raises(NotAllowed):
        service.lift_wait("alice", "bob")
    service.change_role("root", "alice", "admin")
    service.change_role("alice", "root", "user")  # another administrator demotes root meanwhile

    for action in (
        lambda: service.request_price_update("root"),
        lambda: service.flush_codes("root"),
        lambda: service.delete_account("root", "bob"),
        lambda: service.send_reset_code("root", "bob"),
    ):
        with pytest.raises(NotAllowed):
            action()
    assert [action for action, _, _ in audit(console)] == ["change role", "change role"]
    assert console.accounts.account("bob") is not None


def test_restarting_the_scheduler_starts_a_new_one(monkeypatch, data_dir):
    app = open_app(monkeypatch, data_dir, CARBUROAM_FEED_URL=str(FEED_A), ETL_AUTOSTART="on")
    app.accounts.create_admin("root", "root@example.org", PASSWORD)
    started = [scheduler.ensure_scheduler(app.settings)]
    try:
        started.append(administration(app).restart_scheduler("root"))

        assert started[1] != started[0] and not psutil.pid_exists(started[0])
        assert pidfile.running_scheduler(app.settings.pid_file) == started[1]
        assert psutil.Process(started[1]).cmdline()[-2:] == [str(ROOT / "etl.py"), "serve"]
        assert [(action, detail) for action, _, detail in audit(app)] == [
            ("restart scheduler", f"new pid {started[1]}")
        ]
    finally:
        for pid in started:
            if psutil.pid_exists(pid):
                os.kill(pid, signal.SIGTERM)
                psutil.Process(pid).wait(timeout=30)
        app.engine.dispose()


def test_a_backup_now_and_its_restore_bring_back_what_people_follow(console):
    alice = console.accounts.account("alice")
    with console.session() as session, session.begin():
        preferences.follow_station(session, alice.user_id, 35200001, "Home")

    at = act_on_service(admin_page(), "Back up now")

    (message,) = successes(at)
    assert message.startswith("backed up 3 accounts") and "1 followed stations" in message
    (kept,) = [path.name for path in (console.settings.data_dir / "backups").iterdir()]
    with console.session() as session, session.begin():
        preferences.unfollow_station(session, alice.user_id, 35200001)

    act_on_service(at, "Restore a backup", backup=kept)

    (message,) = successes(at)
    assert message.startswith("restored 3 accounts")
    with console.session() as session:
        assert dict(queries.user_favourites(session, alice.user_id)) == {35200001: "Home"}
    assert [action for action, _, _ in audit(console)] == ["back up", "restore"]
    assert list(tables(at)[-1]["What"]) == ["Restored a backup", "Backed up"]


def test_an_administrator_reading_french_reads_the_runs_and_the_backups_outcomes_in_french(console):
    with console.session() as session, session.begin():
        session.execute(update(User).where(User.username == "root").values(language="fr"))
    at = admin_page()

    def french(message: str) -> str:
        with i18n.using("fr"):
            return i18n._(message)

    def act(action: str, backup: str | None = None) -> None:
        at.radio(key="service-choice").set_value(code_of(admin_ui.SERVICE_ACTIONS, action))
        if backup is not None:
            at.selectbox(key="service-backup").set_value(backup)
        at.checkbox(key="service-confirm").set_value(True)
        button(at, french("Apply to the service")).click().run()

    runs = tables(at)[1]
    assert (list(runs["Type"]), list(runs["État"])) == (["mise à jour"], ["réussite"])
    act("Back up now")
    (message,) = successes(at)
    assert message.startswith("sauvegarde de 3 comptes (3 entrées d'identifiants), 0 stations suivies"), message
    damaged = console.settings.data_dir / "backups" / backup_name(utcnow())
    damaged.write_bytes(b"not a backup")
    at.run()  # the list of backups to restore is read as the page is drawn
    act("Restore a backup", backup=damaged.name)
    (message,) = errors(at)
    assert message == (
        f"{damaged} a été refusé, rien n'a été modifié : le fichier est corrompu ou n'est pas un fichier gzip "
        "(Not a gzipped file (b'no'))"
    )


def test_restoring_without_any_backup_says_so(console):
    at = act_on_service(admin_page(), "Restore a backup")
    assert errors(at) == ["There is no backup to restore yet."]
    assert audit(console) == []
