"""Stores are named by URL everywhere, API and CLI alike: one grammar, one table of schemes.

``sqlite:///relative.db``, ``sqlite:////abs/path.db``, a bare file path (or a
path object), or a store object, passed through as it is. A command that reads
runs passes ``must_exist=True``, so a typo never creates an empty store.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Final

from ..errors import StoreError, UsageError
from ._protocol import Store
from ._sqlite import SQLiteStore

__all__ = ["open_store"]


def _sqlite_file(path: str, must_exist: bool) -> Store:
    if must_exist and not os.path.exists(path):
        msg = (
            f"no store at {path!r}: the file does not exist; check the path (a store file "
            f"is created by the first durable run that names it)"
        )
        raise StoreError(msg)
    return SQLiteStore(path)


def _sqlite_url(url: str, rest: str, must_exist: bool) -> Store:
    """The store of a ``sqlite://`` URL: three slashes then a relative path, four absolute."""
    if rest.startswith("/") and rest != "/":
        return _sqlite_file(rest[1:], must_exist)
    if rest and rest != "/":  # sqlite://runs.db: that is a host, and SQLite has none
        fix = f"'sqlite:///{rest}' (relative to the current directory)"
    else:
        fix = "'sqlite:///runs.db' (relative) or 'sqlite:////abs/path/runs.db' (absolute)"
    msg = (
        f"store URL {url!r} names no file: a SQLite URL is 'sqlite:///' followed by the "
        f"path (three slashes, then a fourth for an absolute path); write {fix}"
    )
    raise UsageError(msg)


def _postgres_url(url: str, rest: str, must_exist: bool) -> Store:
    """The store of a ``postgresql://`` URL (a database is never created by opening it)."""
    from ._postgres import PostgresStore  # psycopg is imported only when a URL asks for it

    return PostgresStore(url)


# Store URLs, ``scheme://rest``: each scheme's opener takes (url, rest, must_exist).
_SCHEMES: Final[dict[str, Callable[[str, str, bool], Store]]] = {
    "sqlite": _sqlite_url,
    "postgresql": _postgres_url,
    "postgres": _postgres_url,
}

_STORE_FORMS: Final = (
    "'sqlite:///relative/path.db', 'sqlite:////absolute/path.db', a file path, "
    "or 'postgresql://user@host:5432/db'"
)


def open_store(store: object, *, must_exist: bool = False) -> tuple[Store, bool]:
    """The store `store` names, and whether the caller opened it (and must close it).

    The one parser of store URLs: the run functions and the command line both
    use it. `store` is ``sqlite:///relative.db``, ``sqlite:////abs/path.db``, a
    file path (``str`` or path object), or a store object, returned as it is.
    ``must_exist=True`` (for commands that read runs) refuses a store file
    that does not exist with a `StoreError` instead of creating an empty one.
    """
    if isinstance(store, str):
        scheme, sep, rest = store.partition("://")
        if not sep and store:
            return _sqlite_file(store, must_exist), True
        opener = _SCHEMES.get(scheme.lower()) if sep else None
        if opener is None:
            msg = f"unknown store {store!r}; a store is named by {_STORE_FORMS}"
            raise UsageError(msg)
        return opener(store, rest, must_exist), True
    if isinstance(store, os.PathLike):
        return _sqlite_file(os.fspath(store), must_exist), True
    if isinstance(store, Store):
        return store, False
    msg = (
        f"store= takes a store object such as SQLiteStore(path) or a URL such as "
        f"'sqlite:///runs.db', got {store!r}"
    )
    raise UsageError(msg)
