"""Where durable runs are journaled: the `Store` protocol, its stores, and their URLs.

`SQLiteStore` is the embedded store (one file, many processes on one host);
`PostgresStore` the store for many machines (``pip install 'flowdsl[postgres]'``).
Every store implements `Store` with the same semantics (leases, fencing, the
JSON journal of `_codec`), and is named by the URL grammar of `open_store`.
The durable driver (`_journal.run_durably`) runs a plan against any of them.
"""

from ._postgres import PostgresStore
from ._protocol import Store
from ._sqlite import SQLiteStore
from ._url import open_store

__all__ = ["PostgresStore", "SQLiteStore", "Store", "open_store"]
