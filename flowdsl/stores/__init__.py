"""Where durable runs are journaled: the `Store` protocol, its stores, and their URLs.

`SQLiteStore` is the embedded store (one file, many processes on one host);
`PostgresStore` the store for many machines (``pip install 'flowdsl[postgres]'``).
Every store implements `Store` with the same semantics (leases, fencing, the
JSON journal of `_codec`), and is named by the URL grammar of `open_store`.
The durable driver (`_journal.run_durably`) runs a plan against any of them.
"""

from typing import TYPE_CHECKING

from ._protocol import Store
from ._sqlite import SQLiteStore
from ._url import open_store

if TYPE_CHECKING:
    from ._postgres import PostgresStore

__all__ = ["PostgresStore", "SQLiteStore", "Store", "open_store"]


def __getattr__(name: str) -> object:
    # PostgresStore is imported when first asked for: psycopg is half of `import flowdsl`.
    if name == "PostgresStore":
        from ._postgres import PostgresStore

        return PostgresStore
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)
