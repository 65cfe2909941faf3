"""The refusals of account operations. Each message is fit to show a person as it is."""

from __future__ import annotations

import math

ACCOUNT_MISSING = "This account does not exist any more."
PASSWORD_CHANGED_MEANWHILE = "Your password was changed meanwhile; please sign in again."  # noqa: S105 (a message)


class AccountError(Exception):
    """An account operation was refused; the message says why in plain language."""


class RegistrationRefused(AccountError):
    """A username, e-mail, name or password breaks a rule or is already taken."""


class SignInThrottled(AccountError):
    """Too many wrong passwords: nothing is checked until `wait_seconds` have passed."""

    def __init__(self, wait_seconds: int) -> None:
        self.wait_seconds = wait_seconds
        minutes = max(1, math.ceil(wait_seconds / 60))
        super().__init__(f"Too many attempts. Try again in {minutes} minute{'s' if minutes > 1 else ''}.")


class WrongPassword(AccountError):
    """The password (or username) is wrong; never says which."""


class CodeRefused(AccountError):
    """A recovery code is wrong, expired, used, burnt or belongs to no such account."""


class AccountMissing(AccountError):
    """The account disappeared while it was being changed."""

    def __init__(self, message: str = ACCOUNT_MISSING) -> None:
        super().__init__(message)
