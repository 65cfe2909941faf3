"""Account administration from the command line, over the `accounts` package.

    python auth.py create-admin --username U --email E
        create an admin account, or promote an existing one; the password of a new account comes
        from CARBUROAM_ADMIN_PASSWORD when set, else it is asked twice
    python auth.py sessions USER [--revoke-all]
        list the live sign-in sessions of an account, or end them all

Use the same CARBUROAM_DATA_DIR and CARBUROAM_DATABASE_URL as the app, when they are set.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import sys
from collections.abc import Callable, Sequence

from sqlalchemy.exc import SQLAlchemyError

from accounts.errors import AccountError, RegistrationRefused
from accounts.rules import PASSWORDS_DIFFER, check_email, check_username, normalise_username
from accounts.service import Accounts
from accounts.store import StoreError, credential_store
from session import init_db, make_engine
from settings import load_settings
from utils import PARIS, first_line

ADMIN_PASSWORD_ENV = "CARBUROAM_ADMIN_PASSWORD"  # noqa: S105 (the variable's name)


def _admin_password(username: str) -> str:
    password = os.environ.get(ADMIN_PASSWORD_ENV)
    if password:
        return password
    first = getpass.getpass(f"Password for the new admin {username}: ")
    if first != getpass.getpass("The same password again: "):
        raise RegistrationRefused(PASSWORDS_DIFFER)
    return first


def _with_accounts(work: Callable[[Accounts], str]) -> str:
    """Run `work` over the accounts of the configured data dir and database."""
    settings = load_settings()
    engine = make_engine(settings.database_url)
    try:
        init_db(engine)
        return work(Accounts(settings, credential_store(settings), engine))
    finally:
        engine.dispose()


def create_admin(accounts: Accounts, username: str, email: str) -> str:
    username, email = check_username(normalise_username(username)), check_email(email)
    existing = accounts.account(username)
    password = None if existing is not None else _admin_password(username)
    account = accounts.create_admin(username, email, password)
    if existing is None:
        return f"Created the admin account {account.username} ({account.email})."
    return f"{account.username} is now an admin."


def sessions(accounts: Accounts, username: str, revoke_all: bool) -> str:
    account = accounts.account(username)
    if account is None:
        raise RegistrationRefused(f"There is no account {normalise_username(username)}.")
    if revoke_all:
        ended = accounts.sign_out_everywhere(account.username)
        return f"Ended {ended} session{'s' if ended != 1 else ''} of {account.username}."
    rows = accounts.live_sessions(account.user_id)
    lines = [f"{account.username} has {len(rows)} live session{'s' if len(rows) != 1 else ''}."]
    lines += [
        f"  {row.device}: signed in {row.created_at.astimezone(PARIS):%Y-%m-%d %H:%M}, "
        f"last used {row.last_seen_at.astimezone(PARIS):%Y-%m-%d %H:%M} (Paris time)"
        for row in rows
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python auth.py", description="Carburoam account administration.")
    commands = parser.add_subparsers(dest="command", required=True)
    create = commands.add_parser(
        "create-admin",
        help="create an admin account, or promote an existing one",
        description=f"The password of a new account comes from {ADMIN_PASSWORD_ENV} when set, else it is asked twice.",
    )
    create.add_argument("--username", required=True)
    create.add_argument("--email", required=True)
    listed = commands.add_parser("sessions", help="list the sign-in sessions of an account, or end them all")
    listed.add_argument("username")
    listed.add_argument("--revoke-all", action="store_true", help="sign the account out on every device")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "create-admin":
            print(_with_accounts(lambda accounts: create_admin(accounts, args.username, args.email)))
        else:
            print(_with_accounts(lambda accounts: sessions(accounts, args.username, args.revoke_all)))
    except (AccountError, StoreError, ValueError) as exc:
        print(f"{args.command}: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:
        print(f"{args.command}: the database cannot be used: {first_line(exc)}", file=sys.stderr)
        return 1
    except EOFError:
        print(f"\n{args.command}: no password was given.", file=sys.stderr)  # after the unanswered prompt
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
