#!/usr/bin/env bash
# Apache Kafka (KRaft, single node) for local runs: fetched from Maven Central, no Docker.
# Usage: localstack/kafka/kafka.sh start|stop|status|fetch
# Env: KAFKA_PORT (9092, PLAINTEXT), KAFKA_CONTROLLER_PORT (port+1), KAFKA_SECURE_PORT (port+2,
#      SASL_SSL with SCRAM-SHA-512), KAFKA_MTLS_PORT (secure port+1, SSL with client certificates),
#      KAFKA_STATE_DIR (.local/kafka), KAFKA_LIBS (.local/kafka-libs, shareable between stacks),
#      KAFKA_HEAP (1g), KAFKA_START_TIMEOUT (90), KAFKA_PYTHON (the project's .venv python),
#      KAFKA_SNAPSHOT_INTERVAL_MS (60000: metadata snapshots, see server.properties.in).
# Made once and kept in the state dir: tls/ (ca.pem for clients; see tls.py) and secrets/admin
# (the SCRAM-SHA-512 password of the super user `admin`, added when the log dir is formatted,
# and again after any start where its login is refused).
set -euo pipefail
# MESHGATE_KAFKA_NODES=3: the three-node cluster of localstack/kafka/cluster.sh instead.
case "${MESHGATE_KAFKA_NODES:-1}:${1:-}" in 3:start|3:stop|3:status) exec bash "$(dirname "$0")/cluster.sh" "$@" ;; esac
NAME=kafka
source "$(dirname "$0")/../lib.sh"
HERE="$ROOT/localstack/kafka"

PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
STATE=${KAFKA_STATE_DIR:-$LOCAL_DIR/kafka}
LIBS=${KAFKA_LIBS:-$LOCAL_DIR/kafka-libs}
SECURE_PORT=${KAFKA_SECURE_PORT:-$((PORT + 2))}
MTLS_PORT=${KAFKA_MTLS_PORT:-$((SECURE_PORT + 1))}
TLS_DIR=$STATE/tls
SECRETS_DIR=$STATE/secrets
PYTHON=${KAFKA_PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
ADDRESS="127.0.0.1:$PORT, SASL_SSL 127.0.0.1:$SECURE_PORT, SSL 127.0.0.1:$MTLS_PORT"
PIDFILE=$STATE/kafka.pid
LOGFILE=$STATE/kafka.log
HEAP=${KAFKA_HEAP:-1g}
JAVA=${JAVA:-java}

ready() { python3 "$HERE/probe.py" "127.0.0.1:$PORT" && port_in_use "$SECURE_PORT" && port_in_use "$MTLS_PORT"; }

fetch() {
  command -v "$JAVA" >/dev/null 2>&1 || fail "no Java found ('$JAVA'); install a JDK 17+ (apt-get install openjdk-17-jdk-headless) or set JAVA"
  local stamp
  stamp=$(sha256sum "$HERE/pom.xml" | cut -c1-16)
  if [ -f "$LIBS/.stamp" ] && [ "$(cat "$LIBS/.stamp")" = "$stamp" ]; then return 0; fi
  command -v mvn >/dev/null 2>&1 || fail "no Maven found; install it (apt-get install maven) to fetch the broker"
  say "fetching Apache Kafka and its dependencies from Maven Central..."
  rm -rf "$LIBS.tmp"
  mvn -B -q -f "$HERE/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$LIBS.tmp" -DincludeScope=runtime >"$LOCAL_DIR/kafka-fetch.log" 2>&1 \
    || { tail -n 20 "$LOCAL_DIR/kafka-fetch.log" >&2; fail "Maven could not fetch the broker (log: $LOCAL_DIR/kafka-fetch.log)"; }
  echo "$stamp" > "$LIBS.tmp/.stamp"
  rm -rf "$LIBS" && mv "$LIBS.tmp" "$LIBS"
  say "fetched $(ls "$LIBS" | wc -l) jars into $LIBS"
}

# Short-lived tool runs (formatting) get a small fixed heap; KAFKA_HEAP is the broker's.
java_tool() {
  "$JAVA" -Xmx256m -Dlog4j2.configurationFile="$HERE/log4j2.properties" -cp "$LIBS/*" "$@"
}

# Certificates (made once) and the admin's SCRAM password (made once, 0600).
credentials() {
  local made
  made=$("$PYTHON" "$HERE/tls.py" "$TLS_DIR" 2>"$STATE/tls.log") \
    || { cat "$STATE/tls.log" >&2; fail "could not make the broker's certificates with $PYTHON (needs the 'cryptography' package; set KAFKA_PYTHON)"; }
  [ -z "$made" ] || say "$made"
  mkdir -p "$SECRETS_DIR" && chmod 700 "$SECRETS_DIR"
  if [ ! -s "$SECRETS_DIR/admin" ]; then
    (umask 077; "$PYTHON" -c 'import secrets; print(secrets.token_hex(24))' > "$SECRETS_DIR/admin.tmp") \
      && mv "$SECRETS_DIR/admin.tmp" "$SECRETS_DIR/admin" || fail "could not write $SECRETS_DIR/admin"
  fi
}

admin_scram() { echo "SCRAM-SHA-512=[name=admin,password=$(cat "$SECRETS_DIR/admin")]"; }

configure() {
  mkdir -p "$STATE/data"
  credentials
  rm -f "$STATE/scram-admin.stamp"  # what an older kafka.sh trusted instead of a login
  sed -e "s#@PORT@#$PORT#g" -e "s#@CONTROLLER_PORT@#$CONTROLLER_PORT#g" -e "s#@DATA_DIR@#$STATE/data#g" \
    -e "s#@SECURE_PORT@#$SECURE_PORT#g" -e "s#@MTLS_PORT@#$MTLS_PORT#g" -e "s#@TLS_DIR@#$TLS_DIR#g" \
    -e "s#@KEYSTORE_PASSWORD@#$(cat "$TLS_DIR/broker.password")#g" \
    -e "s#@SNAPSHOT_INTERVAL_MS@#${KAFKA_SNAPSHOT_INTERVAL_MS:-60000}#g" \
    "$HERE/server.properties.in" > "$STATE/server.properties.tmp"
  chmod 600 "$STATE/server.properties.tmp" && mv "$STATE/server.properties.tmp" "$STATE/server.properties"
  if [ ! -f "$STATE/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java_tool kafka.tools.StorageTool random-uuid 2>"$STATE/format.log" | tail -n 1) \
      || { cat "$STATE/format.log" >&2; fail "could not run $JAVA to format the log directory"; }
    [ -n "$cluster_id" ] || fail "the storage tool printed no cluster id (see $STATE/format.log)"
    java_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$STATE/server.properties" \
      --add-scram "$(admin_scram)" \
      >"$STATE/format.log" 2>&1 || { cat "$STATE/format.log" >&2; fail "could not format the log directory $STATE/data"; }
    say "formatted $STATE/data (cluster $cluster_id, SCRAM user admin)"
  fi
}

# After every start, the super user's SCRAM login is tried, not trusted: a log dir formatted
# before the SCRAM listener (or with another admin password) never had the credential, and a
# KRaft broker can come back from a restart without any SCRAM credential (a Kafka defect:
# docs/decisions.md, "SCRAM credentials lost on restart"). A refused admin is set again through
# the PLAINTEXT listener; the services' users are repaired by `meshgate up`.
admin_login() {
  (cd "$ROOT" && "$PYTHON" -m infra.local.scram_login "127.0.0.1:$SECURE_PORT" "$TLS_DIR/ca.pem" admin \
    <"$SECRETS_DIR/admin" 2>>"$STATE/scram.log")
}

ensure_admin() {
  local rc=0 waited=0
  : >"$STATE/scram.log"
  admin_login || rc=$?
  [ "$rc" = 0 ] && return 0
  if [ "$rc" != 3 ]; then  # 3: refused (infra/local/scram_login.py); anything else an error
    cat "$STATE/scram.log" >&2; stop_service 30 >/dev/null
    fail "could not try the admin's SCRAM login on 127.0.0.1:$SECURE_PORT (log: $STATE/scram.log); stopped the broker"
  fi
  java_tool kafka.admin.ConfigCommand --bootstrap-server "127.0.0.1:$PORT" --alter \
    --entity-type users --entity-name admin \
    --add-config "SCRAM-SHA-512=[password=$(cat "$SECRETS_DIR/admin")]" \
    >>"$STATE/scram.log" 2>&1 || { cat "$STATE/scram.log" >&2; stop_service 30 >/dev/null; fail "could not add the SCRAM user admin (log: $STATE/scram.log); stopped the broker"; }
  # The credential reaches the listener through the metadata log.
  until admin_login; do  # (an error here ends in the bounded wait's clear failure too)
    waited=$((waited + 1))
    [ "$waited" -le 20 ] || { stop_service 30 >/dev/null; fail "the SCRAM user admin is still refused after it was set (log: $STATE/scram.log); stopped the broker"; }
    sleep 0.5
  done
  say "added SCRAM user admin to $STATE/data (its login was refused: never set in this log dir, or lost in a restart)"
}

start() {
  already_running && return 0
  local pid
  require_free_port "$PORT" "Kafka listener"
  require_free_port "$CONTROLLER_PORT" "Kafka controller"
  require_free_port "$SECURE_PORT" "Kafka SASL_SSL listener"
  require_free_port "$MTLS_PORT" "Kafka SSL listener"
  fetch
  configure
  local started=$SECONDS
  spawn "$JAVA" -Xms256m -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Dlog4j2.configurationFile="$HERE/log4j2.properties" -cp "$LIBS/*" \
    kafka.Kafka "$STATE/server.properties" >"$LOGFILE" 2>&1 </dev/null &
  pid=$!
  echo "$pid" > "$PIDFILE"
  wait_ready "$pid" "${KAFKA_START_TIMEOUT:-90}" "$LOGFILE" ready
  ensure_admin
  say "started (pid $pid, $ADDRESS) in $((SECONDS - started))s"
}

stop() { stop_service 30; }
status() { status_service; }

case "${1:-}" in
  start) mkdir -p "$STATE"; start ;;
  stop) stop ;;
  status) status ;;
  fetch) mkdir -p "$LOCAL_DIR"; fetch ;;
  *) echo "usage: $0 start|stop|status|fetch" >&2; exit 2 ;;
esac
