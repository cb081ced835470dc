#!/usr/bin/env bash
# A three-node Apache Kafka KRaft cluster on one machine, for the chaos suite (make chaos).
# Each node is broker and controller; same jars as the single broker (kafka.sh fetches them).
# Usage: localstack/kafka/cluster.sh start [NODE] | stop [NODE] | status | bootstrap
#   (also `MESHGATE_KAFKA_NODES=3 localstack/kafka/kafka.sh start|stop|status`)
#   start: every node not running (or only NODE, 1-3), then waits until each answers;
#   stop: every node (or only NODE): TERM, KILL after 30 s. A node killed with SIGKILL is
#   recognised as dead even while it is still a zombie, so `start NODE` brings it back.
# Env: KAFKA_CLUSTER_PORT (MESHGATE_KAFKA_CLUSTER_PORT, 19092): node N listens on
#      PORT+2(N-1), its controller on the port after that (19092-19097 by default);
#      KAFKA_CLUSTER_DIR (.local/kafka-cluster), KAFKA_LIBS (.local/kafka-libs),
#      KAFKA_CLUSTER_HEAP (320m a node), KAFKA_START_TIMEOUT (120).
set -euo pipefail
NAME=kafka-cluster
source "$(dirname "$0")/../lib.sh"
HERE="$ROOT/localstack/kafka"

NODES=(1 2 3)
BASE=${KAFKA_CLUSTER_PORT:-${MESHGATE_KAFKA_CLUSTER_PORT:-19092}}
STATE=${KAFKA_CLUSTER_DIR:-$LOCAL_DIR/kafka-cluster}
LIBS=${KAFKA_LIBS:-$LOCAL_DIR/kafka-libs}
HEAP=${KAFKA_CLUSTER_HEAP:-320m}
JAVA=${JAVA:-java}

port_of() { echo $((BASE + 2 * ($1 - 1))); }
controller_port_of() { echo $(($(port_of "$1") + 1)); }
dir_of() { echo "$STATE/node$1"; }
pidfile_of() { echo "$(dir_of "$1")/kafka.pid"; }
ready_node() { python3 "$HERE/probe.py" "127.0.0.1:$(port_of "$1")"; }

bootstrap() {
  local n out=""
  for n in "${NODES[@]}"; do out="$out${out:+,}127.0.0.1:$(port_of "$n")"; done
  echo "$out"
}

# The pid of node N if it is alive: a zombie (killed, not yet reaped) is dead.
node_pid() {
  local pid
  pid=$(live_pid "$(pidfile_of "$1")") || return 1
  if grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; then return 1; fi
  echo "$pid"
}

check_node() {
  case "$1" in 1|2|3) ;; *) fail "no node '$1'; the cluster has nodes 1, 2 and 3" ;; esac
}

java_tool() {
  "$JAVA" -Xmx256m -Dlog4j2.configurationFile="$HERE/log4j2.properties" -cp "$LIBS/*" "$@"
}

# One cluster id for all three nodes, made once.
cluster_id() {
  if [ ! -s "$STATE/cluster.id" ]; then
    local id
    id=$(java_tool kafka.tools.StorageTool random-uuid 2>"$STATE/format.log" | tail -n 1) \
      || { cat "$STATE/format.log" >&2; fail "could not run $JAVA to make a cluster id"; }
    [ -n "$id" ] || fail "the storage tool printed no cluster id (see $STATE/format.log)"
    echo "$id" > "$STATE/cluster.id"
  fi
  cat "$STATE/cluster.id"
}

configure() {
  local n=$1 dir voters="" v
  dir=$(dir_of "$n")
  for v in "${NODES[@]}"; do voters="$voters${voters:+,}$v@127.0.0.1:$(controller_port_of "$v")"; done
  mkdir -p "$dir/data"
  sed -e "s#@NODE@#$n#g" -e "s#@VOTERS@#$voters#g" -e "s#@PORT@#$(port_of "$n")#g" \
      -e "s#@CONTROLLER_PORT@#$(controller_port_of "$n")#g" -e "s#@DATA_DIR@#$dir/data#g" \
      "$HERE/cluster.properties.in" > "$dir/server.properties"
  if [ ! -f "$dir/data/meta.properties" ]; then
    java_tool kafka.tools.StorageTool format -t "$(cluster_id)" -c "$dir/server.properties" \
      >"$dir/format.log" 2>&1 \
      || { cat "$dir/format.log" >&2; fail "could not format node $n's log directory $dir/data"; }
    say "formatted node $n ($dir/data)"
  fi
}

