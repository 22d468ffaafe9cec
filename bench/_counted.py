"""`python -m loopengt_server ...` with every `anyio.to_thread.run_sync` call counted (bench/stdio_transport.py).

The count (a worker-thread hop: to the thread and back to the event loop) is written to the file named by
LOOPENGT_BENCH_HOPS when the server exits. The working directory goes first on sys.path, so an earlier
checkout given as the cwd is the code that runs.
"""

import atexit
import os
import runpy
import sys
from pathlib import Path

import anyio.to_thread

sys.path.insert(0, os.getcwd())
_count = [0]
_run_sync = anyio.to_thread.run_sync


async def _counted(*args, **kwargs):  # type: ignore[no-untyped-def]
    _count[0] += 1
    return await _run_sync(*args, **kwargs)


anyio.to_thread.run_sync = _counted  # type: ignore[assignment]
atexit.register(lambda: Path(os.environ["LOOPENGT_BENCH_HOPS"]).write_text(str(_count[0])))
sys.argv[0] = "loopengt_server"
runpy.run_module("loopengt_server", run_name="__main__", alter_sys=True)
