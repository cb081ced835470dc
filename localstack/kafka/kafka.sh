#!/usr/bin/env bash
# Apache Kafka (KRaft, single node) for local runs: fetched from Maven Central, no Docker.
# Usage: localstack/kafka/kafka.sh start|stop|status|fetch
# Env: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (port+1), KAFKA_STATE_DIR (.local/kafka),
#      KAFKA_LIBS (.local/kafka-libs, shareable between stacks), KAFKA_HEAP (1g),
#      KAFKA_START_TIMEOUT (90).
set -euo pipefail
NAME=kafka
source "$(dirname "$0")/../lib.sh"
HERE="$ROOT/localstack/kafka"

PORT=${KAFKA_PORT:-9092}
CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
STATE=${KAFKA_STATE_DIR:-$LOCAL_DIR/kafka}
LIBS=${KAFKA_LIBS:-$LOCAL_DIR/kafka-libs}
ADDRESS="127.0.0.1:$PORT"
PIDFILE=$STATE/kafka.pid
LOGFILE=$STATE/kafka.log
HEAP=${KAFKA_HEAP:-1g}
JAVA=${JAVA:-java}

ready() { python3 "$HERE/probe.py" "127.0.0.1:$PORT"; }

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

configure() {
  mkdir -p "$STATE/data"
  sed -e "s#@PORT@#$PORT#g" -e "s#@CONTROLLER_PORT@#$CONTROLLER_PORT#g" -e "s#@DATA_DIR@#$STATE/data#g" \
    "$HERE/server.properties.in" > "$STATE/server.properties"
  if [ ! -f "$STATE/data/meta.properties" ]; then
    local cluster_id
    cluster_id=$(java_tool kafka.tools.StorageTool random-uuid 2>"$STATE/format.log" | tail -n 1) \
      || { cat "$STATE/format.log" >&2; fail "could not run $JAVA to format the log directory"; }
    [ -n "$cluster_id" ] || fail "the storage tool printed no cluster id (see $STATE/format.log)"
    java_tool kafka.tools.StorageTool format -t "$cluster_id" -c "$STATE/server.properties" \
      >"$STATE/format.log" 2>&1 || { cat "$STATE/format.log" >&2; fail "could not format the log directory $STATE/data"; }
    say "formatted $STATE/data (cluster $cluster_id)"
  fi
}

start() {
  already_running && return 0
  local pid
  require_free_port "$PORT" "Kafka listener"
  require_free_port "$CONTROLLER_PORT" "Kafka controller"
  fetch
  configure
  local started=$SECONDS
  nohup "$JAVA" -Xms256m -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Dlog4j2.configurationFile="$HERE/log4j2.properties" -cp "$LIBS/*" \
    kafka.Kafka "$STATE/server.properties" >"$LOGFILE" 2>&1 </dev/null &
  pid=$!
  echo "$pid" > "$PIDFILE"
  wait_ready "$pid" "${KAFKA_START_TIMEOUT:-90}" "$LOGFILE" ready
  say "started (pid $pid, 127.0.0.1:$PORT) in $((SECONDS - started))s"
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
