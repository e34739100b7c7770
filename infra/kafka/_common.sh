# shellcheck shell=bash disable=SC2034  # variables are used by the scripts that source this
# Shared settings/helpers for infra/kafka/{start,stop,wait-ready,status}. Sourced, not run.
#
# Environment overrides:
#   KAFKA_PORT              client listener on 127.0.0.1     (default 19092)
#   KAFKA_CONTROLLER_PORT   KRaft controller listener        (default 19093)
#   KAFKA_VAR_DIR           state root                       (default <repo>/var/kafka)
#   KAFKA_DATA_DIR          log.dirs                         (default $KAFKA_VAR_DIR/data)
#   KAFKA_M2_REPO           Maven local repo for the fetch   (default $KAFKA_VAR_DIR/m2)
#   KAFKA_TOPICS            topics to ensure, name:partitions[,...]
#                           (default careplan.plan-events.v1:6,careplan.plan-events.v1.dlq:1)
#   KAFKA_READY_TIMEOUT     seconds wait-ready waits         (default 90)
#   KAFKA_STOP_TIMEOUT      seconds stop waits after SIGTERM (default 60)
#   KAFKA_HEAP_OPTS         broker heap                      (default -Xms256m -Xmx512m)
#   JAVA                    java binary                      (default: java on PATH)

KAFKA_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$KAFKA_SCRIPT_DIR/../.." && pwd)"

KAFKA_HOST=127.0.0.1
KAFKA_PORT="${KAFKA_PORT:-19092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-19093}"
KAFKA_BOOTSTRAP="$KAFKA_HOST:$KAFKA_PORT"
KAFKA_VAR_DIR="${KAFKA_VAR_DIR:-$REPO_ROOT/var/kafka}"
KAFKA_LIBS="$KAFKA_VAR_DIR/libs"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-$KAFKA_VAR_DIR/data}"
KAFKA_LOG_DIR="$KAFKA_VAR_DIR/logs"
KAFKA_PID_FILE="$KAFKA_VAR_DIR/kafka.pid"
KAFKA_CLUSTER_ID_FILE="$KAFKA_VAR_DIR/cluster.id"
KAFKA_PROPS="$KAFKA_VAR_DIR/server.properties"
KAFKA_M2_REPO="${KAFKA_M2_REPO:-$KAFKA_VAR_DIR/m2}"
KAFKA_POM="$KAFKA_SCRIPT_DIR/pom.xml"
KAFKA_LIBS_STAMP="$KAFKA_LIBS/.fetched-from-pom.sha256"
KAFKA_TOPICS="${KAFKA_TOPICS:-careplan.plan-events.v1:6,careplan.plan-events.v1.dlq:1}"
KAFKA_READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-60}"
JAVA="${JAVA:-java}"

kafka_die() { echo "kafka: ERROR: $*" >&2; exit 1; }
kafka_log() { echo "kafka: $*" >&2; }

kafka_pom_hash() { sha256sum "$KAFKA_POM" | cut -c1-64; }

# libs/ is complete when it was filled from the current pom.xml (stamp written last).
kafka_libs_ok() {
  [[ -f "$KAFKA_LIBS_STAMP" ]] && [[ "$(cat "$KAFKA_LIBS_STAMP")" == "$(kafka_pom_hash)" ]] \
    && compgen -G "$KAFKA_LIBS/kafka_2.13-*.jar" >/dev/null \
    && compgen -G "$KAFKA_LIBS/kafka-tools-*.jar" >/dev/null
}

# Is $1 the pid of *this* repo's broker? (guards against stale pid files / pid reuse)
kafka_pid_is_ours() {
  local pid=$1 cmd
  [[ "$pid" =~ ^[0-9]+$ ]] && [[ -r "/proc/$pid/cmdline" ]] || return 1
  cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
  [[ "$cmd" == *" kafka.Kafka $KAFKA_PROPS"* ]]
}

# Print the broker pid if it is running, else return 1. Falls back to scanning /proc for a
# JVM whose command line names this repo's generated server.properties (pid file lost).
kafka_running_pid() {
  local pid=""
  [[ -f "$KAFKA_PID_FILE" ]] && pid="$(tr -dc '0-9' <"$KAFKA_PID_FILE")"
  if [[ -n "$pid" ]] && kafka_pid_is_ours "$pid"; then echo "$pid"; return 0; fi
  local d
  for d in /proc/[0-9]*; do
    pid="${d#/proc/}"
    if kafka_pid_is_ours "$pid"; then echo "$pid"; return 0; fi
  done
  return 1
}

kafka_port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$KAFKA_HOST/$1" 2>/dev/null; }

# Run one of Kafka's CLI classes from libs/ (fast-starting JVM, logs to stderr only).
# usage: kafka_tool <timeout-seconds> <main-class> [args...]
kafka_tool() {
  local t=$1; shift
  timeout --kill-after=5 "$t" "$JAVA" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto \
    -Djava.awt.headless=true -Dlog4j2.configurationFile="file:$KAFKA_SCRIPT_DIR/tools-log4j2.properties" \
    -cp "$KAFKA_LIBS/*" "$@"
}

kafka_tail_logs() {
  local out="$KAFKA_LOG_DIR/kafka.out" log="$KAFKA_LOG_DIR/server.log"
  if [[ -s "$out" ]]; then   # JVM stdout/stderr of the latest launch only
    echo "---- $out (latest launch) ----" >&2
    awk '/^=== .* starting broker ===$/ { n = 0; delete l } { l[n++] = $0 } END { s = (n > 40 ? n - 40 : 0); for (i = s; i < n; i++) print l[i] }' "$out" >&2 || true
  fi
  if [[ -s "$log" ]]; then
    echo "---- last ${1:-25} lines of $log ----" >&2
    tail -n "${1:-25}" "$log" >&2 || true
  fi
}

# SIGTERM (controlled shutdown), wait up to KAFKA_STOP_TIMEOUT, SIGKILL as last resort.
kafka_stop_broker() {
  local pid
  if ! pid="$(kafka_running_pid)"; then
    rm -f "$KAFKA_PID_FILE"
    kafka_log "not running"
    return 0
  fi
  kafka_log "stopping broker pid $pid (SIGTERM, up to ${KAFKA_STOP_TIMEOUT}s) ..."
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  while kafka_pid_is_ours "$pid"; do
    if (( SECONDS >= deadline )); then
      kafka_log "still running after ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      local kdeadline=$((SECONDS + 10))
      while kafka_pid_is_ours "$pid"; do
        (( SECONDS < kdeadline )) || kafka_die "pid $pid survived SIGKILL"
        sleep 0.2
      done
      break
    fi
    sleep 0.2
  done
  rm -f "$KAFKA_PID_FILE"
  kafka_log "stopped"
}
