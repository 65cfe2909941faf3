"""What administrators do, each action allowed only to an account that is an administrator now.

Every action reads the actor's role afresh from the credentials document (a role removed a second
ago counts, whatever the actor's page still shows), does its work, and writes who did what, when
and to whom to the `admin_actions` audit trail, which the admin page shows. People are kept there
as user ids: an account deleted since names nobody. No action shows or sets a password: a person
locked out gets a reset code by e-mail.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, aliased

from accounts.entries import entry_of, role_of, users_in
from accounts.errors import AccountError, AccountMissing
from accounts.service import Accounts
from accounts.users import Account
from i18n import N_
from ingest import scheduler
from models import AdminAction, PassRequest, User, VerificationCode
from settings import Settings
from utils import utcnow

ROLES = ("user", "admin")
LABELS = {
    "update prices": "Asked for a price update",
    "restart scheduler": "Restarted the scheduler",
    "flush codes": "Removed expired and used codes",
    "lift wait": "Lifted a sign-in wait",
    "change role": "Changed a role",
    "sign out everywhere": "Signed out everywhere",
    "delete account": "Deleted an account",
    "send reset code": "E-mailed a reset code",
    "back up": "Backed up",
    "restore": "Restored a backup",
}


class NotAllowed(AccountError):
    """The actor is not an administrator (any more), or the action would lock administrators out."""


@dataclass(frozen=True)
class AuditRow:
    at: dt.datetime
    actor: str
    action: str
    target: str
    detail: str


@dataclass(frozen=True)
class UpdateRequest:
    """Where a price update asked for stands: waiting for the scheduler, running, or answered."""

    requested_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    outcome: str | None


class Administration:
    def __init__(self, accounts: Accounts, settings: Settings, reader, writer) -> None:
        self._accounts = accounts
        self._settings = settings
        self._reader = reader
        self._writer = writer

    # ----------------------------------------------------------------- the service

    def request_price_update(self, actor: str) -> int:
        """Ask the running scheduler for a pass (never run here, in a web process); the request's id."""
        admin = self._admin(actor)
        with self._writer.begin() as session:
            request = PassRequest(requested_at=utcnow(), requested_by=admin.user_id)
            session.add(request)
            session.flush()
            self._record(session, admin, "update prices", None, f"request {request.id}")
            return request.id

    def update_request(self, request_id: int) -> UpdateRequest | None:
        with self._reader() as session:
            row = session.get(PassRequest, request_id)
            if row is None:
                return None
            return UpdateRequest(row.requested_at, row.started_at, row.finished_at, row.outcome)

    def restart_scheduler(self, actor: str) -> int:
        """Stop this machine's scheduler (a pass under way rolls back) and start a new one; its pid."""
        admin = self._admin(actor)
        pid = scheduler.restart_scheduler(self._settings)
        with self._writer.begin() as session:
            self._record(session, admin, "restart scheduler", None, f"new pid {pid}")
        return pid

    def carry_out(self, actor: str, action: str, work: Callable[[], str]) -> str:
        """Do `work`, an action another package owns (a backup, say), checked and recorded like the others;
        the line it reports."""
        admin = self._admin(actor)
        summary = work()
        with self._writer.begin() as session:
            self._record(session, admin, action, None, summary)
        return summary

    def flush_codes(self, actor: str, now: dt.datetime | None = None) -> int:
        """Remove the recovery codes that expired or were used; how many."""
        admin = self._admin(actor)
        now = now or utcnow()
        with self._writer.begin() as session:
            spent = (VerificationCode.expires_at <= now) | VerificationCode.used_at.is_not(None)
            removed = session.execute(delete(VerificationCode).where(spent)).rowcount
            self._record(session, admin, "flush codes", None, f"{removed} removed")
        return removed

    # ----------------------------------------------------------------- one person's account

    def lift_wait(self, actor: str, username: str) -> None:
        """Forget the wrong passwords typed for `username`: the next sign-in is checked at once."""
        admin, target = self._admin(actor), self._target(username)
        self._accounts.throttle.clear(target.username)
        with self._writer.begin() as session:
            self._record(session, admin, "lift wait", target)

    def change_role(self, actor: str, username: str, role: str) -> Account:
        """Make `username` an administrator or a plain user; never the last administrator a plain user."""
        admin, target = self._admin(actor), self._target(username)
        if role not in ROLES:
            raise NotAllowed(N_("A role is one of {roles}."), roles=", ".join(ROLES))

        def change(document):
            entry = entry_of(document, target.username)
            admins = [name for name, other in users_in(document).items() if role_of(other) == "admin"]
            if role == "user" and admins == [target.username]:
                raise NotAllowed(
                    N_("{username} is the only administrator: make someone else one first."), username=target.username
                )
            entry["roles"] = ["user", "admin"] if role == "admin" else ["user"]
            return dict(entry)

        changed = Account.of(
            self._accounts.users.synced(target.username, self._accounts.store.update(change), utcnow())
        )
        with self._writer.begin() as session:
            self._record(session, admin, "change role", target, f"{target.role} -> {role}")
        return changed

    def sign_out_everywhere(self, actor: str, username: str) -> int:
        """End every session of `username`; how many were live."""
        admin, target = self._admin(actor), self._target(username)
        ended = self._accounts.sign_out_everywhere(target.username)
        with self._writer.begin() as session:
            self._record(session, admin, "sign out everywhere", target, f"{ended} sessions ended")
        return ended

    def delete_account(self, actor: str, username: str) -> None:
        """Delete someone else's account with every row and file of it (one's own goes from the profile)."""
        admin, target = self._admin(actor), self._target(username)
        if target.user_id == admin.user_id:
            raise NotAllowed(N_("Delete your own account from your profile page."))
        self._accounts.remove_account(target.username)
        with self._writer.begin() as session:
            self._record(session, admin, "delete account", target)

    def send_reset_code(self, actor: str, username: str) -> bool:
        """E-mail `username` a password-reset code; False when three were sent in the last hour."""
        admin, target = self._admin(actor), self._target(username)
        sent = self._accounts.recovery.request_password_reset(target.username)
        with self._writer.begin() as session:
            self._record(session, admin, "send reset code", target, "sent" if sent else "not sent: 3 in the last hour")
        return sent

    # ----------------------------------------------------------------- the audit trail

    def audit_trail(self, limit: int = 50) -> list[AuditRow]:
        """The newest actions first, people named by their username while their account exists."""
        actor, target = aliased(User), aliased(User)
        query = (
            select(AdminAction, actor.username, target.username)
            .outerjoin(actor, actor.id == AdminAction.actor_id)
            .outerjoin(target, target.id == AdminAction.target_id)
            .order_by(AdminAction.at.desc(), AdminAction.id.desc())
            .limit(limit)
        )
        with self._reader() as session:
            return [
                AuditRow(
                    row.at,
                    actor_name or f"deleted account #{row.actor_id}",
                    LABELS.get(row.action, row.action),
                    _named(row.target_id, target_name),
                    row.detail,
                )
                for row, actor_name, target_name in session.execute(query)
            ]

    def actions_count(self) -> int:
        with self._reader() as session:
            return session.scalar(select(func.count()).select_from(AdminAction))

    # ----------------------------------------------------------------- checks

    def _admin(self, username: str) -> Account:
        account = self._accounts.account(username)
        if account is None or account.role != "admin":
            raise NotAllowed(N_("Only administrators can do this; your role may have changed: reload the page."))
        return account

    def _target(self, username: str) -> Account:
        account = self._accounts.account(username)
        if account is None:
            raise AccountMissing(N_("There is no account {username} any more."), username=username)
        return account

    @staticmethod
    def _record(session: Session, admin: Account, action: str, target: Account | None, detail: str = "") -> None:
        session.add(
            AdminAction(
                at=utcnow(),
                actor_id=admin.user_id,
                action=action,
                target_id=target.user_id if target else None,
                detail=detail,
            )
        )


def _named(user_id: int | None, username: str | None) -> str:
    if user_id is None:
        return ""
    return username or f"deleted account #{user_id}"