launch() {
  local n=$1 dir pid
  dir=$(dir_of "$n")
  nohup "$JAVA" -Xms128m -Xmx"$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -Dlog4j2.configurationFile="$HERE/log4j2.properties" -cp "$LIBS/*" \
    kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" > "$(pidfile_of "$n")"
}

# stop_node N GRACE_S: TERM, KILL after GRACE_S; the pidfile goes.
stop_node() {
  local n=$1 grace=$2 pid deadline
  if pid=$(node_pid "$n"); then
    kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + grace))
    while node_pid "$n" >/dev/null && (( SECONDS < deadline )); do sleep 0.2; done
    if node_pid "$n" >/dev/null; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
    say "stopped node $n (pid $pid)"
  fi
  rm -f "$(pidfile_of "$n")"
}

start() {
  local wanted=("$@") n pid started=$SECONDS launched=() waiting
  for n in "${wanted[@]}"; do
    if pid=$(node_pid "$n"); then say "node $n already running (pid $pid, 127.0.0.1:$(port_of "$n"))"; continue; fi
    require_free_port "$(port_of "$n")" "Kafka cluster node $n listener"
    require_free_port "$(controller_port_of "$n")" "Kafka cluster node $n controller"
    launched+=("$n")
  done
  [ ${#launched[@]} -gt 0 ] || return 0
  MESHGATE_KAFKA_NODES=1 KAFKA_LIBS="$LIBS" bash "$HERE/kafka.sh" fetch >/dev/null
  mkdir -p "$STATE"
  for n in "${launched[@]}"; do configure "$n"; done
  for n in "${launched[@]}"; do launch "$n"; done
  # Together: a node alone has no controller quorum (two of three voters) and never answers.
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120}))
  waiting=("${launched[@]}")
  while [ ${#waiting[@]} -gt 0 ]; do
    local still=()
    for n in "${waiting[@]}"; do
      if ! node_pid "$n" >/dev/null; then
        tail -n 20 "$(dir_of "$n")/kafka.log" >&2 || true
        for v in "${launched[@]}"; do stop_node "$v" 10 >/dev/null; done
        fail "node $n exited during start-up (log: $(dir_of "$n")/kafka.log); stopped the nodes this start launched"
      fi
      ready_node "$n" >/dev/null 2>&1 || still+=("$n")
    done
    waiting=("${still[@]+"${still[@]}"}")
    [ ${#waiting[@]} -gt 0 ] || break
    if (( SECONDS >= deadline )); then
      for v in "${launched[@]}"; do stop_node "$v" 10 >/dev/null; done
      fail "node(s) ${waiting[*]} not ready after ${KAFKA_START_TIMEOUT:-120}s (logs: $STATE/node*/kafka.log); stopped the nodes this start launched"
    fi
    sleep 0.5
  done
  for n in "${launched[@]}"; do
    say "started node $n (pid $(node_pid "$n"), 127.0.0.1:$(port_of "$n"))"
  done
  say "bootstrap $(bootstrap) in $((SECONDS - started))s"
}

# All nodes at once (a node stopping alone waits for the controller to move its leaderships;
# together, none is left to take them, so each stops without waiting).
stop() {
  local n pids=()
  for n in "$@"; do ( stop_node "$n" 30 ) & pids+=($!); done
  for n in "${pids[@]}"; do wait "$n" || true; done
  for n in "$@"; do rm -f "$(pidfile_of "$n")"; done
  [ $# -gt 1 ] && say "stopped" || true
}

status() {
  local n pid up=0
  for n in "${NODES[@]}"; do
    if pid=$(node_pid "$n") && ready_node "$n" >/dev/null 2>&1; then
      say "node $n running (pid $pid, 127.0.0.1:$(port_of "$n"))"; up=$((up + 1))
    else
      say "node $n not running"
    fi
  done
  [ "$up" -eq ${#NODES[@]} ] && return 0
  return 3
}

action=${1:-}
if [ $# -ge 2 ]; then check_node "$2"; targets=("$2"); else targets=("${NODES[@]}"); fi
case "$action" in
  start) start "${targets[@]}" ;;
  stop) stop "${targets[@]}" ;;
  status) status ;;
  bootstrap) bootstrap ;;
  *) echo "usage: $0 start [NODE] | stop [NODE] | status | bootstrap" >&2; exit 2 ;;
esac
