"""The refusals of account operations. Each message is fit to show a person as it is, in the active language."""

from __future__ import annotations

import math

from i18n import N_, _, ngettext

ACCOUNT_MISSING = N_("This account does not exist any more.")
PASSWORD_CHANGED_MEANWHILE = N_("Your password was changed meanwhile; please sign in again.")


class AccountError(Exception):
    """An account operation was refused; the message says why in plain language.

    `message` is an English message of the catalogs (marked with `N_()`), with `{name}` fields filled
    from `values`: the refusal is written in the language active where it is raised.
    """

    def __init__(self, message: str = "", **values: object) -> None:
        super().__init__(_(message).format(**values) if values else _(message) if message else "")


class RegistrationRefused(AccountError):
    """A username, e-mail, name or password breaks a rule or is already taken."""


class SignInThrottled(AccountError):
    """Too many wrong passwords: nothing is checked until `wait_seconds` have passed."""

    def __init__(self, wait_seconds: int) -> None:
        self.wait_seconds = wait_seconds
        minutes = max(1, math.ceil(wait_seconds / 60))
        message = ngettext(
            "Too many attempts. Try again in {} minute.", "Too many attempts. Try again in {} minutes.", minutes
        )
        super().__init__(message.format(minutes))


class WrongPassword(AccountError):
    """The password (or username) is wrong; never says which."""


class CodeRefused(AccountError):
    """A recovery code is wrong, expired, used, burnt or belongs to no such account."""


class AccountMissing(AccountError):
    """The account disappeared while it was being changed."""

    def __init__(self, message: str = ACCOUNT_MISSING, **values: object) -> None:
        super().__init__(message, **values)
