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
from i18n import N_, _, age, moment, ngettext, number, percent
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
    "send reset code": N_("E-mail a reset code"),
    "lift wait": N_("Lift a sign-in wait"),
    "sign out everywhere": N_("Sign out everywhere"),
    "change role": N_("Change the role"),
    "delete account": N_("Delete the account"),
}
RUN_KINDS = {  # etl_runs.kind, as the runs table and the last failure show it
    "run": N_("run"),
    "backfill": N_("backfill"),
    "brands": N_("brands"),
    "places": N_("places"),
    "backup": N_("backup"),
    "restore": N_("restore"),
    "alerts": N_("alerts"),
}
RUN_STATUSES = {"success": N_("success"), "failed": N_("failed")}
UPDATE_FAILED = "failed: "  # how the scheduler's answer to a price update asked for starts when the pass failed


def engagement(figures: Engagement) -> None:
    columns = st.columns(4)
    columns[0].metric(_("Active, 7 days"), number(figures.active[7]))
    columns[1].metric(_("Active, 30 days"), number(figures.active[30]))
    columns[2].metric(_("With a station"), number(figures.with_stations))
    columns[3].metric(_("Stations followed"), number(figures.followed))
    widgets.caption(
        _("Active: used a signed-in session in that time. Reset codes: {} still usable, {} expired or used."),
        figures.codes_pending,
        figures.codes_spent,
    )
    st.subheader(_("Sign-ups per week"))
    week_of, sign_ups = _("Week of"), _("Sign-ups")
    weeks = pd.DataFrame(
        {week_of: [monday for monday, _n in figures.sign_ups], sign_ups: [n for _monday, n in figures.sign_ups]}
    )
    st.bar_chart(weeks, x=week_of, y=sign_ups, height=220)
    st.subheader(_("Most followed stations"))
    if not figures.most_followed:
        st.caption(_("Nobody follows a station yet."))
        return
    st.dataframe(
        pd.DataFrame(
            {
                _("Station"): [name for name, _n in figures.most_followed],
                _("Followers"): [n for _name, n in figures.most_followed],
            }
        ),
        hide_index=True,
        width="stretch",
    )


def alerts(figures: AlertFigures) -> None:
    """How many price alerts people set, of which kinds, and the alert e-mails of today."""
    st.subheader(_("Price alerts"))
    columns = st.columns(4)
    columns[0].metric(_("Alerts set"), number(figures.rules))
    columns[1].metric(_("People with alerts"), number(figures.people))
    columns[2].metric(_("Alert e-mails today"), number(figures.sent_today))
    columns[3].metric(_("Waiting to be sent"), number(figures.waiting))
    kinds = ", ".join(
        _("{kind}: {count}").format(kind=_(KIND_NAMES[kind]).lower(), count=number(n))
        for kind, n in sorted(figures.by_kind.items())
    )
    widgets.caption(_("{} paused. By kind: {}."), number(figures.paused), kinds or _("none yet"))


