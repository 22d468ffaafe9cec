#!/usr/bin/env bash
# CI: the README's two Quick start commands, exactly as written (read from README.md), one after the other,
# in a fresh clone of this checkout with nothing beside it (no ../shared), as a user on a new machine runs
# them: no CI variable, no test database, the default store in the clone's own .loopengt/.
set -euo pipefail
cd "$(dirname "$0")/.."
checkout="$PWD"
solo="$(mktemp -d)"
trap 'rm -rf "$solo"' EXIT

# The first two ```bash blocks after "## Quick start".
mapfile -t commands < <(awk '
    /^## Quick start/ { on = 1; next }
    on && /^## / { exit }
    on && /^```bash$/ { inside = 1; next }
    on && inside && /^```$/ { inside = 0; next }
    on && inside { print }
' README.md | head -n 2)
[[ ${#commands[@]} -eq 2 ]] || { echo "expected two commands in README's Quick start, found ${#commands[@]}"; exit 1; }

# the PATH of a shell with no virtualenv active (CI's own venv taken out)
user_path="$PATH"
if [[ -n "${VIRTUAL_ENV:-}" ]]; then
    user_path="$(tr ':' '\n' <<<"$PATH" | grep -vxF "$VIRTUAL_ENV/bin" | paste -sd: -)"
fi

git clone -q "$checkout" "$solo/loopengt"
cd "$solo/loopengt"
[[ ! -e ../shared ]] || { echo "../shared exists beside the clone"; exit 1; }
for i in 0 1; do
    echo "== README command $((i + 1)): ${commands[$i]}"
    start=$SECONDS
    env -u CI -u LOOPENGT_TEST_POSTGRES -u VIRTUAL_ENV PATH="$user_path" bash -c "${commands[$i]}"
    echo "== README command $((i + 1)) exited 0 in $((SECONDS - start)) s"
done
