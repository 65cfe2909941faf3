"""The one-click unsubscribe: a token signed with a server secret, valid forever, that stops alert mails.

The token is the user id and an HMAC-SHA256 of it and the account's creation time, keyed with a secret
kept in the credentials document (never in the database): it cannot be forged, and it never unsubscribes
a later account that happens to get the same id. Using it pauses every alert of the account and drops the
mails waiting to be sent; using it again changes nothing.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from typing import NamedTuple
from urllib.parse import quote

from sqlalchemy import delete
from sqlalchemy.orm import Session

from accounts.store import CredentialStore, document_secret
from alerts import texts
from alerts.rules import pause_all
from i18n import _
from models import AlertOutbox, User

DOCUMENT_FIELD = "unsubscribe_key"  # where the credentials document keeps the secret
SIGNATURE_BYTES = 16


class TokenRefused(ValueError):
    """The token was cut or changed; the message says so to the person who opened the link, in the active language."""

    def __init__(self, message: str = texts.LINK_REFUSED) -> None:
        super().__init__(_(message))


class Unsubscribed(NamedTuple):
    email: str
    already: bool  # nothing was running: the link had been used, or every alert was paused


def secret(store: CredentialStore) -> bytes:
    return document_secret(store, DOCUMENT_FIELD)


def token(key: bytes, user_id: int, created_at: dt.datetime) -> str:
    return f"{user_id}.{_signature(key, user_id, created_at)}"


def link(public_url: str, key: bytes, user_id: int, created_at: dt.datetime) -> str:
    return f"{public_url}/unsubscribe?token={quote(token(key, user_id, created_at))}"


def unsubscribe(session: Session, key: bytes, presented: str) -> Unsubscribed:
    """Stop the alert mails of the account `presented` was made for; TokenRefused when it is not genuine."""
    user = _recipient(session, key, presented)
    paused = pause_all(session, user.id)
    session.execute(delete(AlertOutbox).where(AlertOutbox.user_id == user.id))
    return Unsubscribed(user.email, already=paused == 0)


def recipient_language(session: Session, key: bytes, presented: str) -> str | None:
    """The language the account `presented` was made for reads (its profile's); None for a token not genuine."""
    try:
        return _recipient(session, key, presented).language
    except TokenRefused:
        return None


def _recipient(session: Session, key: bytes, presented: str) -> User:
    user_part, _dot, signature = (presented or "").strip().partition(".")
    if not user_part.isdigit() or not signature:
        raise TokenRefused()
    user = session.get(User, int(user_part))
    if user is None:
        raise TokenRefused(texts.NO_ACCOUNT)
    if not hmac.compare_digest(signature, _signature(key, user.id, user.created_at)):
        raise TokenRefused()
    return user


def _signature(key: bytes, user_id: int, created_at: dt.datetime) -> str:
    message = f"unsubscribe:{user_id}:{created_at.astimezone(dt.UTC).isoformat()}".encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()[:SIGNATURE_BYTES]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")