def pipeline(
    status: SchedulerStatus, runs: Sequence[RunRow], log: tuple[Path | None, list[str]], autostart: bool
) -> None:
    if status.alive:
        next_pass = moment(status.next_pass_at) if status.next_pass_at else _("as soon as it wakes")
        widgets.caption(
            _("The scheduler is running on {} (pid {}, started {}); next update {}."),
            status.host,
            status.pid,
            moment(status.started_at),
            next_pass,
        )
    elif autostart:
        st.warning(_("The scheduler is not running on this machine: the next visitor's session starts it again."))
    else:
        st.warning(_("The scheduler is not running, and ETL_AUTOSTART is off: start `python etl.py serve`."))
    if status.last_failure is not None:
        widgets.caption(
            _("Last failure {} ({}): {}"),
            moment(status.last_failure.started_at),
            _shown(RUN_KINDS, status.last_failure.kind),
            status.last_failure.error or "",
        )
    frame = pd.DataFrame(
        {
            _("Started"): [moment(run.started_at) for run in runs],
            _("Kind"): [_shown(RUN_KINDS, run.kind) for run in runs],
            _("Status"): [_shown(RUN_STATUSES, run.status) for run in runs],
            _("Stations"): [run.stations for run in runs],
            _("Prices"): [run.prices for run in runs],
            _("Changed"): [run.changes for run in runs],
            _("Rejected"): [run.rejected for run in runs],
            _("Seconds"): [round(run.duration_seconds, 1) for run in runs],
            _("Error"): [run.error or "" for run in runs],
        }
    )
    st.dataframe(frame, hide_index=True, width="stretch")
    if len(runs) > 1:
        st.subheader(_("Duration of the last runs (s)"))
        st.line_chart(frame.iloc[::-1].reset_index(drop=True)[[_("Seconds")]], height=200)
    path, lines = log
    title = ngettext("The scheduler's log: the last line", "The scheduler's log: the last {} lines", len(lines))
    with st.expander(title.format(len(lines)) if path else _("The scheduler's log")):
        if path is None:
            st.caption(_("No log on this machine yet."))
        else:
            widgets.caption("{}", path.name)
            st.code("".join(lines) or _("(empty)"), language=None)


def _shown(names: dict[str, str], code: str) -> str:
    """A code of the database in the active language; one this version does not know, as it is."""
    return _(names[code]) if code in names else code


def backfill_progress(row: BackfillProgress | None, now: dt.datetime) -> None:
    """How far the newest backfill went, and what to do when it stopped before the end."""
    if row is None or row.phase == DONE:
        return
    share = row.done / row.total if row.total else 0.0
    what = _("Reading the archive") if row.phase == LOADING else _("Computing the daily figures")
    st.progress(min(share, 1.0), text=widgets.md(_("Backfill of {}: {} ({})."), row.source, what, percent(share)))
    if now - row.updated_at > BACKFILL_STALLED:
        widgets.caption(
            _("Last progress {}: if it stopped, run the same backfill again; it resumes where it was."),
            age(row.updated_at, now),
        )


def update_button() -> bool:
    return st.button(
        _("Update prices now"), icon=":material/refresh:", help=_("Asks the running scheduler for a pass.")
    )


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
            shown.info(_("Waiting for the scheduler (it looks every few seconds)…"), icon=":material/schedule:")
        else:
            shown.info(_("The scheduler is loading the feed…"), icon=":material/sync:")
        time.sleep(UPDATE_POLL_SECONDS)  # the script's own thread: leaving the page ends the wait
    shown.warning(_("The scheduler has not answered yet. Is it running? The runs table shows the update once it ends."))
    return None


def done(kind: str, template: str, *values: object) -> None:
    """Say what an action did at the top of the page, drawn again so that every figure shows its effect."""
    st.session_state[NOTICE_KEY] = (kind, widgets.md(template, *values))
    st.rerun()


def answered(request: UpdateRequest) -> None:
    if request.outcome and request.outcome.startswith(UPDATE_FAILED):
        done("error", _("The update failed: {}"), request.outcome.removeprefix(UPDATE_FAILED))
    done("success", "{}", request.outcome or "")


def show_notice() -> None:
    kind, text = st.session_state.pop(NOTICE_KEY, (None, None))
    if kind is not None:
        {"success": st.success, "warning": st.warning, "error": st.error}[kind](text)


SERVICE_ACTIONS = {
    "back up": N_("Back up now"),
    "restore": N_("Restore a backup"),
    "restart": N_("Restart the scheduler"),
    "flush": N_("Remove expired and used reset codes"),
}


def _action_choice(actions: dict[str, str], key: str) -> str:
    """A row of actions, each shown in the active language; the code of the one chosen."""
    labels = {code: _(label) for code, label in actions.items()}
    return st.radio(_("Action"), list(actions), format_func=labels.get, horizontal=True, key=key)


