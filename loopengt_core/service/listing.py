"""Listing a store's runs: a summary of each, newest first; a run that cannot be read is listed as what it
is (corrupt, unreadable), never hidden."""

from __future__ import annotations

import structlog

from loopengt_core.engine.view import RunSummary, run_summary
from loopengt_core.model.errors import InvalidArgument, LoopengtError, NotFound, StoreCorrupt
from loopengt_core.service.kernel import TransitionKernel
from loopengt_core.service.loaded import nothing
from loopengt_core.store import Store

log = structlog.get_logger("loopengt.runs")


def list_runs(
    store: Store, kernel: TransitionKernel, *, status: str | None = None, limit: int = 50
) -> list[RunSummary]:
    """The runs in `store`, newest first, at most `limit`, optionally of one status.

    Raises:
        InvalidArgument: `limit` is not a whole number of at least 1.
    """
    if not isinstance(limit, int) or limit < 1:
        raise InvalidArgument("limit must be a whole number of at least 1")
    out = []
    for run_id in store.list_runs():
        try:
            summary = kernel.locked(run_id, nothing, lambda run: run_summary(run.state))
        except NotFound:
            continue  # deleted since the listing was read
        except LoopengtError as exc:  # listed as what it is, never hidden
            log.warning("run_unreadable", run_id=run_id, error=exc.message)
            summary = RunSummary(
                run_id=run_id,
                loop="",
                status="corrupt" if isinstance(exc, StoreCorrupt) else "unreadable",
                turn=0,
                started_at="",
                updated_at="",
                error=exc.message,
            )
        if status is None or summary.status == status:
            out.append(summary)
            if len(out) >= limit:
                break
    return out
