"""The alerts' pages with Streamlit's AppTest: managing alerts in the profile, the admin's counts, and the
unsubscribe page a link opens, signed out, with a genuine, a changed or no token."""

from __future__ import annotations

from sqlalchemy import select

import i18n
from alerts import texts
from alerts.unsubscribe import secret, token
from app_helpers import (
    PASSWORD,
    button,
    captions,
    errors,
    infos,
    markdowns,
    new_app,
    open_page,
    sign_in,
    successes,
    text_input,
)
from models import AlertRule, User
from test_app import follow, two_fresh_stations
from ui import alerts_ui
from utils import utcnow


def profile_of(app, username: str = "alice"):
    account = app.register(username)
    two_fresh_stations(app)
    follow(app, account.user_id, {101: "Gare"})
    at = new_app().run()
    sign_in(at, username, PASSWORD)
    return account, open_page(at, "pages/profile.py")


def rules_of(app, user_id: int) -> list[tuple[str, bool]]:
    with app.session() as session:
        return [(r.kind, r.paused) for r in session.scalars(select(AlertRule).where(AlertRule.user_id == user_id))]


def test_an_alert_is_set_paused_resumed_and_deleted_from_the_profile(app):
    account, at = profile_of(app)
    at.selectbox(key="alert-kind").select("price_below").run()
    assert at.number_input[-1].label == "Price (€/L)"
    at.number_input[-1].set_value(1.85)
    button(at, "Save the alert").click().run()
    assert not at.exception
    assert rules_of(app, account.user_id) == [("price_below", False)]
    assert "Gazole at Gare at €1.850/L or less" in markdowns(at)

    button(at, "Pause").click().run()
    assert rules_of(app, account.user_id) == [("price_below", True)]
    assert "Gazole at Gare at €1.850/L or less (paused)" in markdowns(at)
    button(at, "Resume").click().run()
    assert rules_of(app, account.user_id) == [("price_below", False)]
    button(at, "Delete").click().run()
    assert rules_of(app, account.user_id) == []
    assert alerts_ui.NO_ALERTS in captions(at)


def test_a_place_nobody_knows_is_refused_with_its_reason(app):
    account, at = profile_of(app)
    at.selectbox(key="alert-kind").select("area_below").run()
    text_input(at, "Around").input("Zzyzx Qwerty")
    button(at, "Save the alert").click().run()
    assert errors(at) == [texts.PLACE_NOT_FOUND.format(place="Zzyzx Qwerty")]
    assert rules_of(app, account.user_id) == []


def test_the_unsubscribe_page_works_signed_out_and_refuses_a_changed_link(app):
    account, _ = profile_of(app)
    with app.session() as session, session.begin():
        session.add(AlertRule(user_id=account.user_id, kind="digest", created_at=utcnow()))
    with app.session() as session:
        created_at = session.scalar(select(User.created_at).where(User.id == account.user_id))
    genuine = token(secret(app.accounts.store), account.user_id, created_at)

    page = new_app().run()
    open_page(page, "pages/unsubscribe.py")
    assert infos(page) == [texts.LINK_MISSING]
    page.query_params["token"] = genuine[:-1] + ("A" if genuine[-1] != "A" else "B")
    open_page(page, "pages/unsubscribe.py")
    assert errors(page) == [texts.LINK_REFUSED]
    assert rules_of(app, account.user_id) == [("digest", False)]

    page.query_params["token"] = genuine
    open_page(page, "pages/unsubscribe.py")
    assert successes(page) == [texts.UNSUBSCRIBED.format(email="alice@example.org")]
    assert rules_of(app, account.user_id) == [("digest", True)]
    open_page(page, "pages/unsubscribe.py")
    assert successes(page) == [texts.ALREADY_UNSUBSCRIBED.format(email="alice@example.org")]


def test_the_unsubscribe_page_speaks_the_recipients_language_not_the_browsers(app):
    account, _ = profile_of(app)
    with app.session() as session, session.begin():
        session.add(AlertRule(user_id=account.user_id, kind="digest", created_at=utcnow()))
        user = session.get(User, account.user_id)
        user.language = "fr"
        genuine = token(secret(app.accounts.store), user.id, user.created_at)

    page = new_app().run()  # a browser that asks for no language: English here
    page.query_params["token"] = genuine
    open_page(page, "pages/unsubscribe.py")

    with i18n.using("fr"):
        assert page.title[0].value == i18n._("Alert e-mails")
        assert successes(page) == [i18n._(texts.UNSUBSCRIBED).format(email="alice@example.org")]
    page.query_params["token"] = genuine[:-1] + ("A" if genuine[-1] != "A" else "B")
    open_page(page, "pages/unsubscribe.py")
    assert errors(page) == [texts.LINK_REFUSED], "a changed link names nobody: the browser's language"
    assert page.title[0].value == "Alert e-mails"


def test_the_admin_page_counts_the_alerts(app):
    account, _ = profile_of(app)
    app.accounts.create_admin("root", "root@example.org", PASSWORD)
    with app.session() as session, session.begin():
        session.add_all(
            [
                AlertRule(user_id=account.user_id, kind="digest", created_at=utcnow()),
                AlertRule(user_id=account.user_id, kind="rupture", station_id=101, gastype_id=1, created_at=utcnow()),
                AlertRule(
                    user_id=account.user_id,
                    kind="rupture",
                    station_id=101,
                    gastype_id=2,
                    paused=True,
                    created_at=utcnow(),
                ),
            ]
        )
    at = new_app().run()
    sign_in(at, "root", PASSWORD)
    open_page(at, "pages/admin.py")
    metrics = {metric.label: metric.value for metric in at.metric}
    assert (metrics["Alerts set"], metrics["People with alerts"], metrics["Waiting to be sent"]) == ("3", "1", "0")
    assert "1 paused. By kind: a weekly summary of my stations: 1, a fuel running out at one of my stations: 2." in (
        captions(at)
    )
