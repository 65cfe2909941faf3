"""What an account may be: the rules for usernames, e-mail addresses, names and passwords.

Each `check_*` returns the value as it will be stored (stripped, lower-cased where the rule says
so) or raises `RegistrationRefused` with the rule's own message; `say()` writes a rule in the active language.
"""

from __future__ import annotations

import re
import unicodedata

from accounts.errors import RegistrationRefused
from i18n import N_, _

USERNAME_PATTERN = r"^[a-z0-9_.-]{3,32}$"
EMAIL_PATTERN = (
    r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"
)
EMAIL_MAX_CHARS = 254
NAME_MAX_CHARS = 50
PASSWORD_MIN_CHARS = 10
PASSWORD_MAX_CHARS = 64
PASSWORD_MAX_BYTES = 72  # bcrypt ignores (bcrypt 5: refuses) anything longer

# The rules' messages, with the limits above as {fields} (`say()` fills them in the active language).
LIMITS = {"min_chars": PASSWORD_MIN_CHARS, "max_chars": PASSWORD_MAX_CHARS, "max_bytes": PASSWORD_MAX_BYTES}
USERNAME_RULE = N_("A username is 3 to 32 characters: lower-case letters, digits, '.', '_' or '-'.")
EMAIL_INVALID = N_("Please enter a valid e-mail address, such as name@example.org.")
PASSWORD_BLANK = N_("A password cannot be empty or only spaces.")
PASSWORD_SHORT = N_("A password needs at least {min_chars} characters.")
PASSWORD_LONG = N_("A password has at most {max_chars} characters.")
PASSWORD_TOO_MANY_BYTES = N_(
    "This password is too long to be stored safely (at most {max_bytes} bytes): use fewer accented letters or symbols."
)
PASSWORD_HELP = N_(
    "Between {min_chars} and {max_chars} characters (at most {max_bytes} bytes): a few unrelated words make a good one."
)
PASSWORDS_DIFFER = N_("The two passwords do not match.")
NAME_LABELS = {"name": N_("name"), "first name": N_("first name"), "last name": N_("last name")}

_USERNAME = re.compile(USERNAME_PATTERN)
_EMAIL = re.compile(EMAIL_PATTERN)


def say(rule: str) -> str:
    """One of the rules above, in the active language, its limits filled in."""
    return _(rule).format(**LIMITS)


def _refuse(rule: str) -> RegistrationRefused:
    return RegistrationRefused(rule, **LIMITS)


def normalise_username(username: str) -> str:
    """Usernames are compared and stored as streamlit-authenticator does: stripped and lower-cased."""
    return username.strip().lower()


def normalise_email(email: str) -> str:
    """E-mail addresses are compared and stored stripped and lower-cased."""
    return email.strip().lower()


def check_username(username: str) -> str:
    if not _USERNAME.fullmatch(username):
        raise RegistrationRefused(USERNAME_RULE)
    return username


def check_email(email: str) -> str:
    """The address normalised, if it looks deliverable."""
    address = normalise_email(email)
    local = address.partition("@")[0]
    if len(address) > EMAIL_MAX_CHARS or len(local) > 64 or not _EMAIL.fullmatch(address):
        raise RegistrationRefused(EMAIL_INVALID)
    return address


def check_name(name: str, label: str = "name") -> str:
    cleaned = name.strip()
    if not cleaned:
        raise RegistrationRefused(N_("Please enter your {label}."), label=_(NAME_LABELS[label]))
    if len(cleaned) > NAME_MAX_CHARS:
        raise RegistrationRefused(
            N_("A {label} has at most {count} characters."), label=_(NAME_LABELS[label]), count=NAME_MAX_CHARS
        )
    if any(unicodedata.category(char).startswith("C") for char in cleaned):
        raise RegistrationRefused(N_("A {label} cannot contain control characters."), label=_(NAME_LABELS[label]))
    return cleaned


def check_password_policy(password: str) -> str:
    """The password as it will be hashed (without surrounding spaces), if the policy accepts it.

    Passwords are taken without leading and trailing spaces, as the library's widgets take them,
    so a password set through either signs in through either.
    """
    cleaned = password.strip()
    if not cleaned:
        raise RegistrationRefused(PASSWORD_BLANK)
    if len(cleaned) < PASSWORD_MIN_CHARS:
        raise _refuse(PASSWORD_SHORT)
    if len(cleaned) > PASSWORD_MAX_CHARS:
        raise _refuse(PASSWORD_LONG)
    if len(cleaned.encode()) > PASSWORD_MAX_BYTES:
        raise _refuse(PASSWORD_TOO_MANY_BYTES)
    return cleaned


def check_new_password(password: str, repeat: str) -> str:
    """A new password typed twice, as it will be hashed."""
    cleaned = check_password_policy(password)
    if cleaned != repeat.strip():
        raise RegistrationRefused(PASSWORDS_DIFFER)
    return cleaned


def passes(check, value: str) -> bool:
    """Whether `check` accepts `value` (for validators that answer yes or no)."""
    try:
        check(value)
    except RegistrationRefused:
        return False
    return True
