"""Every sentence alerts say to people, in mails and on pages, gathered here to be translated.

Whole sentences with named `str.format` fields: a translation may move the fields where its grammar
wants them. Values are escaped where they are shown (HTML in compose, Markdown in the UI), never here.
"""

from __future__ import annotations

KIND_NAMES = {
    "price_below": "A price at one of my stations",
    "drop": "A price drop at one of my stations",
    "area_below": "The cheapest price around a place",
    "rupture": "A fuel running out at one of my stations",
    "digest": "A weekly summary of my stations",
}

# One line per alert that fired, in the mail and in the profile's list of alerts.
FIRED = {
    "price_below": "{fuel} is at {price} at {station} (your alert: {threshold} or less).",
    "drop": "{fuel} dropped by {cents} in 24 hours at {station}: {reference} → {price}.",
    "area_below": "The cheapest {fuel} within {radius} km of {place} is {price}, at {station} ({distance} km away).",
    "rupture": "{station} has run out of {fuel}.",
    "rupture_back": "{station} has {fuel} again.",
}
RULE = {
    "price_below": "{fuel} at {station} at {threshold} or less",
    "drop": "{fuel} at {station} dropping by {cents} or more in 24 hours",
    "area_below": "The cheapest {fuel} within {radius} km of {place} below {threshold}",
    "rupture": "{fuel} running out at {station}, or back",
    "digest": "A summary of my stations every week",
}

SUBJECT_ONE = "Carburoam: {line}"
SUBJECT_MANY = "Carburoam: {count} price alerts"
SUBJECT_DIGEST = "Carburoam: your stations this week"
SUBJECT_TEST = "Carburoam: a test of your alerts"
GREETING = "Hello {name},"
DIGEST_TITLE = "Your stations this week:"
DIGEST_LINE = "{station}, {fuel}: {price} ({change} over 7 days)."
DIGEST_LINE_OUT = "{station}, {fuel}: out of stock."
DIGEST_NOTHING = "None of your stations has a price for your fuels yet."
TEST_LINE = "This is a test: your alerts will look like this. You have {count} alerts set."
CAP_REACHED = "You reached today's limit of {cap} alert e-mails: more alerts today will not be sent."
FOOTER = "You set these alerts on Carburoam. To receive no more alert e-mails, open: {url}"
FOOTER_HTML = "You set these alerts on Carburoam. {link}"
UNSUBSCRIBE_LINK = "Stop these e-mails"
CHANGE_SAME = "unchanged"
CHANGE_UP = "+{cents}"
CHANGE_DOWN = "−{cents}"

UNSUBSCRIBED = "Done: {email} will receive no more alert e-mails. Your alerts are paused; sign in to resume them."
ALREADY_UNSUBSCRIBED = "{email} already receives no alert e-mails. Nothing else to do."
LINK_REFUSED = (
    "This unsubscribe link is not valid: it may have been cut or changed. Copy the whole link from the e-mail, "
    "or sign in and pause your alerts in your profile."
)
NO_ACCOUNT = "This account no longer exists: it receives no e-mails."
LINK_MISSING = "This page stops alert e-mails. Open it from the link at the bottom of an alert e-mail."

NOT_MY_STATION = "Choose one of your stations: follow it first on the My stations page."
NEED_FUEL = "Choose a fuel."
NEED_THRESHOLD = "Give a price in euros per litre, between 0.1 and 5 €."
NEED_DROP = "Give a drop in cents, between 1 and 100."
NEED_PLACE = "Name a town, a postcode or an address we can find."
PLACE_NOT_FOUND = "We could not find “{place}”. Try a town name or a postcode."
NEED_RADIUS = "Give a distance between 1 and 50 km."
ONE_DIGEST = "You already get the weekly summary."
TOO_MANY = "You have {count} alerts, the most one person may set. Delete one to add another."
NOT_FOUND = "That alert no longer exists."
