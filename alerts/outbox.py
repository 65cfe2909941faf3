"""Running alerts after a pass: evaluate, compose one mail per person within the daily cap, and send.

`after_pass` is the job `etl.py serve` hands the scheduler. The evaluation, the new states and the composed
mails are written in one transaction, so a mail is composed exactly once per change; the mails then wait in
the outbox until the mail server takes them. A server that is down costs nothing but time: the pass is
done, the mails stay, and the next pass sends them. Each mail is composed in its recipient's language
(users.language, else CARBUROAM_LANGUAGE); the log lines stay English.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable
from functools import cache
from typing import NamedTuple

from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.orm import Session

from accounts.store import StoreError, credential_store
from alerts import compose, texts, unsubscribe
from alerts.evaluate import Fired, changes, evaluate
from i18n import _, using
from mailer import MailError, Message, send_mail
from models import AlertMailDay, AlertOutbox, AlertRule, User
from session import dialect_insert, session_factory, writer
from settings import Settings
from utils import PARIS, utcnow

log = logging.getLogger("alerts")
FAILURES = (StoreError,)  # the secret of the unsubscribe links could not be read: mails wait for the next pass
MAIL_KEPT = dt.timedelta(days=1)


class Figures(NamedTuple):
    """The admin page's counts."""

    rules: int
    paused: int
    people: int
    by_kind: dict[str, int]
    sent_today: int
    waiting: int


def after_pass(engine: Engine, settings: Settings) -> str | None:
    """Evaluate every alert and send what is due; one line for the log, None when there was nothing to do."""
    key = cache(lambda: unsubscribe.secret(credential_store(settings)))
    now = utcnow()
    composed = compose_mails(engine, settings, now, key)
    sent, waiting = send_waiting(engine, settings, key)
    if not (composed or sent or waiting):
        return None
    return f"alerts: {composed} mails composed, {sent} sent, {waiting} waiting for the mail server"


def compose_mails(engine: Engine, settings: Settings, now: dt.datetime, key: Callable[[], bytes]) -> int:
    """Evaluate, bring the states up to date and put one mail per person in the outbox; how many."""
    stale_after = dt.timedelta(days=settings.stale_after_days)
    with session_factory(writer(engine)).begin() as session:
        fired = changes(session, evaluate(session, now, stale_after), now)
        if not fired:
            return 0
        names = compose.labels(session, fired)
        by_user: dict[int, list[Fired]] = defaultdict(list)
        for item in fired:
            by_user[item.finding.user_id].append(item)
        used = _mails_used(session, list(by_user), now)
        made: list[dict] = []
        for user in session.scalars(select(User).where(User.id.in_(list(by_user)))):
            if used.get(user.id, 0) >= settings.alert_max_mails_per_day:
                log.info("alerts: user %d reached the daily cap; %d alerts not mailed", user.id, len(by_user[user.id]))
                continue
            last = used.get(user.id, 0) + 1 == settings.alert_max_mails_per_day
            items = by_user[user.id]
            url = unsubscribe.link(settings.public_url, key(), user.id, user.created_at)
            with using(user.language or settings.language):  # the recipient's language
                lines = [compose.fired_line(item, names) for item in items if not compose.is_digest(item)]
                digest = (
                    compose.digest_lines(session, user.id, now, stale_after)
                    if any(map(compose.is_digest, items))
                    else []
                )
                mail = compose.compose(
                    user.name or user.username, lines, digest, url, settings.alert_max_mails_per_day if last else None
                )
            made.append(
                {
                    "user_id": user.id,
                    "created_at": now,
                    "subject": mail.subject,
                    "text_body": mail.text,
                    "html_body": mail.html,
                    "attempts": 0,
                }
            )
        if made:
            session.execute(insert(AlertOutbox.__table__), made)  # Core's executemany: one statement, many rows
        return len(made)


