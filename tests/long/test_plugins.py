"""Store and client plugins (`loopengt.stores`, `loopengt.clients`) from a real package installed into a venv.

The package, built here in a temporary folder, provides a store backend under the scheme `wrapfile://`
(a Store that wraps the file store: only the protocol's methods, no capability), an editor client `zed`
with hooks, and three broken entry points (a missing module, a store name that is not a scheme, a client
that is not a ClientRecord). The venv is made with `--system-site-packages` and a `.pth` that adds this
venv's site-packages (loopengt and its dependencies), and the package is installed with
`pip --no-deps --no-build-isolation`. Everything then runs in that venv's Python: the store contract
suite through the plugin, `doctor`, `init --client zed`, `hook stop`, and an MCP server on the
plugin's store.
"""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mcp.client import Client
from mcp.client.stdio import StdioServerParameters
from mcp_helpers import assert_no_traceback, ok, server_env, step

REPO = Path(__file__).resolve().parents[2]

PLUGIN_MODULE = '''
"""A loopengt plugin package for the tests: a store backend and an editor client."""

from pathlib import Path

from loopengt_core.store import Store
from loopengt_core.store.files import FileStore
from loopengt_server.clients.records import (
    ClientRecord, HookFile, McpConfig, Place, Protocol, Registration, SESSION_COMMAND, STOP_COMMAND,
)

PREFIX = "wrapfile://"


class WrapStore:
    """The file store under another scheme, exposing only the Store protocol."""

    def __init__(self, location: str, *, snapshot_every: int) -> None:
        self._inner = FileStore(Path(location[len(PREFIX):]), snapshot_every=snapshot_every)
        self.snapshot_every = snapshot_every


def _delegate(name):
    def method(self, *args, **kwargs):
        return getattr(self._inner, name)(*args, **kwargs)
    method.__name__ = name
    return method


for _name in (
    "create_run", "append", "load", "events", "task_events", "last_seq", "save_snapshot",
    "save_checkpoint", "discard_checkpoint", "get_checkpoint", "list_checkpoints", "list_runs",
    "exists", "delete_run", "lock", "version", "close",
):
    setattr(WrapStore, _name, _delegate(_name))


def open_wrapfile(location: str, *, snapshot_every: int) -> Store:
    if not location.startswith(PREFIX) or len(location) == len(PREFIX):
        raise ValueError(f"use {PREFIX}PATH, not {location!r}")
    return WrapStore(location, snapshot_every=snapshot_every)


def zed() -> ClientRecord:
    return ClientRecord(
        name="zed",
        title="Zed",
        mcp=McpConfig(Place(".zed/settings.json"), "json", "context_servers"),
        commands=None,
        hooks=HookFile(
            Place(".zed/hooks.json"),
            "plain",
            (Registration("stop", "agent_stop", STOP_COMMAND), Registration("session", "session_start", SESSION_COMMAND)),
        ),
        protocol=Protocol(
            event_key="zed_event",
            stop_event="agent_stop",
            session_events=("session_start",),
            session_keys=("thread_id",),
            place_keys=("cwd",),
            stop_answer=lambda reason: {"continue_with": reason},
            session_answer=lambda text: {"context": text},
            allow_answer={},
            again_key=None,
        ),
        prompts="MCP prompts",
        session_note="new threads",
        tasks="not used yet",
        timeout="not documented",
    )


NOT_A_RECORD = "a string"
'''

ENTRY_POINTS = """
[loopengt.stores]
wrapfile = loopengt_testplugins:open_wrapfile
brokenstore = no_such_module_here:factory
Not_A_Scheme = loopengt_testplugins:open_wrapfile

[loopengt.clients]
zed = loopengt_testplugins:zed
notaclient = loopengt_testplugins:NOT_A_RECORD
"""

PYPROJECT = """
[build-system]
requires = []
build-backend = "wheelmaker"
backend-path = ["."]

[project]
name = "loopengt-testplugins"
version = "1.0"
"""

