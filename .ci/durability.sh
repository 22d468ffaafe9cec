#!/usr/bin/env bash
# CI: the durability suites (not part of `python -m pytest`): crash kills, concurrent clients, three servers
# on PostgreSQL with one killed, and PostgreSQL itself killed mid-burst (pgkill_suite starts, kills and
# restarts a server of its own with synchronous_commit=off, then stops and removes it, so the shared test
# server is never touched). Assumes the venv is active and LOOPENGT_TEST_POSTGRES is exported, as
# .ci/run does before the tests; without it the multi-server suite fails on CI (CI=true) and skips locally.
# -s shows each suite's report lines, among them the crash suite's summary:
#   kills: N, acknowledged steps lost: 0, doubled: 0, check failures: 0
# and the PostgreSQL kill suite's:
#   [pgkill] kills: N (P processes), acknowledged steps: M, lost: 0
# LOOPENGT_DURABILITY_SEED=N replays a printed seed.
set -euo pipefail
cd "$(dirname "$0")/.."

for suite in crash_suite concurrency_suite multiserver_suite pgkill_suite worktree_crash_suite; do
    echo "== durability: $suite"
    start=$SECONDS
    python -m pytest -p no:cacheprovider -q -s "tests/durability/$suite.py"
    echo "== durability: $suite passed in $((SECONDS - start)) s"
done
