"""Every sentence alerts say to people, in mails and on pages, gathered here to be translated.

Whole sentences with named `str.format` fields, marked `N_()` for the catalogs and translated with `_()` where
they are said (a mail in its recipient's language): a translation may move the fields where its grammar wants
them. Values are written by i18n's formatters and escaped where they are shown (HTML in compose, Markdown in
the UI), never here.
"""

from __future__ import annotations

from i18n import N_, ngettext

KIND_NAMES = {
    "price_below": N_("A price at one of my stations"),
    "drop": N_("A price drop at one of my stations"),
    "area_below": N_("The cheapest price around a place"),
    "rupture": N_("A fuel running out at one of my stations"),
    "digest": N_("A weekly summary of my stations"),
}

# One line per alert that fired, in the mail and in the profile's list of alerts.
FIRED = {
    "price_below": N_("{fuel} is at {price} at {station} (your alert: {threshold} or less)."),
    "drop": N_("{fuel} dropped by {cents} in 24 hours at {station}: {reference} → {price}."),
    "area_below": N_("The cheapest {fuel} within {radius} of {place} is {price}, at {station} ({distance} away)."),
    "rupture": N_("{station} has run out of {fuel}."),
    "rupture_back": N_("{station} has {fuel} again."),
}
RULE = {
    "price_below": N_("{fuel} at {station} at {threshold} or less"),
    "drop": N_("{fuel} at {station} dropping by {cents} or more in 24 hours"),
    "area_below": N_("The cheapest {fuel} within {radius} of {place} below {threshold}"),
    "rupture": N_("{fuel} running out at {station}, or back"),
    "digest": N_("A summary of my stations every week"),
}

SUBJECT_ONE = N_("Carburoam: {line}")
SUBJECT_DIGEST = N_("Carburoam: your stations this week")
SUBJECT_TEST = N_("Carburoam: a test of your alerts")
GREETING = N_("Hello {name},")
DIGEST_TITLE = N_("Your stations this week:")
DIGEST_LINE = N_("{station}, {fuel}: {price} ({change} over 7 days).")
DIGEST_LINE_OUT = N_("{station}, {fuel}: out of stock.")
DIGEST_NOTHING = N_("None of your stations has a price for your fuels yet.")
FOOTER = N_("You set these alerts on Carburoam. To receive no more alert e-mails, open: {url}")
FOOTER_HTML = N_("You set these alerts on Carburoam. {link}")
UNSUBSCRIBE_LINK = N_("Stop these e-mails")
CHANGE_SAME = N_("unchanged")

UNSUBSCRIBED = N_("Done: {email} will receive no more alert e-mails. Your alerts are paused; sign in to resume them.")
ALREADY_UNSUBSCRIBED = N_("{email} already receives no alert e-mails. Nothing else to do.")
LINK_REFUSED = N_(
    "This unsubscribe link is not valid: it may have been cut or changed. Copy the whole link from the e-mail, "
    "or sign in and pause your alerts in your profile."
)
NO_ACCOUNT = N_("This account no longer exists: it receives no e-mails.")
LINK_MISSING = N_("This page stops alert e-mails. Open it from the link at the bottom of an alert e-mail.")

NOT_MY_STATION = N_("Choose one of your stations: follow it first on the My stations page.")
NEED_FUEL = N_("Choose a fuel.")
NEED_THRESHOLD = N_("Give a price in euros per litre, between {low} and {high}.")
NEED_DROP = N_("Give a drop in cents, between {low} and {high}.")
NEED_PLACE = N_("Name a town, a postcode or an address we can find.")
PLACE_NOT_FOUND = N_("We could not find “{place}”. Try a town name or a postcode.")
NEED_RADIUS = N_("Give a distance between {low} and {high}.")
ONE_DIGEST = N_("You already get the weekly summary.")
TOO_MANY = N_("You have {count} alerts, the most one person may set. Delete one to add another.")
NOT_FOUND = N_("That alert no longer exists.")


# Sentences with a number, whose words follow it (ngettext): said in the active language.
def subject_many(count: int) -> str:
    return ngettext("Carburoam: {count} price alert", "Carburoam: {count} price alerts", count).format(count=count)


def sample_line(count: int) -> str:
    return ngettext(
        "This is a test: your alerts will look like this. You have {count} alert set.",
        "This is a test: your alerts will look like this. You have {count} alerts set.",
        count,
    ).format(count=count)


def cap_reached(cap: int) -> str:
    return ngettext(
        "You reached today's limit of {cap} alert e-mail: more alerts today will not be sent.",
        "You reached today's limit of {cap} alert e-mails: more alerts today will not be sent.",
        cap,
    ).format(cap=cap)