# An in-tree PEP 517 backend, so that building the package needs neither setuptools nor wheel here.
BACKEND = """
import base64, hashlib, pathlib, zipfile

NAME, VERSION = "loopengt_testplugins", "1.0"
DIST = f"{NAME}-{VERSION}.dist-info"


def _files():
    here = pathlib.Path(__file__).parent
    return {
        f"{NAME}.py": (here / f"{NAME}.py").read_bytes(),
        f"{DIST}/METADATA": b"Metadata-Version: 2.1\\nName: loopengt-testplugins\\nVersion: 1.0\\n",
        f"{DIST}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: wheelmaker\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
        f"{DIST}/entry_points.txt": (here / "entry_points.txt").read_bytes(),
    }


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    records = []
    with zipfile.ZipFile(pathlib.Path(wheel_directory) / name, "w") as archive:
        for path, data in _files().items():
            archive.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{path},sha256={digest},{len(data)}")
        records.append(f"{DIST}/RECORD,,")
        archive.writestr(f"{DIST}/RECORD", "\\n".join(records) + "\\n")
    return name


def get_requires_for_build_wheel(config_settings=None):
    return []
"""


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with the plugin package installed (and loopengt seen through this venv's site-packages)."""
    base = tmp_path_factory.mktemp("plugins")
    package = base / "package"
    package.mkdir()
    (package / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (package / "wheelmaker.py").write_text(BACKEND, encoding="utf-8")
    (package / "entry_points.txt").write_text(ENTRY_POINTS, encoding="utf-8")
    (package / "loopengt_testplugins.py").write_text(PLUGIN_MODULE, encoding="utf-8")
    venv = base / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
        check=True,
        timeout=120,
    )
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    outer = [p for p in site.getsitepackages() if Path(p).is_dir()]
    lines = "".join(f"import site; site.addsitedir({p!r})\n" for p in outer)
    (Path(purelib) / "outer_venv.pth").write_text(lines, encoding="utf-8")
    installed = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            str(package),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=base,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return python


def in_venv(python: Path, *args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, **env},
    )


def loopengt(python: Path, *args: str, cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "loopengt_server", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        input=stdin,
    )


def test_the_store_contract_runs_through_a_store_plugin(venv_python: Path, tmp_path: Path) -> None:
    """tests/test_store_contract.py against `wrapfile://{tmp}/store`, the plugin's backend (the capability
    tests skip: the wrapper claims none, and the suite checks that it has none)."""
    result = in_venv(
        venv_python,
        *("-m", "pytest", str(REPO / "tests" / "test_store_contract.py"), "-p", "no:cacheprovider"),
        *("-o", "addopts=", "-q", "-k", "location", "--rootdir", str(REPO)),
        cwd=tmp_path,
        LOOPENGT_TEST_STORE="wrapfile://{tmp}/store",
    )
    summary = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else result.stderr
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in summary
    assert "failed" not in summary
    passed = int(summary.split(" passed")[0].split()[-1])
    assert passed >= 50, summary


def test_doctor_reports_plugins_and_broken_ones(venv_python: Path, tmp_path: Path) -> None:
    store = f"wrapfile://{tmp_path}/store"
    done = loopengt(venv_python, "doctor", "--store", store, cwd=tmp_path)
    out = done.stdout
    assert_no_traceback(out + done.stderr)
    assert "OK    store" in out
    assert "WrapStore, 0 runs" in out
    assert "wrapfile (loopengt-testplugins 1.0)" in out
    assert "zed (loopengt-testplugins 1.0)" in out
    assert "brokenstore" in out
    assert "ModuleNotFoundError" in out
    assert "'Not_A_Scheme'" in out
    assert "must be a URL scheme" in out
    assert "'notaclient'" in out
    assert "not a loopengt_server.clients.records.ClientRecord" in out
    assert "fix or uninstall loopengt-testplugins" in out
    assert done.returncode == 1  # the broken plugins fail doctor; nothing else stops


