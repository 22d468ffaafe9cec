"""The private index's copies: seeding one from an index file, and keeping it for the next snapshot.

A kept index is named for the version of the user's index and info/exclude it was seeded under
(`file_signature`), so a change to either seeds it anew.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path


def copy_seed(source: Path, dest: Path) -> bool:
    """Give `dest` the content and mtime (git's racy-clean check relies on it) of an index file; False
    if there is none.

    A hard link when it can be: git never changes an index file in place (it writes a lock file and
    renames it over), so the link stays a faithful copy. Otherwise the bytes are read through one open
    file, so a concurrent rename over `source` cannot pair old bytes with a newer mtime.
    """
    try:
        os.link(source, dest)
        return True
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        pass  # another filesystem, or links not allowed: copy
    try:
        fd = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return False
    with os.fdopen(fd, "rb") as src, open(dest, "wb") as out:
        shutil.copyfileobj(src, out)
        st = os.fstat(src.fileno())
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    return True


def file_signature(path: Path) -> str:
    """Which version of a file (the user's index, info/exclude) a private index was seeded under."""
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return "0"
    return f"{st.st_ino:x}.{st.st_size:x}.{st.st_mtime_ns:x}"


STALE_SCRATCH_SECONDS = 3600.0


def keep_index(copy: Path, kept: Path, kind: str) -> None:
    """Put the private index in place for the next snapshot; drop the same kind's older ones (seeded
    from an older user index), and scratch directories a killed snapshot left (an hour old: a running
    one keeps its own)."""
    try:
        os.replace(copy, kept)
        stale = time.time() - STALE_SCRATCH_SECONDS
        for entry in os.scandir(kept.parent):
            try:
                if entry.name.startswith(f"index-{kind}-") and entry.name != kept.name:
                    os.unlink(entry.path)
                elif entry.name.startswith("tmp-") and entry.stat(follow_symlinks=False).st_mtime < stale:
                    shutil.rmtree(entry.path, ignore_errors=True)
            except FileNotFoundError:
                continue  # another snapshot cleaned it first
    except OSError:
        pass  # only a cache: the next snapshot seeds from the user's index again
