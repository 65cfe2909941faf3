"""Price alerts by e-mail, as people live them: feeds loaded pass after pass by the scheduler's own step, the
alerts it runs after each successful pass, and the mails a real SMTP server (aiosmtpd) receives.

Feeds are small XML documents written here, their prices declared minutes before the test runs, so that
"in the last 24 hours" means what it says.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import func, select, update

from alerts import rules, texts
from alerts.outbox import send_test
from alerts.unsubscribe import TokenRefused, secret, unsubscribe
from db_snapshot import count
from etl import alerts_job
from ingest import scheduler
from models import AlertOutbox, AlertRule, AlertState, EtlRun
from net import free_port
from prices import preferences
from session import session_factory, writer
from utils import PARIS, utcnow

PASSWORD = "correct horse battery"
NBSP = "\u00a0"  # French puts a no-break space before "€"
HOME, WORK, FAR = 75001001, 75002001, 13001001
GAZOLE, SP95, E10 = 1, 2, 5
FUEL_NAMES = {1: "Gazole", 2: "SP95", 3: "E85", 4: "GPLc", 5: "E10", 6: "SP98"}
PLACES = {
    HOME: (48.8606, 2.3376, "75001", "Paris"),
    WORK: (48.8680, 2.3430, "75002", "Paris"),
    FAR: (43.2965, 5.3698, "13001", "Marseille"),
}


# --------------------------------------------------------------------------- feeds


def feed(tmp_path: Path, prices: dict[int, dict[int, tuple[str, int]]], out: dict[int, set[int]] | None = None) -> str:
    """A feed where each station declares {fuel: (price, minutes ago)} and runs out of the fuels in `out`."""
    now = utcnow()

    def paris(minutes: int) -> str:
        return (now - dt.timedelta(minutes=minutes)).astimezone(PARIS).strftime("%Y-%m-%d %H:%M:%S")

    blocks = []
    for station, (lat, lon, cp, town) in PLACES.items():
        lines = [
            f'  <pdv id="{station}" latitude="{round(lat * 1e5)}" longitude="{round(lon * 1e5)}" cp="{cp}" pop="R">',
            f"    <adresse>{station % 1000} rue de la Paix</adresse>",
            f"    <ville>{town}</ville>",
        ]
        for fuel, (price, minutes) in sorted(prices.get(station, {}).items()):
            lines.append(f'    <prix nom="{FUEL_NAMES[fuel]}" id="{fuel}" maj="{paris(minutes)}" valeur="{price}"/>')
        for fuel in sorted((out or {}).get(station, ())):
            lines.append(
                f'    <rupture nom="{FUEL_NAMES[fuel]}" id="{fuel}" debut="{paris(30)}" fin="" type="temporaire"/>'
            )
        lines.append("  </pdv>")
        blocks.append("\n".join(lines))
    xml = (
        '<?xml version="1.0" encoding="ISO-8859-1" standalone="yes"?>\n<pdv_liste>\n'
        + "\n".join(blocks)
        + "\n</pdv_liste>\n"
    )
    path = tmp_path / f"feed-{len(list(tmp_path.glob('feed-*.xml')))}.xml"
    path.write_bytes(xml.encode("latin-1"))
    return str(path)


BASE = {
    HOME: {GAZOLE: ("1.700", 600), SP95: ("1.800", 600), E10: ("1.750", 600)},
    WORK: {GAZOLE: ("1.690", 600)},
    FAR: {GAZOLE: ("1.500", 600)},
}


def with_prices(**changes: tuple[int, int, str]) -> dict:
    """BASE with some prices declared again, 10 minutes ago: name=(station, fuel, price)."""
    prices = {station: dict(fuels) for station, fuels in BASE.items()}
    for station, fuel, price in changes.values():
        prices[station][fuel] = (price, 10)
    return prices


# --------------------------------------------------------------------------- the pass, as the scheduler runs it


@pytest.fixture
def mail_settings(settings, smtp_inbox):
    port, _ = smtp_inbox
    return dataclasses.replace(
        settings, smtp_host="127.0.0.1", smtp_port=port, smtp_security="none", interval_seconds=0
    )


def scheduled_pass(engine, settings, source: str) -> None:
    """One wake-up of `etl.py serve` on `source`: the pass, then the alerts job etl.py hands the scheduler."""
    settings = dataclasses.replace(settings, feed_url=source, interval_seconds=0)
    scheduler._scheduled_pass(engine, settings, [alerts_job(settings)])


@pytest.fixture
def alice(accounts, engine, tmp_path, settings):
    """An account following two Paris stations, with prices loaded once."""
    account = accounts.register("alice", "alice@example.org", "Alice", "Martin", PASSWORD, PASSWORD)
    scheduled_pass(engine, settings, feed(tmp_path, BASE))
    with session_factory(writer(engine)).begin() as session:
        preferences.follow_station(session, account.user_id, HOME, "Home <b>&</b>")
        preferences.follow_station(session, account.user_id, WORK, "Work")
    return account


def add_rule(engine, user_id: int, kind: str, **values) -> int:
    with session_factory(writer(engine)).begin() as session:
        return rules.create(session, user_id, kind, utcnow(), **values)


def bodies(inbox) -> list[str]:
    return [message.get_body(("plain",)).get_content() for message in inbox.received]


def unsubscribe_link(message: EmailMessage) -> str:
    return re.search(r"(http\S+/unsubscribe\?token=\S+)", message.get_body(("plain",)).get_content())[1]


def token_of(link: str) -> str:
    return parse_qs(urlparse(link).query)["token"][0]


# --------------------------------------------------------------------------- each kind, once per change


def test_each_kind_fires_once_per_change_of_state_and_alerts_firing_together_make_one_mail(
    alice, engine, mail_settings, smtp_inbox, tmp_path
):
    _, inbox = smtp_inbox
    add_rule(engine, alice.user_id, rules.PRICE_BELOW, station_id=HOME, fuel_id=GAZOLE, threshold=Decimal("1.650"))
    add_rule(engine, alice.user_id, rules.DROP, station_id=HOME, fuel_id=SP95, threshold=Decimal("0.05"))
    add_rule(engine, alice.user_id, rules.RUPTURE, station_id=HOME, fuel_id=E10)
    add_rule(
        engine, alice.user_id, rules.AREA_BELOW, fuel_id=GAZOLE, threshold=Decimal("1.620"), place="Paris", radius_km=10
    )

    scheduled_pass(engine, mail_settings, feed(tmp_path, BASE))
    assert inbox.received == [], "nothing is true yet"

    fired = with_prices(a=(HOME, GAZOLE, "1.640"), b=(HOME, SP95, "1.740"), c=(WORK, GAZOLE, "1.600"))
    scheduled_pass(engine, mail_settings, feed(tmp_path, fired, out={HOME: {E10}}))
    assert len(inbox.received) == 1, "four alerts at once: one mail"
    first = bodies(inbox)[0]
    assert "Gazole is at €1.640/L at Home <b>&</b> (your alert: €1.650/L or less)." in first
    assert "SP95 dropped by 6 ct in 24 hours at Home <b>&</b>: €1.800/L → €1.740/L." in first
    assert "Home <b>&</b> has run out of E10." in first
    assert "The cheapest Gazole within 10 km of Paris (75001–75002) is €1.600/L, at Work (460 m away)." in first
    assert inbox.received[0]["Subject"] == "Carburoam: 4 price alerts"
    html = inbox.received[0].get_body(("html",)).get_content()
    assert "Home &lt;b&gt;&amp;&lt;/b&gt;" in html and "<b>&</b>" not in html

    scheduled_pass(engine, mail_settings, feed(tmp_path, fired, out={HOME: {E10}}))
    scheduled_pass(engine, mail_settings, feed(tmp_path, fired, out={HOME: {E10}}))
    assert len(inbox.received) == 1, "still true: no mail again"

    scheduled_pass(engine, mail_settings, feed(tmp_path, BASE))
    assert len(inbox.received) == 2
    assert bodies(inbox)[1].count(" again.") == 1 and "Home <b>&</b> has E10 again." in bodies(inbox)[1]
    assert inbox.received[1]["Subject"] == "Carburoam: Home <b>&</b> has E10 again."

    scheduled_pass(engine, mail_settings, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.640"))))
    assert len(inbox.received) == 3, "true again after being false: a new mail"
    assert "Gazole is at €1.640/L at Home" in bodies(inbox)[2] and "E10" not in bodies(inbox)[2]


def test_a_drop_counts_against_the_highest_price_of_the_24_hours_before(
    alice, engine, mail_settings, smtp_inbox, tmp_path
):
    _, inbox = smtp_inbox
    add_rule(engine, alice.user_id, rules.DROP, station_id=HOME, fuel_id=SP95, threshold=Decimal("0.05"))

    scheduled_pass(engine, mail_settings, feed(tmp_path, with_prices(a=(HOME, SP95, "1.770"))))
    assert inbox.received == [], "3 cents down from 1.800: not enough"
    scheduled_pass(engine, mail_settings, feed(tmp_path, with_prices(a=(HOME, SP95, "1.745"))))
    assert len(inbox.received) == 1
    assert "SP95 dropped by 5.5 ct in 24 hours at Home <b>&</b>: €1.800/L → €1.745/L." in bodies(inbox)[0]


def test_the_daily_cap_stops_mails_and_the_last_one_says_so(alice, engine, mail_settings, smtp_inbox, tmp_path):
    _, inbox = smtp_inbox
    capped = dataclasses.replace(mail_settings, alert_max_mails_per_day=2)
    add_rule(engine, alice.user_id, rules.PRICE_BELOW, station_id=HOME, fuel_id=GAZOLE, threshold=Decimal("1.650"))

    for price in ("1.640", "1.700", "1.630", "1.700", "1.620"):
        scheduled_pass(engine, capped, feed(tmp_path, with_prices(a=(HOME, GAZOLE, price))))

    assert len(inbox.received) == 2, "three changes to true, two mails a day"
    assert texts.cap_reached(2) not in bodies(inbox)[0]
    assert texts.cap_reached(2) in bodies(inbox)[1]
    assert count(engine, AlertOutbox) == 0, "what the cap stops is not kept for later"


def test_a_french_recipient_reads_the_alert_mail_in_french(
    alice, accounts, engine, mail_settings, smtp_inbox, tmp_path
):
    """Each mail speaks its recipient's language (the profile's), whatever the service's default (English here)."""
    _, inbox = smtp_inbox
    bob = accounts.register("bob", "bob@example.org", "Bob", "Durand", PASSWORD, PASSWORD)
    with session_factory(writer(engine)).begin() as session:
        preferences.set_language(session, alice.user_id, "fr")
        preferences.follow_station(session, bob.user_id, HOME, "Maison")
    add_rule(engine, alice.user_id, rules.PRICE_BELOW, station_id=HOME, fuel_id=GAZOLE, threshold=Decimal("1.650"))
    add_rule(engine, alice.user_id, rules.DROP, station_id=HOME, fuel_id=SP95, threshold=Decimal("0.05"))
    add_rule(engine, bob.user_id, rules.PRICE_BELOW, station_id=HOME, fuel_id=GAZOLE, threshold=Decimal("1.650"))

    scheduled_pass(
        engine, mail_settings, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.640"), b=(HOME, SP95, "1.740")))
    )

    mails = {message["To"]: message for message in inbox.received}
    french = mails["alice@example.org"]
    assert french["Subject"] == "Carburoam : 2 alertes de prix"
    text = french.get_body(("plain",)).get_content()
    assert text.startswith("Bonjour Alice Martin,")
    assert f"Le Gazole est à 1,640{NBSP}€/L à Home <b>&</b> (votre alerte : 1,650{NBSP}€/L ou moins)." in text
    assert f"Le SP95 a baissé de 6 ct en 24 heures à Home <b>&</b> : 1,800{NBSP}€/L → 1,740{NBSP}€/L." in text
    assert "Pour ne plus recevoir d'e-mails d'alerte, ouvrez : http" in text
    html = french.get_body(("html",)).get_content()
    assert '<html lang="fr">' in html and "Se désabonner de ces e-mails</a>" in html
    assert mails["bob@example.org"]["Subject"] == (
        "Carburoam: Gazole is at €1.640/L at Maison (your alert: €1.650/L or less)."
    ), "a person who chose no language reads the service's default"


