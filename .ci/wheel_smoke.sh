#!/usr/bin/env bash
# CI: the product is the wheel. Build it, install it non-editable into a fresh venv, and use it from a
# folder that is not the checkout (so nothing is imported or read from the source tree):
#   - the example loop completes on the default store (in a git repository whose .gitignore lists .loopengt/),
#   - the stdio server lists the three prompts and renders one,
#   - `init --client claude-code` installs the three slash commands,
#   - `doctor` finds the prompts,
#   - `loopengt ui` serves its page, its vendored Mermaid and the example run from the wheel.
#   - `import loopengt` (the Python API) is shipped and drives a run.
set -euo pipefail
cd "$(dirname "$0")/.."
checkout="$PWD"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

python3 -m pip wheel -q --no-deps -w "$work/dist" . 2>&1 | grep -v "WARNING: Location" || true
wheel="$(ls "$work"/dist/loopengt-*.whl)"
echo "built $(basename "$wheel")"
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q "$wheel" 2>&1 | grep -v "WARNING: Location" || true
export PATH="$work/venv/bin:$PATH"
hash -r

project="$work/project"
mkdir -p "$project"
cp -r "$checkout/examples" "$project/"
cd "$project"
python -c "import loopengt_server, sys; assert 'site-packages' in loopengt_server.__file__, loopengt_server.__file__"
git init -q
printf '.loopengt/\n' >.gitignore
loopengt --version
echo "== wheel: example loop (workspace: auto, .loopengt/ gitignored)"
loopengt run examples/loop.yaml --agent "python examples/agent.py"

echo "== wheel: prompts over stdio"
python "$checkout/.ci/prompts_smoke.py"

echo "== wheel: init --client claude-code"
loopengt init --client claude-code
count="$(ls .claude/commands/*.md | wc -l)"
[[ "$count" -eq 3 ]] || { echo "expected 3 slash commands, found $count"; exit 1; }
echo "slash commands: $(cd .claude/commands && ls | paste -sd " " -)"

echo "== wheel: doctor"
loopengt doctor | grep -E '^OK +prompts'

echo "== wheel: loopengt ui serves its page (static files are package data)"
loopengt ui --store .loopengt >"$work/ui.out" 2>"$work/ui.err" &
ui_pid=$!
python - "$work/ui.out" <<'PY'
import json, sys, time, urllib.request
deadline = time.monotonic() + 30
line = ""
while time.monotonic() < deadline and not line:
    line = open(sys.argv[1]).read().strip()
    time.sleep(0.1)
assert line.startswith("loopengt ui: http://"), f"no address printed: {line!r}"
url = line.split()[2]
page = urllib.request.urlopen(url, timeout=10).read().decode()
assert "static/app.js" in page and "static/mermaid.min.js" in page, page[:200]
for name in ("app.js", "style.css", "mermaid.min.js"):
    size = len(urllib.request.urlopen(url + "static/" + name, timeout=10).read())
    assert size > 1000, (name, size)
runs = json.loads(urllib.request.urlopen(url + "api/runs", timeout=10).read())
assert [r["status"] for r in runs] == ["completed"], runs
print(f"ui: {url} serves the page, its scripts and {len(runs)} run")
PY
kill "$ui_pid"
wait "$ui_pid" 2>/dev/null || true
echo "== wheel: import loopengt"
python -c "
import loopengt
assert 'site-packages' in loopengt.__file__, loopengt.__file__
assert loopengt.validate('examples/loop.yaml').valid
with loopengt.open('.loopengt-api') as runs:
    view = runs.start(template='planner_executor')
    assert view.tasks[0].task_id == 'plan#1', view
    print('import loopengt: started', view.run_id)
"
