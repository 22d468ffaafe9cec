#!/usr/bin/env bash
# Runs the test suite in a polluted checkout and shows that it passes and touches nothing outside the
# tests' temporary folders: the repository's .loopengt store (a running run with open tasks, as
# `loopengt run` leaves one), greeting.txt, and a HOME with ~/.codex/config.toml and ~/.claude.
#
#   tests/hermetic_audit.sh [PYTEST ARGS...]     (from a checkout, its virtualenv active)
#
# Exits 0 only if pytest passed and no file in the repository or the HOME was added, removed or changed
# (runner caches excepted: .pytest_cache, .hypothesis, __pycache__, which are gitignored). What it adds
# is removed at the end: the polluted HOME, its runs polluted-*, and .loopengt and greeting.txt unless they
# were there before (README command 1 leaves both).
set -euo pipefail

repo=$(git rev-parse --show-toplevel)
cd "$repo"
scratch=$(mktemp -d)
home="$scratch/home"
leave=()
[ -e .loopengt ] || leave+=("$repo/.loopengt")
[ -e greeting.txt ] || leave+=("$repo/greeting.txt")
cleanup() { rm -rf "$scratch" "$repo"/.loopengt/runs/polluted-* "${leave[@]}"; }
trap cleanup EXIT

# --- pollute: the user's editor settings, a greeting, a store with running runs -------------------------
mkdir -p "$home/.codex" "$home/.claude/commands"
printf '[mcp_servers.loopengt]\ncommand = "polluted-loopengt"\nargs = ["serve"]\n' >"$home/.codex/config.toml"
printf '{"hooks": {"Stop": [{"hooks": [{"type": "command", "command": "loopengt hook stop"}]}]}}\n' \
    >"$home/.claude/settings.json"
printf 'Polluted: do as the polluted run says.\n' >"$home/.claude/commands/design_loop.md"
[ -e greeting.txt ] || printf 'Helo, polluted!\n' >greeting.txt

# a run that `loopengt run` drove until its agent failed on the second step (exit 1)
cat >"$scratch/spec.yaml" <<'YAML'
name: polluted
goal: Leave a run behind
workspace: none
agents: [{name: a}]
steps:
  - {name: first, agent: a, prompt_template: "Do the first thing."}
  - {name: second, agent: a, prompt_template: "Do the second thing.", dependencies: [first]}
policy: {max_turns: 10, retry: {max_retries: 0}}
YAML
cat >"$scratch/agent.py" <<'PY'
import json, sys
task = json.load(sys.stdin)
if task["step"] == "second":
    sys.exit(1)
json.dump({"summary": "done"}, sys.stdout)
PY
HOME="$home" loopengt run "$scratch/spec.yaml" --run-id polluted-by-cli --agent "python $scratch/agent.py" \
    >"$scratch/run.log" 2>&1 || true
# a running run with open tasks, for certain (whatever `loopengt run` does with a failing agent)
HOME="$home" python - <<'PY'
from pathlib import Path

from loopengt_core.service.runs import Runs
from loopengt_core.store.files import FileStore

spec = {
    "name": "polluted-open",
    "goal": "Keep every agent busy",
    "workspace": "none",
    "agents": [{"name": "a"}],
    "steps": [{"name": "forever", "agent": "a", "prompt_template": "Never stop."}],
    "policy": {"max_turns": 100},
}
store = FileStore(Path(".loopengt"))
view = Runs(store, cwd=Path.cwd()).start_run(spec=spec, run_id="polluted-open")
store.close()
assert view.status == "running" and view.tasks, view
PY
echo "== polluted: $(HOME="$home" loopengt runs 2>/dev/null | tail -n +2 | awk '{print $1 " " $3}' | paste -sd, -)"

# --- every file (sha256) and folder of the repository and the HOME, runner caches left out ---------------
listing() {
    python - "$repo" "$home" <<'PY'
import hashlib, os, sys

SKIP = {".git", ".venv", "__pycache__", ".pytest_cache", ".hypothesis", ".ruff_cache", ".mypy_cache"}
repo, home = sys.argv[1:]
watched = (os.path.join(repo, ".loopengt"), home)  # folders whose mtime counts (a file made and removed)
for top in (repo, home):
    for folder, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d not in SKIP and not d.endswith(".egg-info"))
        mtime = os.stat(folder).st_mtime_ns if folder.startswith(watched) else "-"
        print("dir", mtime, folder)
        for name in sorted(files):
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                print(hashlib.sha256(f.read()).hexdigest(), os.stat(path).st_mtime_ns, path)
PY
}
listing >"$scratch/before.txt"
git status --porcelain --ignored >"$scratch/git-before.txt"
echo "== before: $(grep -c '' "$scratch/before.txt") entries (files with sha256 and mtime, folders)"

# --- the suite, as README command 2 runs it, with the polluted HOME and an editor's variables -------------
set +e
HOME="$home" CODEX_HOME="$home/.codex" CLAUDE_PROJECT_DIR="$repo" python -m pytest "$@"
status=$?
set -e

listing >"$scratch/after.txt"
git status --porcelain --ignored >"$scratch/git-after.txt"
echo "== pytest exit status: $status"
if diff -u "$scratch/before.txt" "$scratch/after.txt"; then
    echo "== after: the same $(grep -c '' "$scratch/after.txt") entries, byte for byte and untouched (mtime)"
else
    echo "== after: the repository or the HOME changed (above)"
    status=1
fi
if ! diff -u "$scratch/git-before.txt" "$scratch/git-after.txt"; then
    echo "== git status --ignored changed (above; runner caches are expected there)"
fi
exit "$status"
