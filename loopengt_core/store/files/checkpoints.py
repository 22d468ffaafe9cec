"""Checkpoints on disk: `checkpoints/<id>.json` under a run, one sealed record each.

{"run_id","checkpoint_id","seq","label","created_at","state","crc"}. Saving, listing and discarding stay
on `FileStore` (they need the run's own-directory checks and a crash point); this module reads and
writes the records and sets checkpoints aside when a repair cuts the log before them.
"""

from __future__ import annotations

import builtins
import os
import uuid
from pathlib import Path

from loopengt_core.model.errors import NotFound, StoreConflict, StoreCorrupt
from loopengt_core.store import ID_PATTERN, Checkpoint, check_checkpoint, check_id
from loopengt_core.store.files.faults import Faults
from loopengt_core.store.files.fsio import fsync_dir, io_error, write_new_file
from loopengt_core.store.files.records import CHECKPOINTS, EVENTS, TMP_PREFIX, BadRecord, seal, unseal
from loopengt_core.store.files.runfiles import RunFiles


def checkpoint_record(checkpoint: Checkpoint) -> bytes:
    """The sealed bytes of a checkpoint's file."""
    return seal(
        {
            "run_id": checkpoint.run_id,
            "checkpoint_id": checkpoint.checkpoint_id,
            "seq": checkpoint.seq,
            "label": checkpoint.label,
            "created_at": checkpoint.created_at,
            "state": checkpoint.state,
        }
    )


def checkpoint_from(run_id: str, checkpoint_id: str, raw: bytes) -> Checkpoint:
    """Parse a checkpoint file's bytes; StoreCorrupt if they do not hold."""
    try:
        obj = unseal(raw.rstrip(b"\n"))
        seq, label, created, state = obj["seq"], obj["label"], obj["created_at"], obj["state"]
        if not (
            isinstance(seq, int)
            and (label is None or isinstance(label, str))
            and isinstance(created, str)
            and isinstance(state, dict)
        ):
            raise BadRecord("fields of the wrong type")
    except (BadRecord, KeyError) as exc:
        raise StoreCorrupt(
            f"run {run_id!r}: checkpoint {checkpoint_id!r} is corrupt ({exc})", run_id=run_id
        ) from None
    return Checkpoint(run_id, checkpoint_id, seq, label, created, state)


def checkpoint_ids(run_dir: Path) -> list[str]:
    """The ids of the run's checkpoint files, sorted (temp and stray names skipped)."""
    try:
        names = os.listdir(run_dir / CHECKPOINTS)
    except FileNotFoundError:
        return []
    return sorted(name[:-5] for name in names if name.endswith(".json") and ID_PATTERN.fullmatch(name[:-5]))


class CheckpointFiles:
    """Saving, reading, listing and discarding one store's checkpoints."""

    def __init__(self, files: RunFiles, faults: Faults) -> None:
        """Share the store's files and its fault setting (`checkpoint.enospc`)."""
        self._files, self._faults = files, faults

    def save(self, checkpoint: Checkpoint) -> None:
        """Temp file + fsync + link(2): the link fails if the id exists, so two savers cannot both win."""
        check_checkpoint(checkpoint)
        run_id, cid = checkpoint.run_id, checkpoint.checkpoint_id
        run_dir = self._files.run_dir(run_id)
        if not (run_dir / EVENTS).is_file():
            raise self._files.not_found(run_id)
        data = checkpoint_record(checkpoint)
        cp_dir = self._files.checkpoints_dir(run_id)
        final = cp_dir / f"{cid}.json"
        tmp = cp_dir / f"{TMP_PREFIX}{cid}-{uuid.uuid4().hex}.json"
        try:
            cp_dir.mkdir(exist_ok=True)
            self._faults.fail("checkpoint.enospc", tmp)
            write_new_file(tmp, data)
            try:
                os.link(tmp, final)
            except FileExistsError:
                raise StoreConflict(
                    f"run {run_id!r} already has a checkpoint {cid!r}", run_id=run_id
                ) from None
            fsync_dir(cp_dir)
        except OSError as exc:
            raise io_error(exc, f"saving checkpoint {cid!r} of run {run_id!r}") from exc
        finally:
            tmp.unlink(missing_ok=True)

    def discard(self, run_id: str, checkpoint_id: str) -> None:
        """Unlink the checkpoint's file (durably); nothing if there is none."""
        cp_dir = self._files.checkpoints_dir(run_id)
        path = cp_dir / f"{check_id(checkpoint_id, 'checkpoint_id')}.json"
        try:
            path.unlink()
        except FileNotFoundError:
            return
        except OSError as exc:
            raise io_error(exc, f"discarding checkpoint {checkpoint_id!r} of run {run_id!r}") from exc
        fsync_dir(cp_dir)

    def get(self, run_id: str, checkpoint_id: str) -> Checkpoint:
        """The checkpoint `checkpoint_id` of the run.

        Raises:
            NotFound: no such run, or no such checkpoint (the message lists the run's checkpoints).
        """
        run_dir = self._files.run_dir(run_id)
        cid = check_id(checkpoint_id, "checkpoint_id")
        if not (run_dir / EVENTS).is_file():
            raise self._files.not_found(run_id)
        try:
            raw = (run_dir / CHECKPOINTS / f"{cid}.json").read_bytes()
        except FileNotFoundError:
            known = checkpoint_ids(run_dir)
            listing = ", ".join(known) if known else "none"
            raise NotFound(
                f"run {run_id!r} has no checkpoint {cid!r}; its checkpoints: {listing}", run_id=run_id
            ) from None
        return checkpoint_from(run_id, cid, raw)

    def list(self, run_id: str) -> builtins.list[Checkpoint]:
        """Oldest first: by seq, then creation time, then id."""
        run_dir = self._files.run_dir(run_id)
        if not (run_dir / EVENTS).is_file():
            raise self._files.not_found(run_id)
        found = []
        for cid in checkpoint_ids(run_dir):
            try:
                raw = (run_dir / CHECKPOINTS / f"{cid}.json").read_bytes()
            except FileNotFoundError:
                continue
            found.append(checkpoint_from(run_id, cid, raw))
        return sorted(found, key=lambda c: (c.seq, c.created_at, c.checkpoint_id))
