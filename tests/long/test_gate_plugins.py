"""`loopengt.gates` entry points, end to end: a tiny plugin package is pip-installed into a fresh venv,
its gate type is used by a spec through that venv's loopengt (validate, doctor, an MCP server), broken
entry points beside it are reported and stop nothing, and once it is uninstalled validation names the
missing gate type and the package that provided it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp_helpers import ok, serve_args, server_env, step
from test_gate_types import spec

PACKAGE = "loopengt-toy-gates"

# The package builds with a backend of its own (below): the test venv need not hold setuptools and wheel.
PYPROJECT = """\
[build-system]
requires = []
build-backend = "toy_backend"
backend-path = ["."]
"""

ENTRY_POINTS = """\
[loopengt.gates]
min_length = toy_gates:MinLength
not_a_gate = toy_gates:NOT_A_GATE
gone = toy_gates_missing:Gate
"""

BACKEND = f'''\
"""A PEP 517 backend that builds the one-module wheel of {PACKAGE}."""
import base64, hashlib, zipfile

NAME, VERSION = "loopengt_toy_gates", "0.1.0"
INFO = f"{{NAME}}-{{VERSION}}.dist-info"


def _files():
    with open("toy_gates.py", "rb") as f:
        module = f.read()
    return {{
        "toy_gates.py": module,
        f"{{INFO}}/METADATA": b"Metadata-Version: 2.1\\nName: {PACKAGE}\\nVersion: 0.1.0\\n",
        f"{{INFO}}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: toy_backend\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n",
        f"{{INFO}}/entry_points.txt": {ENTRY_POINTS!r}.encode(),
    }}


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{{NAME}}-{{VERSION}}-py3-none-any.whl"
    files, record = _files(), []
    with zipfile.ZipFile(f"{{wheel_directory}}/{{name}}", "w") as wheel:
        for path, data in files.items():
            wheel.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{{path}},sha256={{digest}},{{len(data)}}")
        record.append(f"{{INFO}}/RECORD,,")
        wheel.writestr(f"{{INFO}}/RECORD", "\\n".join(record) + "\\n")
    return name
'''

MODULE = """\
from pydantic import BaseModel, ConfigDict, Field

from loopengt_core.model.state import GateResult


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    field: str
    chars: int = Field(ge=1)


class MinLength:
    key = "min_length"
    config = Config

    def check(self, config, output, context):
        text = output.get(config.field) if isinstance(output, dict) else None
        if isinstance(text, str) and len(text) >= config.chars:
            return GateResult(name=context.gate, passed=True)
        return GateResult(
            name=context.gate, passed=False, feedback=f"{config.field}: at least {config.chars} characters"
        )

    def problems(self, config):
        return []


NOT_A_GATE = 42
"""

SPEC = spec({"min_length": {"field": "summary", "chars": 12}, "plugin": PACKAGE})  # the toy gate's spec


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    """A fresh venv that sees this interpreter's packages (loopengt among them) behind its own."""
    root = tmp_path / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(root)], check=True
    )
    python = root / "bin" / "python"
    own = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    outer = sysconfig.get_paths()["purelib"]  # processed as a site dir: the editable loopengt's .pth too
    Path(own, "_outer_site.pth").write_text(f"import site; site.addsitedir({outer!r})\n")
    return python


def pip(python: Path, *args: str, tmp: Path) -> None:
    env = {**os.environ, "PIP_NO_CACHE_DIR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "TMPDIR": str(tmp)}
    command = [sys.executable, "-m", "pip", "--python", str(python), *args]
    done = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr


def loopengt(python: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [python, "-m", "loopengt_server", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.anyio
async def test_a_plugin_gate_from_an_installed_package(venv: Path, tmp_path: Path) -> None:
    plugin = tmp_path / "plugin"
    plugin.mkdir()
    (plugin / "pyproject.toml").write_text(PYPROJECT)
    (plugin / "toy_gates.py").write_text(MODULE)
    (plugin / "toy_backend.py").write_text(BACKEND)
    project = tmp_path / "project"
    project.mkdir()
    (project / "loop.yaml").write_text(yaml.safe_dump(SPEC))
    pip(venv, "install", "--no-deps", "--no-build-isolation", "--no-index", str(plugin), tmp=tmp_path)

    valid = loopengt(venv, "validate", "loop.yaml", cwd=project)
    assert valid.returncode == 0, valid.stdout + valid.stderr
    doctor = loopengt(venv, "doctor", "--store", str(tmp_path / "store"), cwd=project).stdout
    lines = [line for line in doctor.splitlines() if "gate plugins" in line]
    assert lines[0].split(None, 1) == ["OK", f"gate plugins           min_length ({PACKAGE})"]
    assert sorted(line.split("gate plugin '")[1].split("'")[0] for line in lines[1:]) == [
        "gone",
        "not_a_gate",
    ]
    assert all(line.startswith("WARN") for line in lines[1:])
    assert "cannot be imported: ModuleNotFoundError" in doctor
    assert "not a gate type: its `key` must be an identifier (got None)" in doctor

    # an MCP server in the venv starts beside the broken entry points and runs the plugin's gate
    params = StdioServerParameters(
        command=str(venv), args=serve_args(tmp_path / "store"), cwd=str(project), env=server_env()
    )
    async with Client(params, mode="auto", read_timeout_seconds=60) as client:
        started = ok(await client.call_tool("start_run", {"spec_path": "loop.yaml"}))
        run_id = started["run_id"]
        retry = ok(await step(client, run_id, "write#1", {"summary": "short"}))
        assert retry["tasks"][0]["feedback"] == "summary: at least 12 characters"
        assert (
            ok(await step(client, run_id, "write#2", {"summary": "long enough now"}))["status"] == "completed"
        )

    pip(venv, "uninstall", "-y", PACKAGE, tmp=tmp_path)
    gone = loopengt(venv, "validate", "loop.yaml", cwd=project)
    assert gone.returncode == 1
    assert gone.stdout.splitlines()[0] == (
        "policy.verification_gates[0].min_length: unknown gate type 'min_length': no installed plugin "
        f"provides it (package '{PACKAGE}' did)"
    )
    (project / "loop.yaml").write_text(yaml.safe_dump(spec({"min_length": {}})))
    bare = loopengt(venv, "validate", "loop.yaml", cwd=project).stdout
    assert "no installed plugin provides a gate type 'min_length'" in bare
