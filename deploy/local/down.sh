#!/usr/bin/env bash
# Stops the local demo cluster and removes its state.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
STATE=${VMAPP_DEMO_DIR:-$ROOT/.demo}
quiet=${1:-}
if [ -d "$STATE" ]; then
  for pidfile in "$STATE"/*.pid; do
    [ -e "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
  done
  rm -rf "$STATE"
  [ "$quiet" = --quiet ] || echo "stopped the demo cluster and removed $STATE"
else
  [ "$quiet" = --quiet ] || echo "no demo cluster is running ($STATE does not exist)"
fi
