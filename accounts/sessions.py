"""Server-side sign-in sessions: one `user_sessions` row per signed-in browser.

The browser's cookie carries a random token (from `secrets`); the row is keyed by the token's
SHA-256, so a copy of the database signs nobody in. A session is live until it is revoked (sign
out, password change or reset, an administrator), reaches its absolute lifetime, or goes unused
for the idle timeout; whatever the browser kept, a session that is not live signs nobody in.

Every function takes a `Session` (inside a transaction the caller opened, for those that write)
and returns plain rows.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import secrets
from dataclasses import dataclass
from typing import NamedTuple

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from i18n import N_
from models import User, UserSession

TOKEN_BYTES = 32
TOUCH_EVERY = dt.timedelta(minutes=1)  # last_seen_at is written at most this often
DEAD_ROWS_KEPT = dt.timedelta(days=1)  # revoked or ended sessions are pruned this long after
DEVICE_MAX_CHARS = 80
UNKNOWN_DEVICE = N_("Unknown device")  # stored as it is; the profile shows it translated
DEVICE_ON = " on "  # joins a stored device's browser and system, 'Firefox on Windows'; the profile translates it


@dataclass(frozen=True)
class SessionPolicy:
    lifetime: dt.timedelta  # absolute: from sign-in
    idle: dt.timedelta  # since the session was last used


class LiveSession(NamedTuple):
    id: str
    user: User
    last_seen_at: dt.datetime


class SessionRow(NamedTuple):
    id: str
    device: str
    created_at: dt.datetime
    last_seen_at: dt.datetime


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


def session_id(token: str) -> str:
    """The row id of the session a token opens: its SHA-256, never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def _live(now: dt.datetime, policy: SessionPolicy) -> tuple:
    return (
        UserSession.revoked_at.is_(None),
        UserSession.expires_at > now,
        UserSession.last_seen_at > now - policy.idle,
    )


def open_session(session: Session, user_id: int, device: str, now: dt.datetime, policy: SessionPolicy) -> str:
    """Start a session for `user_id`; returns the token for the cookie (shown nowhere else)."""
    _prune(session, user_id, now, policy)
    token = new_token()
    session.add(
        UserSession(
            id=session_id(token),
            user_id=user_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + policy.lifetime,
            device=device[:DEVICE_MAX_CHARS] or UNKNOWN_DEVICE,
        )
    )
    return token


def _prune(session: Session, user_id: int, now: dt.datetime, policy: SessionPolicy) -> None:
    dead_since = now - DEAD_ROWS_KEPT
    session.execute(
        delete(UserSession).where(
            UserSession.user_id == user_id,
            or_(
                UserSession.revoked_at < dead_since,
                UserSession.expires_at < dead_since,
                UserSession.last_seen_at < dead_since - policy.idle,
            ),
        )
    )


def live_session(session: Session, token: str, now: dt.datetime, policy: SessionPolicy) -> LiveSession | None:
    """The live session a token opens, with its user; None when unknown, revoked, expired or idle too long."""
    row = session.execute(
        select(UserSession.id, User, UserSession.last_seen_at)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.id == session_id(token), *_live(now, policy))
    ).first()
    return None if row is None else LiveSession(*row)


def needs_touch(live: LiveSession, now: dt.datetime) -> bool:
    return now - live.last_seen_at >= TOUCH_EVERY


def touch(session: Session, id_: str, now: dt.datetime) -> None:
    """Record that the session was used now (it stays live for another idle timeout)."""
    session.execute(
        update(UserSession).where(UserSession.id == id_, UserSession.revoked_at.is_(None)).values(last_seen_at=now)
    )


def revoke(session: Session, id_: str, user_id: int, now: dt.datetime) -> bool:
    """End one session of `user_id` (never another user's); whether a live one was ended."""
    result = session.execute(
        update(UserSession)
        .where(UserSession.id == id_, UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount > 0


def revoke_all(session: Session, user_id: int, now: dt.datetime) -> int:
    """End every session of `user_id`; returns how many were still open."""
    result = session.execute(
        update(UserSession)
        .where(UserSession.user_id == user_id, UserSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return result.rowcount


def live_sessions(session: Session, user_id: int, now: dt.datetime, policy: SessionPolicy) -> list[SessionRow]:
    """The live sessions of `user_id`, most recently used first."""
    rows = session.execute(
        select(UserSession.id, UserSession.device, UserSession.created_at, UserSession.last_seen_at)
        .where(UserSession.user_id == user_id, *_live(now, policy))
        .order_by(UserSession.last_seen_at.desc(), UserSession.created_at.desc())
    )
    return [SessionRow(*row) for row in rows]


@functools.lru_cache(maxsize=256)
def device_label(user_agent: str) -> str:
    """'Firefox on Windows', 'Mobile Safari on iOS'... from a User-Agent header."""
    if not user_agent.strip():
        return UNKNOWN_DEVICE
    # Imported here: ua-parser compiles its rules on first use (about half a second), at the first sign-in.
    from ua_parser import parse

    parsed = parse(user_agent[:1000]).with_defaults()
    browser, system = parsed.user_agent.family, parsed.os.family
    if browser == "Other" and system == "Other":
        return UNKNOWN_DEVICE
    if system == "Other":
        return browser[:DEVICE_MAX_CHARS]
    return f"{browser}{DEVICE_ON}{system}"[:DEVICE_MAX_CHARS]


def device_parts(device: str) -> tuple[str, str | None]:
    """('Firefox', 'Windows') of a stored 'Firefox on Windows'; (device, None) for a browser alone."""
    browser, on, system = device.rpartition(DEVICE_ON)
    return (browser, system) if on else (device, None)
