"""Static half of the conformance suite: mypy checks here that each backend matches, signature for
signature, the protocol and the capabilities `tests/test_store_contract.py` (CAPABILITIES) says it has.

`isinstance` on a runtime-checkable protocol only looks for the names; a backend whose `try_lock` or
`sweep_leftovers` took other arguments would pass it and fail its caller. Never imported at run time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopengt_core.store import (
        ChangeFeed,
        DirectoryBacked,
        GroupCommit,
        LocalLocking,
        Repairable,
        Store,
        Sweepable,
    )
    from loopengt_core.store.files import FileStore
    from loopengt_core.store.postgres import PostgresStore

    def file_store(
        store: FileStore,
    ) -> tuple[Store, LocalLocking, DirectoryBacked, Sweepable, Repairable, GroupCommit]:
        return store, store, store, store, store, store

    def postgres_store(store: PostgresStore) -> tuple[Store, ChangeFeed]:
        return store, store