def test_two_people_get_a_mail_each(alice, accounts, engine, mail_settings, smtp_inbox, tmp_path):
    _, inbox = smtp_inbox
    bob = accounts.register("bob", "bob@example.org", "Bob", "Durand", PASSWORD, PASSWORD)
    with session_factory(writer(engine)).begin() as session:
        preferences.follow_station(session, bob.user_id, HOME, "Near the office")
    for person in (alice, bob):
        add_rule(engine, person.user_id, rules.PRICE_BELOW, station_id=HOME, fuel_id=GAZOLE, threshold=Decimal("1.650"))

    scheduled_pass(engine, mail_settings, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.640"))))

    assert sorted(message["To"] for message in inbox.received) == ["alice@example.org", "bob@example.org"]
    assert any("at Near the office" in body for body in bodies(inbox))


# --------------------------------------------------------------------------- unsubscribing


def test_the_unsubscribe_link_stops_every_alert_once_and_for_all(alice, engine, mail_settings, smtp_inbox, tmp_path):
    _, inbox = smtp_inbox
    add_rule(engine, alice.user_id, rules.PRICE_BELOW, station_id=HOME, fuel_id=GAZOLE, threshold=Decimal("1.650"))
    add_rule(engine, alice.user_id, rules.DIGEST)
    scheduled_pass(engine, mail_settings, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.640"))))
    message = inbox.received[0]
    link = unsubscribe_link(message)
    assert link.startswith("http://localhost:8501/unsubscribe?token=")
    assert message["List-Unsubscribe"].strip() == f"<{link}>"
    assert message["List-Unsubscribe-Post"] is None, "no one-click POST promised: the server answers POST with 405"
    assert "Your stations this week:" in bodies(inbox)[0], "the weekly summary came with the first pass"

    key = secret(accounts_store(mail_settings))
    with session_factory(writer(engine)).begin() as session:
        done = unsubscribe(session, key, token_of(link))
    assert (done.email, done.already) == ("alice@example.org", False)
    with session_factory(writer(engine)).begin() as session:
        assert unsubscribe(session, key, token_of(link)).already, "the same link again changes nothing"

    for price in ("1.700", "1.630"):
        scheduled_pass(engine, mail_settings, feed(tmp_path, with_prices(a=(HOME, GAZOLE, price))))
    assert len(inbox.received) == 1, "no mail after unsubscribing"
    with session_factory(engine)() as session:
        assert session.scalar(select(func.count()).where(AlertRule.paused.is_(False))) == 0


def accounts_store(settings):
    from accounts.store import LocalCredentialStore

    return LocalCredentialStore(settings.credentials_file)


def test_a_tampered_unsubscribe_token_is_refused_and_changes_nothing(
    alice, accounts, engine, mail_settings, smtp_inbox, tmp_path
):
    _, inbox = smtp_inbox
    bob = accounts.register("bob", "bob@example.org", "Bob", "Durand", PASSWORD, PASSWORD)
    add_rule(engine, alice.user_id, rules.PRICE_BELOW, station_id=HOME, fuel_id=GAZOLE, threshold=Decimal("1.650"))
    scheduled_pass(engine, mail_settings, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.640"))))
    genuine = token_of(unsubscribe_link(inbox.received[0]))
    user, signature = genuine.split(".")
    flipped = signature[:-1] + ("A" if signature[-1] != "A" else "B")
    key = secret(accounts_store(mail_settings))

    for forged in (f"{user}.{flipped}", f"{bob.user_id}.{signature}", user, "", "x.y", f"{user}.{signature}extra"):
        with session_factory(writer(engine)).begin() as session, pytest.raises(TokenRefused) as refused:
            unsubscribe(session, key, forged)
        assert str(refused.value) in (texts.LINK_REFUSED, texts.NO_ACCOUNT)
    with session_factory(writer(engine)).begin() as session, pytest.raises(TokenRefused, match="not valid"):
        unsubscribe(session, b"another server's key", genuine)
    assert count(engine, AlertRule) == 1
    with session_factory(engine)() as session:
        assert not session.scalar(select(AlertRule.paused))


# --------------------------------------------------------------------------- a mail server that is down


def test_a_mail_server_that_is_down_delays_the_mail_without_failing_the_pass(
    alice, engine, settings, smtp_inbox, tmp_path
):
    port, inbox = smtp_inbox
    down = dataclasses.replace(
        settings, smtp_host="127.0.0.1", smtp_port=free_port(), smtp_security="none", smtp_timeout=2
    )
    add_rule(engine, alice.user_id, rules.PRICE_BELOW, station_id=HOME, fuel_id=GAZOLE, threshold=Decimal("1.650"))

    scheduled_pass(engine, down, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.640"))))

    with session_factory(engine)() as session:
        newest = session.scalars(EtlRun.newest(EtlRun.kind == "run").limit(1)).first()
        waiting = session.scalars(select(AlertOutbox)).all()
        failures = session.scalar(select(func.count()).where(EtlRun.status == "failed"))
    assert newest.status == "success" and failures == 0
    assert [(mail.attempts, mail.subject) for mail in waiting] == [
        (1, "Carburoam: Gazole is at €1.640/L at Home <b>&</b> (your alert: €1.650/L or less).")
    ]

    up = dataclasses.replace(down, smtp_port=port)
    scheduled_pass(engine, up, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.640"))))
    assert len(inbox.received) == 1, "sent at the next pass, once"
    assert count(engine, AlertOutbox) == 0
    scheduled_pass(engine, up, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.640"))))
    assert len(inbox.received) == 1


def test_a_failed_pass_runs_no_alerts(alice, engine, mail_settings, smtp_inbox, tmp_path):
    _, inbox = smtp_inbox
    add_rule(engine, alice.user_id, rules.PRICE_BELOW, station_id=HOME, fuel_id=GAZOLE, threshold=Decimal("1.650"))
    broken = tmp_path / "broken.xml"
    broken.write_bytes(b"<pdv_liste><pdv id=")
    scheduled_pass(engine, mail_settings, str(broken))
    assert inbox.received == [] and count(engine, AlertState) == 0


# --------------------------------------------------------------------------- managing alerts


def test_alerts_refuse_what_cannot_be_watched(alice, engine):
    cases = [
        (rules.PRICE_BELOW, {"station_id": FAR, "fuel_id": GAZOLE, "threshold": Decimal("1.5")}, texts.NOT_MY_STATION),
        (rules.PRICE_BELOW, {"station_id": HOME, "fuel_id": 99, "threshold": Decimal("1.5")}, texts.NEED_FUEL),
        (
            rules.PRICE_BELOW,
            {"station_id": HOME, "fuel_id": GAZOLE, "threshold": Decimal("15")},
            "Give a price in euros per litre, between €0.100/L and €5.000/L.",
        ),
        (
            rules.DROP,
            {"station_id": HOME, "fuel_id": GAZOLE, "threshold": Decimal("2")},
            "Give a drop in cents, between 1 ct and 100 ct.",
        ),
        (
            rules.AREA_BELOW,
            {"fuel_id": GAZOLE, "threshold": Decimal("1.6"), "place": "Zzyzx Qwerty", "radius_km": 5},
            texts.PLACE_NOT_FOUND.format(place="Zzyzx Qwerty"),
        ),
        (
            rules.AREA_BELOW,
            {"fuel_id": GAZOLE, "threshold": Decimal("1.6"), "place": "Paris", "radius_km": 500},
            "Give a distance between 1 km and 50 km.",
        ),
    ]
    for kind, values, message in cases:
        with pytest.raises(rules.AlertRefused) as refused:
            add_rule(engine, alice.user_id, kind, **values)
        assert str(refused.value) == message
    add_rule(engine, alice.user_id, rules.DIGEST)
    with pytest.raises(rules.AlertRefused, match="already"):
        add_rule(engine, alice.user_id, rules.DIGEST)
    assert count(engine, AlertRule) == 1


def test_a_resumed_alert_says_what_is_true_now(alice, engine, mail_settings, smtp_inbox, tmp_path):
    _, inbox = smtp_inbox
    rule = add_rule(
        engine, alice.user_id, rules.PRICE_BELOW, station_id=HOME, fuel_id=GAZOLE, threshold=Decimal("1.650")
    )
    with session_factory(writer(engine)).begin() as session:
        rules.set_paused(session, alice.user_id, rule, True)
    scheduled_pass(engine, mail_settings, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.640"))))
    assert inbox.received == [], "paused"
    with session_factory(writer(engine)).begin() as session:
        rules.set_paused(session, alice.user_id, rule, False)
        assert [view.description for view in rules.rules_of(session, alice.user_id)] == [
            "Gazole at Home <b>&</b> at €1.650/L or less"
        ]
    scheduled_pass(engine, mail_settings, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.640"))))
    assert len(inbox.received) == 1
    with session_factory(writer(engine)).begin() as session:
        rules.remove(session, alice.user_id, rule)
        with pytest.raises(rules.AlertRefused, match="no longer exists"):
            rules.remove(session, alice.user_id, rule)


def test_a_test_mail_goes_at_once_with_its_unsubscribe_link(alice, engine, mail_settings, smtp_inbox):
    _, inbox = smtp_inbox
    with session_factory(engine)() as session:
        send_test(session, mail_settings, secret(accounts_store(mail_settings)), alice.user_id)
    assert inbox.received[0]["Subject"] == "Carburoam: a test of your alerts"
    assert "This is a test" in bodies(inbox)[0] and unsubscribe_link(inbox.received[0])


def test_a_credentials_document_that_cannot_be_read_delays_the_alerts_not_the_pass(
    alice, engine, mail_settings, smtp_inbox, tmp_path
):
    _, inbox = smtp_inbox
    add_rule(engine, alice.user_id, rules.PRICE_BELOW, station_id=HOME, fuel_id=GAZOLE, threshold=Decimal("1.650"))
    document = mail_settings.credentials_file
    good = document.read_bytes()
    document.write_bytes(b"credentials: [this is not: a document")  # the unsubscribe links' secret is in there

    scheduled_pass(engine, mail_settings, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.640"))))

    with session_factory(engine)() as session:
        outcomes = dict(session.execute(select(EtlRun.kind, EtlRun.status)).all())
    assert outcomes == {"run": "success", "alerts": "failed"}
    assert inbox.received == [] and count(engine, AlertState) == 0, "nothing was written: the alert is still new"

    document.write_bytes(good)
    scheduled_pass(engine, mail_settings, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.640"))))
    assert len(inbox.received) == 1


def test_a_mail_still_waiting_a_day_later_is_dropped_not_sent_late(alice, engine, settings, smtp_inbox, tmp_path):
    port, inbox = smtp_inbox
    down = dataclasses.replace(settings, smtp_host="127.0.0.1", smtp_port=free_port(), smtp_security="none")
    add_rule(engine, alice.user_id, rules.PRICE_BELOW, station_id=HOME, fuel_id=GAZOLE, threshold=Decimal("1.650"))
    scheduled_pass(engine, down, feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.640"))))
    assert count(engine, AlertOutbox) == 1
    with session_factory(writer(engine)).begin() as session:
        session.execute(update(AlertOutbox).values(created_at=utcnow() - dt.timedelta(hours=25)))

    scheduled_pass(
        engine, dataclasses.replace(down, smtp_port=port), feed(tmp_path, with_prices(a=(HOME, GAZOLE, "1.640")))
    )

    assert inbox.received == [], "yesterday's price is news no more"
    assert count(engine, AlertOutbox) == 0