def confirmed_service_action(backups: Sequence[str]) -> tuple[str, str | None] | None:
    """(action, the backup to restore) once confirmed; `backups`: the files of the backup target, newest first."""
    with st.form("service-action"):
        action = _action_choice(SERVICE_ACTIONS, "service-choice")
        chosen = st.selectbox(
            _("Backup to restore (for “Restore a backup”)"),
            backups,
            key="service-backup",
            placeholder=_("no backup yet"),
        )
        sure = st.checkbox(_("I confirm"), key="service-confirm")
        sent = st.form_submit_button(_("Apply to the service"))
    if sent and not sure:
        st.error(_("Tick “I confirm” first."))
    return (action, chosen) if sent and sure else None


def confirmed_account_action(people: Sequence[AccountRow]) -> tuple[str, str, str] | None:
    """(action, username, role) once confirmed."""
    with st.form("account-action"):
        username = st.selectbox(_("Account"), [person.username for person in people], key="admin-target")
        action = _action_choice(ACCOUNT_ACTIONS, "account-choice")
        role = st.selectbox(_("New role (for “Change the role”)"), ROLES, key="account-role")
        sure = st.checkbox(_("I confirm"), key="account-confirm")
        sent = st.form_submit_button(_("Apply to this account"))
    if sent and not sure:
        st.error(_("Tick “I confirm” first."))
    return (action, username, role) if sent and sure and username else None


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
                    _("{} is now an administrator.") if changed.role == "admin" else _("{} is now a user."),
                    changed.username,
                )
            elif action == "send reset code":
                if administration.send_reset_code(actor, username):
                    done("success", _("A reset code was sent to the address of {}."), username)
                else:
                    done("warning", _("No code was sent: {} already had 3 codes in the last hour."), username)
            elif action == "lift wait":
                administration.lift_wait(actor, username)
                done("success", _("{} can sign in again at once."), username)
            elif action == "sign out everywhere":
                ended = administration.sign_out_everywhere(actor, username)
                done(
                    "success",
                    ngettext(
                        "{} is signed out everywhere ({} session ended).",
                        "{} is signed out everywhere ({} sessions ended).",
                        ended,
                    ),
                    username,
                    ended,
                )
            elif action == "delete account":
                administration.delete_account(actor, username)
                done("success", _("The account {} is deleted, with all its data."), username)
        action, backup_name = service or (None, None)
        if action == "restart":
            done("success", _("The scheduler runs again (pid {})."), administration.restart_scheduler(actor))
        elif action == "flush":
            flushed = administration.flush_codes(actor)
            done("success", ngettext("{} reset code removed.", "{} reset codes removed.", flushed), flushed)
        elif action == "back up":
            done("success", "{}", administration.carry_out(actor, "back up", lambda: backup(engine, settings)))
        elif action == "restore" and backup_name is None:
            st.error(_("There is no backup to restore yet."))  # nothing changed: no need to draw the page again
        elif action == "restore":
            source = target_of(settings.backup_location).where(backup_name)
            done("success", "{}", administration.carry_out(actor, "restore", lambda: restore(engine, settings, source)))
    except (AccountError, MailError, StoreError, SchedulerError, BackupError) as exc:
        widgets.error("{}", exc)


def accounts_table(people: Sequence[AccountRow]) -> None:
    st.dataframe(
        pd.DataFrame(
            {
                _("Username"): [person.username for person in people],
                _("E-mail"): [person.email for person in people],
                _("Role"): [person.role for person in people],
                _("Created"): [moment(person.created_at) for person in people],
                _("Stations"): [person.stations for person in people],
            }
        ),
        hide_index=True,
        width="stretch",
    )


def audit_trail(rows: Sequence[AuditRow]) -> None:
    if not rows:
        st.caption(_("No action yet."))
        return
    st.dataframe(
        pd.DataFrame(
            {
                _("When"): [moment(row.at) for row in rows],
                _("Who"): [row.actor for row in rows],
                _("What"): [row.action for row in rows],
                _("On whom"): [row.target for row in rows],
                _("Detail"): [row.detail for row in rows],
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
