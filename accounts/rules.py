"""What an account may be: the rules for usernames, e-mail addresses, names and passwords.

Each `check_*` returns the value as it will be stored (stripped, lower-cased where the rule says
so) or raises `RegistrationRefused` with the rule's own message.
"""

from __future__ import annotations

import re
import unicodedata

from accounts.errors import RegistrationRefused

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

USERNAME_RULE = "A username is 3 to 32 characters: lower-case letters, digits, '.', '_' or '-'."
EMAIL_INVALID = "Please enter a valid e-mail address, such as name@example.org."
PASSWORD_BLANK = "A password cannot be empty or only spaces."  # noqa: S105 (a message, not a password)
PASSWORD_SHORT = f"A password needs at least {PASSWORD_MIN_CHARS} characters."
PASSWORD_LONG = f"A password has at most {PASSWORD_MAX_CHARS} characters."
PASSWORD_TOO_MANY_BYTES = (
    f"This password is too long to be stored safely (at most {PASSWORD_MAX_BYTES} bytes): "
    "use fewer accented letters or symbols."
)
PASSWORD_HELP = (
    f"Between {PASSWORD_MIN_CHARS} and {PASSWORD_MAX_CHARS} characters (at most {PASSWORD_MAX_BYTES} bytes): "
    "a few unrelated words make a good one."
)
PASSWORDS_DIFFER = "The two passwords do not match."

_USERNAME = re.compile(USERNAME_PATTERN)
_EMAIL = re.compile(EMAIL_PATTERN)


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
        raise RegistrationRefused(f"Please enter your {label}.")
    if len(cleaned) > NAME_MAX_CHARS:
        raise RegistrationRefused(f"A {label} has at most {NAME_MAX_CHARS} characters.")
    if any(unicodedata.category(char).startswith("C") for char in cleaned):
        raise RegistrationRefused(f"A {label} cannot contain control characters.")
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
        raise RegistrationRefused(PASSWORD_SHORT)
    if len(cleaned) > PASSWORD_MAX_CHARS:
        raise RegistrationRefused(PASSWORD_LONG)
    if len(cleaned.encode()) > PASSWORD_MAX_BYTES:
        raise RegistrationRefused(PASSWORD_TOO_MANY_BYTES)
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
