import streamlit as st

from accounts.engagement import engagement
from accounts.errors import AccountError
from alerts.outbox import figures as alert_figures
from i18n import _, age, number
from ingest import progress, scheduler
from prices import queries
from ui import admin_ui, shell, widgets
from utils import utcnow

app = shell.resources()
admin = shell.require_admin(shell.current_account())
administration = app.administration
now = utcnow()

st.title(_("Administration"))
admin_ui.show_notice()
with app.Session() as session:
    fresh = queries.freshness(session)
    people = queries.accounts_overview(session)
    runs = queries.recent_runs(session, limit=20)
    backfill = progress.latest(session)
    figures = engagement(session, now)
    alerting = alert_figures(session, now)

users, stations, prices, last = st.columns(4)
users.metric(_("Accounts"), len(people))
stations.metric(_("Stations"), number(fresh.stations))
prices.metric(_("Current prices"), number(fresh.prices))
last.metric(_("Last update"), age(fresh.last_success_at, now) if fresh.last_success_at else _("never"))
widgets.show_freshness(fresh, app.settings.interval_seconds, now, technical=True)

people_tab, pipeline_tab, actions_tab, audit_tab = st.tabs(
    [_("People"), _("Prices pipeline"), _("Actions"), _("Audit trail")]
)
with people_tab:
    admin_ui.engagement(figures)
    admin_ui.alerts(alerting)
    st.subheader(_("Accounts"))
    admin_ui.accounts_table(people)

with pipeline_tab:
    status = scheduler.scheduler_status(app.settings, app.engine)
    if admin_ui.update_button():
        try:
            answer = admin_ui.follow_update(administration, administration.request_price_update(admin.username))
        except AccountError as exc:
            widgets.error("{}", exc)
        else:
            if answer is not None:
                admin_ui.answered(answer)
    admin_ui.pipeline(status, runs, scheduler.log_tail(app.settings), app.settings.etl_autostart)
    admin_ui.backfill_progress(backfill, now)

with actions_tab:
    st.markdown(_("**Help someone.** Every action is written to the audit trail."))
    chosen = admin_ui.confirmed_account_action(people)
    st.markdown(_("**The service.**"))
    widgets.caption(_("Backups go to {} (BACKUP_TARGET); the scheduler makes one a day."), app.settings.backup_location)
    service = admin_ui.confirmed_service_action(admin_ui.backups_kept(app.settings.backup_location))
    admin_ui.carry_out(app, admin.username, chosen, service)

with audit_tab:
    admin_ui.audit_trail(administration.audit_trail())
