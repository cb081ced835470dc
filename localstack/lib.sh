# Shared helpers for the local-cloud scripts (sourced, not run).
# Every failure prints one line "<name>: error: <what failed>; <what to do>" and exits non-zero.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL_DIR=${MESHGATE_LOCAL_DIR:-$ROOT/.local}

fail() { echo "$NAME: error: $*" >&2; exit 1; }
say() { echo "$NAME: $*"; }

# alive PID: the process exists and is not a zombie (Z) or dead (X). `kill -0` alone counts a
# killed process as alive until its parent (here init, which reaps lazily) collects it, so a
# `start` a second after `kill -9` took the corpse for a running broker that does not answer.
alive() {
  local pid=$1 stat state
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 1
  state=${stat##*) }   # the field after "(comm)", which may itself hold spaces or parentheses
  state=${state%% *}
  [ "$state" != Z ] && [ "$state" != X ]
}

# wait_exited PID: a process killed a moment ago is a zombie at once, but its other threads
# still hold its ports for a moment; wait (up to 10 s) until only the zombie is left.
wait_exited() {
  local pid=$1 threads deadline=$((SECONDS + 10))
  [ -n "$pid" ] || return 0
  while (( SECONDS < deadline )); do
    threads=$(sed -n 's/^Threads:[[:space:]]*//p' "/proc/$pid/status" 2>/dev/null) || return 0
    { [ -z "$threads" ] || [ "$threads" -le 1 ]; } && return 0
    alive "$pid" && return 0
    sleep 0.1
  done
}

# pid from a pidfile if that process is alive, else nothing.
live_pid() {
  local pidfile=$1 pid
  [ -f "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  alive "$pid" || return 1
  echo "$pid"
}

# spawn CMD...: for `spawn CMD ... >log 2>&1 </dev/null &` (then pid=$!): CMD runs like
# `nohup CMD &` but without the descriptors this script inherited above 2. Otherwise
# `flock LOCK sh -c 'kafka.sh start'` left LOCK held by the broker for its whole life (and
# every other `flock LOCK` waiting).
spawn() {
  local fd
  for fd in $(ls "/proc/$BASHPID/fd"); do
    if (( fd > 2 )); then eval "exec $fd>&-" 2>/dev/null || true; fi
  done
  exec nohup "$@"
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

require_free_port() {
  local port=$1 what=$2
  if port_in_use "$port"; then
    fail "port $port ($what) is already in use by another process; stop it or choose another port"
  fi
}

# wait_ready PID SECONDS LOGFILE CHECK...: poll CHECK until it succeeds, the process dies, or
# time runs out. On failure the process is stopped, so nothing is left half-running.
wait_ready() {
  local pid=$1 seconds=$2 logfile=$3; shift 3
  local deadline=$((SECONDS + seconds))
  while (( SECONDS < deadline )); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if ! alive "$pid"; then
      tail -n 20 "$logfile" >&2 || true
      fail "the process exited during start-up (log: $logfile)"
    fi
    sleep 0.5
  done
  stop_pid "$pid" 10
  tail -n 20 "$logfile" >&2 || true
  fail "not ready after ${seconds}s; stopped it (log: $logfile)"
}

# stop_pid PID SECONDS: TERM, wait, then KILL.
stop_pid() {
  local pid=$1 seconds=$2
  kill -TERM "$pid" 2>/dev/null || return 0
  local deadline=$((SECONDS + seconds))
  while alive "$pid" && (( SECONDS < deadline )); do sleep 0.2; done
  if alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; sleep 0.2; fi
}

# The rest expects PIDFILE, ADDRESS (for messages) and a `ready` function from the script.

# already_running: 0 (and says so) when the pidfile's process is alive and answering.
already_running() {
  local pid
  if ! pid=$(live_pid "$PIDFILE"); then
    wait_exited "$(cat "$PIDFILE" 2>/dev/null)"
    return 1
  fi
  # A process killed a moment ago may still be exiting: give it a moment to die (then it is
  # not running) or to answer, before calling it stuck.
  local deadline=$((SECONDS + 5))
  until ready >/dev/null 2>&1; do
    alive "$pid" || { wait_exited "$pid"; return 1; }
    (( SECONDS < deadline )) \
      || fail "pid $pid is running but does not answer on $ADDRESS; run '$0 stop' and start again"
    sleep 0.2
  done
  say "already running (pid $pid, $ADDRESS)"
}

# stop_service GRACE_S: TERM the process (and the children it started), KILL after GRACE_S.
stop_service() {
  local pid children
  if pid=$(live_pid "$PIDFILE"); then
    children=$(pgrep -P "$pid" || true)
    stop_pid "$pid" "$1"
    for child in $children; do stop_pid "$child" 5; done
    say "stopped (pid $pid)"
  else
    say "not running"
  fi
  rm -f "$PIDFILE"
}

status_service() {
  local pid
  if pid=$(live_pid "$PIDFILE") && ready >/dev/null 2>&1; then
    say "running (pid $pid, $ADDRESS)"; return 0
  fi
  say "not running"; return 3
}
