"""Getting back into an account: password-reset codes and username reminders, by e-mail.

A reset code is 8 digits from `secrets`, stored only as an HMAC under a key kept in the
credentials document, valid `code_ttl`, single use, burnt after 5 wrong tries, and at most 3 are
sent per account and hour. A reset signs the account out everywhere and lifts its sign-in wait.

Pages call the `*_later` methods: they queue the lookup and the mail on the background worker and
return at once, so the answer takes the same time whether the account exists or not.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
from concurrent.futures import Future

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from accounts import sessions
from accounts.background import Background
from accounts.entries import email_of, email_owner, find_account, set_password, users_in
from accounts.errors import CodeRefused
from accounts.passwords import hash_password
from accounts.rules import check_new_password, normalise_email
from accounts.store import CredentialStore, document_secret
from accounts.throttle import Throttle
from accounts.users import Account, UsersMirror, lock_user
from i18n import N_, _, using
from mailer import MailError, Message, send_mail
from models import VerificationCode
from settings import Settings
from utils import utcnow

log = logging.getLogger(__name__)

RESET_PURPOSE = "password_reset"
CODE_DIGITS = 8
CODE_MAX_ATTEMPTS = 5
CODE_REQUESTS_PER_HOUR = 3
DEFAULT_CODE_TTL = dt.timedelta(minutes=10)
OLD_CODES_KEPT = dt.timedelta(days=1)  # older code rows of a user are pruned at their next request
CODE_REFUSED = N_("This code is wrong, expired or already used. Check it, or ask for a new code.")


def _live_codes(user_id: int) -> tuple:
    return (
        VerificationCode.user_id == user_id,
        VerificationCode.purpose == RESET_PURPOSE,
        VerificationCode.used_at.is_(None),
    )


class Recovery:
    def __init__(
        self,
        settings: Settings,
        store: CredentialStore,
        writer: sessionmaker,
        users: UsersMirror,
        throttle: Throttle,
        background: Background,
        code_ttl: dt.timedelta = DEFAULT_CODE_TTL,
    ) -> None:
        self.settings = settings
        self.code_ttl = code_ttl
        self._store = store
        self._writer = writer
        self._users = users
        self._throttle = throttle
        self._background = background
        self._recovery_key: bytes | None = None

    # ----------------------------------------------------------------- asked from a page

    def request_password_reset_later(self, identifier: str) -> Future:
        """Queue `request_password_reset`; the page answers the same whatever the account."""
        return self._background.submit("send a password reset code", lambda: self.request_password_reset(identifier))

    def remind_username_later(self, email: str) -> Future:
        """Queue `remind_username`; the page answers the same whatever the address."""
        return self._background.submit("send a username reminder", lambda: self.remind_username(email))

    # ----------------------------------------------------------------- the work

    def request_password_reset(self, identifier: str, now: dt.datetime | None = None) -> bool:
        """E-mail a reset code to the account named by a username or e-mail, if there is one.

        Returns whether a code was sent; MailError when the mail could not be sent (then no code
        from this request can be used, and older codes still work).
        """
        now = now or utcnow()
        self._key()  # created on first use, whether or not this account exists
        found = find_account(self._store.load().document, identifier)
        if found is None:
            log.info("password reset asked for an account that does not exist")
            return False
        username, entry = found
        user = self._users.synced(username, entry, now)
        code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
        code_id = self._new_code(user.id, self._code_hash(user.id, code), now)
        if code_id is None:
            log.info("password reset of %s refused: %d requests in the last hour", username, CODE_REQUESTS_PER_HOUR)
            return False
        minutes = round(self.code_ttl.total_seconds() / 60)
        with using(user.language or self.settings.language):  # the recipient's language
            body = _(
                "Hello,\n\nYour Carburoam password reset code is {code}.\n"
                "It is valid for {minutes} minutes and can be used once.\n\n"
                "If you did not ask for it, ignore this message: your password has not changed.\n"
            ).format(code=code, minutes=minutes)
            subject = _("Your Carburoam password reset code")
        message = Message(to=email_of(entry), subject=subject, body=body, account=username)
        try:
            send_mail(self.settings, message)
        except MailError:
            with self._writer.begin() as session:
                session.execute(delete(VerificationCode).where(VerificationCode.id == code_id))
            raise
        with self._writer.begin() as session:  # only now that the new code is on its way
            session.execute(
                update(VerificationCode)
                .where(*_live_codes(user.id), VerificationCode.id != code_id)
                .values(used_at=now)
            )
        log.info("password reset code sent to %s", username)
        return True

    def reset_password(
        self, identifier: str, code: str, new: str, repeat: str, now: dt.datetime | None = None
    ) -> Account:
        """Set a new password with the newest reset code of the account; CodeRefused otherwise.

        The account is signed out everywhere and its sign-in wait lifted.
        """
        now = now or utcnow()
        new = check_new_password(new, repeat)
        found = find_account(self._store.load().document, identifier)
        if found is None:
            raise CodeRefused(CODE_REFUSED)
        username, entry = found
        user = self._users.synced(username, entry, now)
        typed = self._code_hash(user.id, "".join(code.split()))
        new_hash = hash_password(new)
        changed = False
        with self._writer.begin() as session:
            lock_user(session, user.id)
            row = self._newest_code(session, user.id)
            if row is not None and row.expires_at > now:
                if hmac.compare_digest(row.code_hash, typed):
                    row.used_at = now
                    sessions.revoke_all(session, user.id, now)
                    session.flush()
                    # Inside the transaction: if the document cannot be written, the code stays usable.
                    self._store.update(lambda document: set_password(document, username, new_hash))
                    changed = True
                else:
                    row.attempts += 1
                    if row.attempts >= CODE_MAX_ATTEMPTS:
                        row.used_at = now
        if not changed:
            log.info("password reset of %s refused: wrong, expired or used code", username)
            raise CodeRefused(CODE_REFUSED)
        self._throttle.clear(username)
        log.info("password of %s reset with a code; every session of the account ended", username)
        return Account.of(user)

    def remind_username(self, email: str) -> bool:
        """E-mail the username of the account with this address, if there is one; MailError if sending failed."""
        address = normalise_email(email)
        entries = users_in(self._store.load().document)
        username = email_owner(entries, address)
        if username is None:
            log.info("username reminder asked for an unknown address")
            return False
        user = self._users.synced(username, entries[username], utcnow())
        with using(user.language or self.settings.language):  # the recipient's language
            body = _(
                "Hello,\n\nYour Carburoam username is: {username}\n\n"
                "If you did not ask for this reminder, you can ignore this message.\n"
            ).format(username=username)
            subject = _("Your Carburoam username")
        send_mail(self.settings, Message(to=address, subject=subject, body=body, account=username))
        log.info("username reminder sent to %s", username)
        return True

    # ----------------------------------------------------------------- codes

    @staticmethod
    def _newest_code(session: Session, user_id: int) -> VerificationCode | None:
        return session.scalars(
            select(VerificationCode)
            .where(*_live_codes(user_id))
            .order_by(VerificationCode.created_at.desc(), VerificationCode.id.desc())
            .limit(1)
        ).first()

    def _new_code(self, user_id: int, code_hash: str, now: dt.datetime) -> int | None:
        """Store a new code row; None when the account already had its requests for this hour."""
        mine = (VerificationCode.user_id == user_id, VerificationCode.purpose == RESET_PURPOSE)
        with self._writer.begin() as session:
            lock_user(session, user_id)
            session.execute(delete(VerificationCode).where(*mine, VerificationCode.created_at < now - OLD_CODES_KEPT))
            recent = session.scalar(
                select(func.count()).where(*mine, VerificationCode.created_at > now - dt.timedelta(hours=1))
            )
            if recent >= CODE_REQUESTS_PER_HOUR:
                return None
            row = VerificationCode(
                user_id=user_id,
                code_hash=code_hash,
                purpose=RESET_PURPOSE,
                created_at=now,
                expires_at=now + self.code_ttl,
                attempts=0,
            )
            session.add(row)
            session.flush()
            return row.id

    def _code_hash(self, user_id: int, code: str) -> str:
        message = f"{RESET_PURPOSE}:{user_id}:{code}".encode()
        return hmac.new(self._key(), message, hashlib.sha256).hexdigest()

    def _key(self) -> bytes:
        """The secret HMAC key of reset codes, created in the document on first use."""
        if self._recovery_key is None:
            self._recovery_key = document_secret(self._store, "recovery_key")
        return self._recovery_key
