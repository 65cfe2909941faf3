"""The admin page's panels: people's engagement, the prices pipeline, the actions and their audit trail.

Each function draws; the figures come from accounts.engagement, ingest.scheduler and prices.queries,
and every action goes through accounts.admin, which checks the role on the server and records it.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import streamlit as st

from accounts.admin import ROLES, AuditRow, UpdateRequest
from accounts.engagement import Engagement
from accounts.errors import AccountError
from accounts.store import StoreError
from alerts.outbox import Figures as AlertFigures
from alerts.texts import KIND_NAMES
from backups.archive import BackupError
from backups.service import backup, restore
from backups.targets import target_of
from ingest.progress import DONE, LOADING
from ingest.scheduler import SchedulerError, SchedulerStatus
from mailer import MailError
from models import BackfillProgress
from prices.queries import AccountRow, RunRow
from ui import widgets

NOTICE_KEY = "admin-notice"  # what the last action did, shown at the top of the page drawn again after it
UPDATE_WAIT_SECONDS = 600.0
UPDATE_POLL_SECONDS = 1.0
BACKFILL_STALLED = dt.timedelta(minutes=10)  # a batch commits far more often than this
ACCOUNT_ACTIONS = {
    "E-mail a reset code": "send reset code",
    "Lift a sign-in wait": "lift wait",
    "Sign out everywhere": "sign out everywhere",
    "Change the role": "change role",
    "Delete the account": "delete account",
}


def engagement(figures: Engagement) -> None:
    columns = st.columns(4)
    columns[0].metric("Active, 7 days", f"{figures.active[7]:,}")
    columns[1].metric("Active, 30 days", f"{figures.active[30]:,}")
    columns[2].metric("With a station", f"{figures.with_stations:,}")
    columns[3].metric("Stations followed", f"{figures.followed:,}")
    widgets.caption(
        "Active: used a signed-in session in that time. Reset codes: {} still usable, {} expired or used.",
        figures.codes_pending,
        figures.codes_spent,
    )
    st.subheader("Sign-ups per week")
    weeks = pd.DataFrame(
        {"Week of": [monday for monday, _ in figures.sign_ups], "Sign-ups": [n for _, n in figures.sign_ups]}
    )
    st.bar_chart(weeks, x="Week of", y="Sign-ups", height=220)
    st.subheader("Most followed stations")
    if not figures.most_followed:
        st.caption("Nobody follows a station yet.")
        return
    st.dataframe(
        pd.DataFrame(
            {"Station": [name for name, _ in figures.most_followed], "Followers": [n for _, n in figures.most_followed]}
        ),
        hide_index=True,
        width="stretch",
    )


def alerts(figures: AlertFigures) -> None:
    """How many price alerts people set, of which kinds, and the alert e-mails of today."""
    st.subheader("Price alerts")
    columns = st.columns(4)
    columns[0].metric("Alerts set", f"{figures.rules:,}")
    columns[1].metric("People with alerts", f"{figures.people:,}")
    columns[2].metric("Alert e-mails today", f"{figures.sent_today:,}")
    columns[3].metric("Waiting to be sent", f"{figures.waiting:,}")
    kinds = ", ".join(f"{KIND_NAMES[kind].lower()}: {n:,}" for kind, n in sorted(figures.by_kind.items()))
    widgets.caption("{} paused. By kind: {}.", f"{figures.paused:,}", kinds or "none yet")


def pipeline(
    status: SchedulerStatus, runs: Sequence[RunRow], log: tuple[Path | None, list[str]], autostart: bool
) -> None:
    if status.alive:
        next_pass = widgets.paris_time(status.next_pass_at) if status.next_pass_at else "as soon as it wakes"
        widgets.caption(
            "The scheduler is running on {} (pid {}, since {}); next update {}.",
            status.host,
            status.pid,
            widgets.paris_time(status.started_at),
            next_pass,
        )
    elif autostart:
        st.warning("The scheduler is not running on this machine: the next visitor's session starts it again.")
    else:
        st.warning("The scheduler is not running, and ETL_AUTOSTART is off: start `python etl.py serve`.")
    if status.last_failure is not None:
        widgets.caption(
            "Last failure: {} ({}): {}",
            widgets.paris_time(status.last_failure.started_at),
            status.last_failure.kind,
            status.last_failure.error or "",
        )
    frame = pd.DataFrame(
        {
            "Started": [widgets.paris_time(run.started_at) for run in runs],
            "Kind": [run.kind for run in runs],
            "Status": [run.status for run in runs],
            "Stations": [run.stations for run in runs],
            "Prices": [run.prices for run in runs],
            "Changed": [run.changes for run in runs],
            "Rejected": [run.rejected for run in runs],
            "Seconds": [round(run.duration_seconds, 1) for run in runs],
            "Error": [run.error or "" for run in runs],
        }
    )
    st.dataframe(frame, hide_index=True, width="stretch")
    if len(runs) > 1:
        st.subheader("Duration of the last runs (s)")
        st.line_chart(frame.iloc[::-1].reset_index(drop=True)[["Seconds"]], height=200)
    path, lines = log
    with st.expander(f"The scheduler's log: the last {len(lines)} lines" if path else "The scheduler's log"):
        if path is None:
            st.caption("No log on this machine yet.")
        else:
            widgets.caption("{}", path.name)
            st.code("".join(lines) or "(empty)", language=None)


def backfill_progress(row: BackfillProgress | None, now: dt.datetime) -> None:
    """How far the newest backfill went, and what to do when it stopped before the end."""
    if row is None or row.phase == DONE:
        return
    share = row.done / row.total if row.total else 0.0
    what = "Reading the archive" if row.phase == LOADING else "Computing the daily figures"
    st.progress(min(share, 1.0), text=widgets.md("Backfill of {}: {} ({}).", row.source, what, f"{share:.0%}"))
    if now - row.updated_at > BACKFILL_STALLED:
        widgets.caption(
            "No progress since {}: if it stopped, run the same backfill again; it resumes where it was.",
            widgets.paris_time(row.updated_at),
        )


def update_button() -> bool:
    return st.button("Update prices now", icon=":material/refresh:", help="Asks the running scheduler for a pass.")


def follow_update(administration, request_id: int) -> UpdateRequest | None:
    """Show where the price update asked for stands until the scheduler answers it; the answer, or None
    after UPDATE_WAIT_SECONDS (the runs table shows the pass when it ends)."""
    shown = st.empty()
    deadline = time.monotonic() + UPDATE_WAIT_SECONDS
    while time.monotonic() < deadline:
        request = administration.update_request(request_id)
        if request is None or request.finished_at is not None:
            shown.empty()
            return request
        if request.started_at is None:
            shown.info("Waiting for the scheduler (it looks every few seconds)…", icon=":material/schedule:")
        else:
            shown.info("The scheduler is loading the feed…", icon=":material/sync:")
        time.sleep(UPDATE_POLL_SECONDS)  # the script's own thread: leaving the page ends the wait
    shown.warning("The scheduler has not answered yet. Is it running? The runs table shows the update once it ends.")
    return None


def done(kind: str, template: str, *values: object) -> None:
    """Say what an action did at the top of the page, drawn again so that every figure shows its effect."""
    st.session_state[NOTICE_KEY] = (kind, widgets.md(template, *values))
    st.rerun()


def answered(request: UpdateRequest) -> None:
    if request.outcome and request.outcome.startswith("failed"):
        done("error", "The update {}", request.outcome)
    done("success", "{}", request.outcome or "")


def show_notice() -> None:
    kind, text = st.session_state.pop(NOTICE_KEY, (None, None))
    if kind is not None:
        {"success": st.success, "warning": st.warning, "error": st.error}[kind](text)


SERVICE_ACTIONS = {
    "Back up now": "back up",
    "Restore a backup": "restore",
    "Restart the scheduler": "restart",
    "Remove expired and used reset codes": "flush",
}


def confirmed_service_action(backups: Sequence[str]) -> tuple[str, str | None] | None:
    """(action, the backup to restore) once confirmed; `backups`: the files of the backup target, newest first."""
    with st.form("service-action"):
        label = st.radio("Action", list(SERVICE_ACTIONS), horizontal=True, key="service-choice")
        chosen = st.selectbox(
            "Backup to restore (for “Restore a backup”)", backups, key="service-backup", placeholder="no backup yet"
        )
        sure = st.checkbox("I confirm", key="service-confirm")
        sent = st.form_submit_button("Apply to the service")
    if sent and not sure:
        st.error("Tick “I confirm” first.")
    return (SERVICE_ACTIONS[label], chosen) if sent and sure else None


def confirmed_account_action(people: Sequence[AccountRow]) -> tuple[str, str, str] | None:
    """(action, username, role) once confirmed."""
    with st.form("account-action"):
        username = st.selectbox("Account", [person.username for person in people], key="admin-target")
        label = st.radio("Action", list(ACCOUNT_ACTIONS), horizontal=True, key="account-choice")
        role = st.selectbox("New role (for “Change the role”)", ROLES, key="account-role")
        sure = st.checkbox("I confirm", key="account-confirm")
        sent = st.form_submit_button("Apply to this account")
    if sent and not sure:
        st.error("Tick “I confirm” first.")
    return (ACCOUNT_ACTIONS[label], username, role) if sent and sure and username else None


def carry_out(app, actor: str, chosen: tuple[str, str, str] | None, service: tuple[str, str | None] | None) -> None:
    """Do the confirmed actions as `actor` (the service checks the role again) and say how it went."""
    administration, engine, settings = app.administration, app.engine, app.settings
    try:
        if chosen is not None:
            action, username, role = chosen
            if action == "change role":
                changed = administration.change_role(actor, username, role)
                done(
                    "success",
                    "{} is now {}.",
                    changed.username,
                    "an administrator" if changed.role == "admin" else "a user",
                )
            elif action == "send reset code":
                if administration.send_reset_code(actor, username):
                    done("success", "A reset code was sent to the address of {}.", username)
                else:
                    done("warning", "No code was sent: {} already had 3 codes in the last hour.", username)
            elif action == "lift wait":
                administration.lift_wait(actor, username)
                done("success", "{} can sign in again at once.", username)
            elif action == "sign out everywhere":
                ended = administration.sign_out_everywhere(actor, username)
                done("success", "{} is signed out everywhere ({} sessions ended).", username, ended)
            elif action == "delete account":
                administration.delete_account(actor, username)
                done("success", "The account {} is deleted, with all its data.", username)
        action, backup_name = service or (None, None)
        if action == "restart":
            done("success", "The scheduler runs again (pid {}).", administration.restart_scheduler(actor))
        elif action == "flush":
            done("success", "{} reset codes removed.", administration.flush_codes(actor))
        elif action == "back up":
            done("success", "{}", administration.carry_out(actor, "back up", lambda: backup(engine, settings)))
        elif action == "restore" and backup_name is None:
            st.error("There is no backup to restore yet.")  # nothing changed: no need to draw the page again
        elif action == "restore":
            source = target_of(settings.backup_location).where(backup_name)
            done("success", "{}", administration.carry_out(actor, "restore", lambda: restore(engine, settings, source)))
    except (AccountError, MailError, StoreError, SchedulerError, BackupError) as exc:
        widgets.error("{}", exc)


def accounts_table(people: Sequence[AccountRow]) -> None:
    st.dataframe(
        pd.DataFrame(
            {
                "Username": [person.username for person in people],
                "E-mail": [person.email for person in people],
                "Role": [person.role for person in people],
                "Created": [widgets.paris_time(person.created_at) for person in people],
                "Stations": [person.stations for person in people],
            }
        ),
        hide_index=True,
        width="stretch",
    )


def audit_trail(rows: Sequence[AuditRow]) -> None:
    if not rows:
        st.caption("No action yet.")
        return
    st.dataframe(
        pd.DataFrame(
            {
                "When": [widgets.paris_time(row.at) for row in rows],
                "Who": [row.actor for row in rows],
                "What": [row.action for row in rows],
                "On whom": [row.target for row in rows],
                "Detail": [row.detail for row in rows],
            }
        ),
        hide_index=True,
        width="stretch",
    )


def backups_kept(location: str) -> list[str]:
    """The backup files of the target, newest first; none when it cannot be read (a restore says why)."""
    try:
        return list(reversed(target_of(location).names()))
    except BackupError:
        return []
