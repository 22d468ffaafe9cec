#!/usr/bin/env bash
# The official MCP conformance suite (server mode) against `loopengt serve --transport streamable-http`.
# Needs Node >= 22, which npx provides (the machine has Node 20). Expected failures: only the
# scenarios that need the suite's own fixture tools/resources/prompts.
set -euo pipefail
cd "$(dirname "$0")/.."
port="${CONFORMANCE_PORT:-8791}"
store="$(mktemp -d)"
loopengt serve --transport streamable-http --port "$port" --store "$store" >"$store/server.log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  if python -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $port)))"; then break; fi
  sleep 0.1
done
npx -y -p node@22 -p @modelcontextprotocol/conformance@0.1.16 conformance server \
  --url "http://127.0.0.1:$port/mcp" --expected-failures .ci/conformance-expected-failures.yaml \
  -o "$store/results" 2>&1 | grep -v "npm warn"
exit "${PIPESTATUS[0]}"
