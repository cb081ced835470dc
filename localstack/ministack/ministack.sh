#!/usr/bin/env bash
# The AWS emulator (ministack, LocalStack-compatible API on one port), no Docker.
# Usage: localstack/ministack/ministack.sh start|stop|status|install
# Env: MINISTACK_PORT (4566), MINISTACK_STATE_DIR (.local/ministack), LAMBDA_PYTHON (python3.11),
#      MINISTACK_VENV (.local/ministack-venv, shareable between stacks).
set -euo pipefail
NAME=emulator
source "$(dirname "$0")/../lib.sh"
HERE="$ROOT/localstack/ministack"

PORT=${MINISTACK_PORT:-4566}
STATE=${MINISTACK_STATE_DIR:-$LOCAL_DIR/ministack}
VENV=${MINISTACK_VENV:-$LOCAL_DIR/ministack-venv}
ADDRESS="http://127.0.0.1:$PORT"
PIDFILE=$STATE/ministack.pid
LOGFILE=$STATE/ministack.log
PYTHON=${LAMBDA_PYTHON:-python3.11}

ready() {
  python3 - "$PORT" <<'PY'
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/_ministack/health", timeout=2) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
}

install() {
  local stamp
  stamp=$(sha256sum "$HERE/requirements.txt" | cut -c1-16)
  if [ -f "$VENV/.stamp" ] && [ "$(cat "$VENV/.stamp")" = "$stamp" ]; then return 0; fi
  command -v "$PYTHON" >/dev/null 2>&1 || fail "no $PYTHON found; the Lambda functions target it (set LAMBDA_PYTHON)"
  say "creating the emulator environment with $PYTHON..."
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV" || fail "could not create $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements.txt" \
    >"$LOCAL_DIR/ministack-install.log" 2>&1 \
    || { tail -n 20 "$LOCAL_DIR/ministack-install.log" >&2; fail "pip could not install ministack (log: $LOCAL_DIR/ministack-install.log)"; }
  echo "$stamp" > "$VENV/.stamp"
  say "installed $(grep -v '^#' "$HERE/requirements.txt" | xargs)"
}

start() {
  already_running && return 0
  local pid
  require_free_port "$PORT" "AWS emulator"
  install
  mkdir -p "$STATE/state" "$STATE/s3" "$STATE/tmp"
  local started=$SECONDS
  GATEWAY_PORT=$PORT BIND_HOST=127.0.0.1 MINISTACK_HOST=127.0.0.1 \
  PERSIST_STATE=1 STATE_DIR="$STATE/state" S3_PERSIST=1 S3_DATA_DIR="$STATE/s3" \
  TMPDIR="$STATE/tmp" LOG_LEVEL=${MINISTACK_LOG_LEVEL:-WARNING} \
    spawn "$VENV/bin/ministack" >"$LOGFILE" 2>&1 </dev/null &
  pid=$!
  echo "$pid" > "$PIDFILE"
  wait_ready "$pid" "${MINISTACK_START_TIMEOUT:-60}" "$LOGFILE" ready
  say "started (pid $pid, http://127.0.0.1:$PORT) in $((SECONDS - started))s"
}

stop() { stop_service 20; }
status() { status_service; }

case "${1:-}" in
  start) mkdir -p "$STATE"; start ;;
  stop) stop ;;
  status) status ;;
  install) mkdir -p "$LOCAL_DIR"; install ;;
  *) echo "usage: $0 start|stop|status|install" >&2; exit 2 ;;
esac
