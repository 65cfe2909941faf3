"""Changes to the credentials document that are undone when the database work around them fails.

An account lives in two places that share no transaction: its entry in the credentials document
and its rows in the database. Every operation that changes both does so inside `DocumentChanges`:
each document change is applied with the change that undoes it, and if anything fails before the
block ends (the database commit included), the undos run, newest first. An undo that cannot be
written is logged; `UsersMirror.sync_all` or the account's next sign-in reconciles what is left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from accounts.store import CredentialStore, Document, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")


class DocumentChanges:
    def __init__(self, store: CredentialStore) -> None:
        self._store = store
        self._undos: list[tuple[Callable[[Document], None], str]] = []

    def apply(self, change: Callable[[Document], T], undo: Callable[[Document, T], None], what: str) -> T:
        """Write `change`; if the block fails later, `undo(document, what change returned)` is written.

        `undo` must check that the document still holds what `change` wrote (someone may have
        changed it since), and leave it alone otherwise.
        """
        result = self._store.update(change)
        self._undos.append((lambda document: undo(document, result), what))
        return result

    def __enter__(self) -> DocumentChanges:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if kind is None:
            return
        for undo, what in reversed(self._undos):
            try:
                self._store.update(undo)
            except StoreError:
                log.exception("could not %s; the next sign-in or sync_all will reconcile it", what)