def send_waiting(engine: Engine, settings: Settings, key: Callable[[], bytes]) -> tuple[int, int]:
    """Send the outbox, oldest first; stop at the first failure (the server is down). (sent, still waiting).

    A mail still waiting a day after it was composed is dropped: a price it announces is a day old.
    """
    with session_factory(writer(engine)).begin() as session:
        stale = session.execute(delete(AlertOutbox).where(AlertOutbox.created_at < utcnow() - MAIL_KEPT)).rowcount
    if stale:
        log.warning("alerts: %d alert mails dropped, not sent within %s", stale, MAIL_KEPT)
    with session_factory(engine)() as session:
        waiting = session.execute(
            select(AlertOutbox, User).join(User, User.id == AlertOutbox.user_id).order_by(AlertOutbox.id)
        ).all()
    sent = 0
    for mail, user in waiting:
        url = unsubscribe.link(settings.public_url, key(), user.id, user.created_at)
        message = Message(
            to=user.email,
            subject=mail.subject,
            body=mail.text_body,
            html=mail.html_body,
            account=user.username,
            headers=_unsubscribe_headers(url),
        )
        try:
            send_mail(settings, message)
        except MailError as exc:
            _failed(engine, mail.id, exc)
            break
        _sent(engine, mail.id, user.id, _day(utcnow()))
        sent += 1
    return sent, len(waiting) - sent


def send_test(session: Session, settings: Settings, key: bytes, user_id: int) -> None:
    """Mail the person a sample of their alerts now (outside the daily cap); MailError when it cannot go."""
    user = session.get(User, user_id)
    count = session.scalar(select(func.count()).where(AlertRule.user_id == user_id))
    url = unsubscribe.link(settings.public_url, key, user.id, user.created_at)
    with using(user.language or settings.language):  # the recipient's language, whoever clicked
        mail = compose.compose(user.name or user.username, [("{line}", {"line": texts.sample_line(count)})], [], url)
        subject = _(texts.SUBJECT_TEST)
    message = Message(user.email, subject, mail.text, user.username, mail.html, _unsubscribe_headers(url))
    send_mail(settings, message)


def _unsubscribe_headers(url: str) -> tuple[tuple[str, str], ...]:
    # No List-Unsubscribe-Post (RFC 8058): it promises that a POST to the link unsubscribes, and Streamlit answers
    # a POST with 405. Without it, a mail client opens the link, whose page unsubscribes.
    return (("List-Unsubscribe", f"<{url}>"),)


def figures(session: Session, now: dt.datetime) -> Figures:
    by_kind = dict(session.execute(select(AlertRule.kind, func.count()).group_by(AlertRule.kind)).all())
    return Figures(
        rules=sum(by_kind.values()),
        paused=session.scalar(select(func.count()).where(AlertRule.paused.is_(True))),
        people=session.scalar(select(func.count(AlertRule.user_id.distinct()))),
        by_kind=by_kind,
        sent_today=session.scalar(
            select(func.coalesce(func.sum(AlertMailDay.sent), 0)).where(AlertMailDay.day == _day(now))
        ),
        waiting=session.scalar(select(func.count()).select_from(AlertOutbox)),
    )


def _mails_used(session: Session, user_ids: list[int], now: dt.datetime) -> dict[int, int]:
    """Mails sent today and mails waiting, per person: both count against the daily cap."""
    used: dict[int, int] = defaultdict(int)
    sent = select(AlertMailDay.user_id, AlertMailDay.sent).where(
        AlertMailDay.user_id.in_(user_ids), AlertMailDay.day == _day(now)
    )
    waiting = (
        select(AlertOutbox.user_id, func.count()).where(AlertOutbox.user_id.in_(user_ids)).group_by(AlertOutbox.user_id)
    )
    for statement in (sent, waiting):
        for user, count in session.execute(statement):
            used[user] += count
    return used


def _sent(engine: Engine, mail_id: int, user_id: int, day: str) -> None:
    with session_factory(writer(engine)).begin() as session:
        session.execute(delete(AlertOutbox).where(AlertOutbox.id == mail_id))
        upsert = dialect_insert(engine.dialect.name, AlertMailDay).values(user_id=user_id, day=day, sent=1)
        session.execute(
            upsert.on_conflict_do_update(index_elements=["user_id", "day"], set_={"sent": AlertMailDay.sent + 1})
        )


def _failed(engine: Engine, mail_id: int, error: MailError) -> None:
    log.warning("alerts: the mail server did not take an alert mail; it waits for the next pass (%s)", error.__cause__)
    with session_factory(writer(engine)).begin() as session:
        session.execute(
            update(AlertOutbox)
            .where(AlertOutbox.id == mail_id)
            .values(attempts=AlertOutbox.attempts + 1, last_error=repr(error.__cause__)[:500])
        )


def _day(moment: dt.datetime) -> str:
    return moment.astimezone(PARIS).date().isoformat()
