"""The PostgreSQL store: the `Store` protocol over tables, so server processes on any number of machines
share runs safely. `open_store("postgresql://...")` returns one; psycopg is imported only in this package.

`PostgresStore` (`store.py`) is the backend; see its module docstring for the schema, the round trips and
the guarantees. Importers use this package: `from loopengt_core.store.postgres import PostgresStore`.
"""

from loopengt_core.store.errors import StoreIOError
from loopengt_core.store.postgres.connection import describe_dsn, probe
from loopengt_core.store.postgres.schema import CHANNEL, MIGRATIONS, SCHEMA_VERSION
from loopengt_core.store.postgres.store import PostgresStore

__all__ = [
    "CHANNEL",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "PostgresStore",
    "StoreIOError",
    "describe_dsn",
    "probe",
]