def test_a_store_location_without_a_plugin_is_a_clear_error(venv_python: Path, tmp_path: Path) -> None:
    unknown = loopengt(venv_python, "runs", "--store", "nosuch://x", cwd=tmp_path)
    assert unknown.returncode != 0
    assert_no_traceback(unknown.stdout + unknown.stderr)
    assert "no store backend for the scheme 'nosuch'" in unknown.stderr
    assert "wrapfile://" in unknown.stderr
    broken = loopengt(venv_python, "runs", "--store", "brokenstore://x", cwd=tmp_path)
    assert broken.returncode != 0
    assert "the store plugin is broken" in broken.stderr
    assert "ModuleNotFoundError" in broken.stderr
    refused = loopengt(venv_python, "runs", "--store", "wrapfile://", cwd=tmp_path)
    assert refused.returncode != 0
    assert "could not open the store: ValueError: use wrapfile://PATH" in refused.stderr


def test_a_client_plugin_is_initialised_detected_and_checked(venv_python: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    done = loopengt(
        venv_python, "init", "--client", "zed", "--stop-hook", "--project", str(project), cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr
    settings = json.loads((project / ".zed" / "settings.json").read_text())
    assert settings["context_servers"]["loopengt"] == {"command": "loopengt", "args": ["serve"]}
    hooks = json.loads((project / ".zed" / "hooks.json").read_text())
    assert [e["command"] for e in hooks["hooks"]["agent_stop"]] == ["loopengt hook stop"]

    broken = loopengt(venv_python, "init", "--client", "notaclient", "--project", str(project), cwd=tmp_path)
    assert broken.returncode == 2
    assert "comes from a broken plugin" in broken.stderr
    unknown = loopengt(venv_python, "init", "--client", "nope", "--project", str(project), cwd=tmp_path)
    assert "zed" in unknown.stderr  # the plugin's client is among the names offered

    doctor = loopengt(venv_python, "doctor", "--store", str(tmp_path / "store"), cwd=project)
    assert "OK    zed" in doctor.stdout, doctor.stdout
    assert "hooks agent_stop, session_start registered" in doctor.stdout

    # The hook tells a Zed payload by its shape (no --client) and answers in Zed's form: no run, so allow.
    payload = {"zed_event": "agent_stop", "thread_id": "t1", "cwd": str(project)}
    hook = loopengt(venv_python, "hook", "stop", cwd=project, stdin=json.dumps(payload))
    assert hook.returncode == 0, hook.stderr
    assert json.loads(hook.stdout) == {}
    assert "not a hook payload of a known client" not in hook.stderr


@pytest.mark.anyio
async def test_a_server_runs_on_a_plugin_store_with_broken_plugins_installed(
    venv_python: Path, tmp_path: Path
) -> None:
    spec = {
        "name": "one",
        "workspace": "none",
        "agents": [{"name": "a"}],
        "steps": [{"name": "s", "agent": "a"}],
    }
    (tmp_path / "loop.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    store = f"wrapfile://{tmp_path}/store"
    params = StdioServerParameters(
        command=str(venv_python),
        args=["-m", "loopengt_server", "serve", "--store", store],
        cwd=str(tmp_path),
        env=server_env(),
    )
    async with Client(params, read_timeout_seconds=60) as client:
        run_id = ok(await client.call_tool("start_run", {"spec_path": "loop.yaml"}))["run_id"]
        done = ok(await step(client, run_id, "s#1", {"ok": True}))
        assert done["status"] == "completed"
    assert (tmp_path / "store" / "runs" / run_id).is_dir()  # the wrapped file store holds it


def test_store_locations_are_told_apart_and_shown_without_a_password() -> None:
    from loopengt_core.store import describe_location, is_directory
    from loopengt_core.store.plugins import scheme_of

    assert is_directory(".loopengt")
    assert is_directory("runs/mystore:x")
    assert not is_directory("mystore://host/x")
    assert scheme_of("my-store+v2://x") == "my-store+v2"
    assert describe_location("mystore://me:s3cret@host:9/db") == "mystore://me@host:9/db"
    assert describe_location("mystore://host/db") == "mystore://host/db"
