#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) for development and CI.
# No Docker: the broker runs straight from the Maven jars pinned in deploy/kafka/pom.xml.
#
# Usage: deploy/kafka/kafka.sh {fetch|up|down|status|reset|tool CLASS [ARGS...]}
#
#   fetch   copy the jars listed in pom.xml into the cache (once per pom.xml content)
#   up      fetch if needed, format storage on first run, start the broker in the
#           background and wait until it answers Kafka API requests
#   down    controlled shutdown (SIGTERM, wait, SIGKILL only as a last resort)
#   status  exit 0 if the broker is running and answering, non-zero otherwise
#   reset   down, then delete the data dir (topics, messages, logs)
#   tool    run a Kafka CLI class with the cached jars, e.g.
#             kafka.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
#
# Environment (defaults in brackets):
#   KAFKA_CACHE_DIR        jar cache                          [$REPO/.cache/kafka]
#   KAFKA_DATA_DIR         config, storage, pid file and logs [$REPO/.data/kafka]
#   KAFKA_PORT             client listener on 127.0.0.1       [9092]
#   KAFKA_CONTROLLER_PORT  KRaft controller listener          [9093]
#   KAFKA_HEAP_OPTS        broker heap                        [-Xms256m -Xmx768m]
#   KAFKA_OPTS             extra JVM options for the broker   []
#   KAFKA_START_TIMEOUT    seconds `up` waits for readiness   [90]
#   KAFKA_STOP_TIMEOUT     seconds `down` waits before SIGKILL [60]
#   JAVA_HOME              if set, $JAVA_HOME/bin/java is used, else java from PATH
#
# Works with bash 3.2 (macOS) and Linux; needs java 17+, and mvn for the first fetch.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"

POM="$SCRIPT_DIR/pom.xml"
LOG4J_CONFIG="$SCRIPT_DIR/log4j2.yaml"

CACHE_DIR="${KAFKA_CACHE_DIR:-$REPO/.cache/kafka}"
LIB_DIR="$CACHE_DIR/lib"
STAMP="$CACHE_DIR/pom.sha256"   # sha256 of the pom.xml whose jars are in $LIB_DIR

DATA_DIR="${KAFKA_DATA_DIR:-$REPO/.data/kafka}"
PORT="${KAFKA_PORT:-9092}"
CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
HOST="127.0.0.1"
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-60}"

CONFIG="$DATA_DIR/server.properties"
STORAGE_DIR="$DATA_DIR/storage"        # log.dirs: KRaft metadata log + topic partitions
LOGS_DIR="$DATA_DIR/logs"              # server.log (log4j2) and console.log (JVM stdout/stderr)
PID_FILE="$DATA_DIR/kafka.pid"
CONSOLE_LOG="$LOGS_DIR/console.log"
SERVER_LOG="$LOGS_DIR/server.log"

if [[ -n "${JAVA_HOME:-}" && -x "${JAVA_HOME}/bin/java" ]]; then
  JAVA="$JAVA_HOME/bin/java"
else
  JAVA="java"
fi

# Options for short-lived CLI JVMs (probe, storage tool, topic tool...): C1 only starts faster.
TOOL_JVM_OPTS=(-Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$LOG4J_CONFIG")

log() { echo "kafka.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

now() { date +%s; }

sha256_of() {
  if command -v sha256sum >/dev/null 2>&1; then
    sha256sum "$1" | cut -d' ' -f1
  else
    shasum -a 256 "$1" | cut -d' ' -f1 # macOS
  fi
}

# --------------------------------------------------------------------------- jars

cmd_fetch() {
  local want have=""
  want="$(sha256_of "$POM")"
  [[ -f "$STAMP" ]] && have="$(cat "$STAMP")"
  if [[ "$want" == "$have" && -d "$LIB_DIR" ]]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn not found on PATH (needed once to fetch the Kafka jars)"
  log "fetching Kafka jars into $LIB_DIR"
  mkdir -p "$CACHE_DIR"
  # Copy into a temp dir and swap it in, so an interrupted fetch never leaves a half-filled
  # lib dir that a stale stamp would vouch for.
  local tmp="$CACHE_DIR/lib.tmp.$$" out="$CACHE_DIR/mvn.out"
  rm -rf "$tmp"
  if ! mvn -B -q -f "$POM" dependency:copy-dependencies \
        -DoutputDirectory="$tmp" -DincludeScope=runtime >"$out" 2>&1; then
    cat "$out" >&2
    rm -rf "$tmp"
    die "mvn dependency:copy-dependencies failed"
  fi
  rm -rf "$LIB_DIR" "$out"
  mv "$tmp" "$LIB_DIR"
  echo "$want" >"$STAMP"
  log "fetched $(ls "$LIB_DIR" | wc -l | tr -d ' ') jars"
}

classpath() {
  # The JVM expands "dir/*" to every jar in dir (the quotes keep bash from globbing it).
  echo "$LIB_DIR/*"
}

# Run a Kafka CLI class with the cached jars; logs go to stderr at WARN.
run_tool() {
  local main="$1"; shift
  "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$(classpath)" "$main" "$@"
}

# ------------------------------------------------------------------------ process

read_pid() {
  [[ -f "$PID_FILE" ]] && cat "$PID_FILE" || true
}

# True if the pid file names a live (non-zombie) Kafka JVM. Checking the command line
# guards against a stale pid file whose number was reused by an unrelated process.
is_running() {
  local pid stat args
  pid="$(read_pid)"
  [[ -n "$pid" ]] || return 1
  stat="$(ps -o stat= -p "$pid" 2>/dev/null)" || return 1
  [[ "$stat" != Z* ]] || return 1
  args="$(ps -o args= -p "$pid" 2>/dev/null)" || return 1
  [[ "$args" == *kafka.Kafka* ]]
}

# True if something accepts TCP connections on $HOST:$1 (bash's /dev/tcp, no nc needed).
port_open() {
  (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null
}

# The real readiness check: a full Kafka client round trip. BrokerApiVersionsCommand
# bootstraps, fetches cluster metadata and sends ApiVersions to every broker it lists,
# which only succeeds once the broker has joined the KRaft quorum, caught up with the
# metadata log and opened its client listener. (In Kafka 4.x this class lives in
# kafka-tools as org.apache.kafka.tools.BrokerApiVersionsCommand; kafka.admin.* is gone.)
probe() {
  local port="$1" cfg="$DATA_DIR/probe.properties"
  # Short client timeouts so one probe never hangs for the default 30+ s.
  if [[ ! -f "$cfg" ]]; then
    printf '%s\n' 'request.timeout.ms=5000' 'default.api.timeout.ms=8000' \
      'socket.connection.setup.timeout.ms=2000' >"$cfg"
  fi
  run_tool org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "$HOST:$port" --command-config "$cfg" >/dev/null 2>&1
}

# The client port of the broker that owns this data dir, from the config it was started
# with: `status` must probe that broker even if KAFKA_PORT now says something else.
running_port() {
  sed -n "s|^advertised.listeners=PLAINTEXT://$HOST:\([0-9]*\)\$|\1|p" "$CONFIG" 2>/dev/null || true
}

show_log_tail() {
  local f
  for f in "$CONSOLE_LOG" "$SERVER_LOG"; do
    if [[ -s "$f" ]]; then
      echo "----- last lines of $f -----" >&2
      tail -n 40 "$f" >&2
    fi
  done
}

# ------------------------------------------------------------------------- config

write_config() {
  # Rewritten on every `up`, so a changed KAFKA_PORT / KAFKA_CONTROLLER_PORT applies to an
  # existing data dir too. The quorum is static (controller.quorum.voters), so the
  # controller address is config, not something baked into the formatted metadata log.
  cat >"$CONFIG" <<EOF
# Generated by deploy/kafka/kafka.sh on every \`up\`; edits here are overwritten.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT

log.dirs=$STORAGE_DIR

# The project creates its topics explicitly.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1

# Single node: internal topics cannot have more than one replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

# Do not wait 3 s for more members before the first consumer-group rebalance.
group.initial.rebalance.delay.ms=0
EOF
}

is_formatted() {
  [[ -f "$STORAGE_DIR/meta.properties" ]]
}

format_storage() {
  local cluster_id
  # A static quorum is formatted with a cluster id only (--standalone is for the dynamic
  # controller.quorum.bootstrap.servers setup). kafka.tools.StorageTool is still the Scala
  # class in kafka_2.13 4.1.1.
  cluster_id="$(run_tool kafka.tools.StorageTool random-uuid)"
  log "formatting $STORAGE_DIR (cluster id $cluster_id)"
  run_tool kafka.tools.StorageTool format --config "$CONFIG" --cluster-id "$cluster_id" \
    --ignore-formatted >/dev/null
}

# ----------------------------------------------------------------------- commands

cmd_up() {
  if is_running; then
    local rport
    rport="$(running_port)"
    echo "kafka already running (pid $(read_pid)) on $HOST:$rport"
    if [[ "$rport" != "$PORT" ]]; then
      log "warning: it listens on $rport, not KAFKA_PORT=$PORT; run 'down' first to change the port"
    fi
    return 0
  fi
  rm -f "$PID_FILE"
  cmd_fetch
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (set JAVA_HOME or put java 17+ on PATH)"

  # Someone else (another broker, another data dir) holding our ports would make the broker
  # fail after a slow start, or worse, make the readiness probe talk to the wrong broker.
  local p
  for p in "$PORT" "$CONTROLLER_PORT"; do
    if port_open "$p"; then
      die "port $p on $HOST is already in use by another process (set KAFKA_PORT / KAFKA_CONTROLLER_PORT)"
    fi
  done

  mkdir -p "$DATA_DIR" "$LOGS_DIR"
  write_config
  is_formatted || format_storage

  # Roughly the JVM flags of Kafka's bin/kafka-run-class.sh, minus JMX and GC logging.
  local -a jvm_opts
  # shellcheck disable=SC2206 # KAFKA_HEAP_OPTS / KAFKA_OPTS are meant to be word-split
  jvm_opts=($HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
    -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$LOG4J_CONFIG" "-Dkafka.logs.dir=$LOGS_DIR"
    -Dkafka.log.appender=FILE -Dkafka.log.lifecycle=INFO
    ${KAFKA_OPTS:-})

  # Keep one previous console log; a fresh one means a failed start shows its own errors.
  [[ -f "$CONSOLE_LOG" ]] && mv -f "$CONSOLE_LOG" "$CONSOLE_LOG.prev"

  local start pid
  start="$(now)"
  # nohup + </dev/null: the broker outlives this script and the terminal or CI step shell.
  nohup "$JAVA" "${jvm_opts[@]}" -cp "$(classpath)" kafka.Kafka "$CONFIG" \
    </dev/null >"$CONSOLE_LOG" 2>&1 &
  pid=$!
  echo "$pid" >"$PID_FILE"

  # Wait for readiness: cheap TCP polls until the client listener opens (it only opens
  # near the end of broker startup), then the real API probe, until the deadline.
  local deadline=$(( start + START_TIMEOUT ))
  while :; do
    if ! is_running; then
      wait "$pid" 2>/dev/null || true
      log "broker process exited during startup"
      show_log_tail
      rm -f "$PID_FILE"
      exit 1
    fi
    if port_open "$PORT" && probe "$PORT"; then
      break
    fi
    if (( $(now) >= deadline )); then
      log "broker did not answer on $HOST:$PORT within ${START_TIMEOUT}s"
      show_log_tail
      stop_pid "$pid"
      exit 1
    fi
    sleep 0.3
  done
  echo "kafka up on $HOST:$PORT (pid $pid, data $DATA_DIR, ready in $(( $(now) - start ))s)"
}

# SIGTERM triggers Kafka's shutdown hook (controlled shutdown, clean log close); SIGKILL
# only if it does not finish in time (the next start then has to recover the logs).
stop_pid() {
  local pid="$1" deadline
  deadline=$(( $(now) + STOP_TIMEOUT ))
  kill -TERM "$pid" 2>/dev/null || true
  while is_running; do
    if (( $(now) >= deadline )); then
      log "pid $pid still alive after ${STOP_TIMEOUT}s, sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
      break
    fi
    sleep 0.2
  done
  # Reap it if it is our own child (after a failed `up`); harmless otherwise.
  wait "$pid" 2>/dev/null || true
  rm -f "$PID_FILE"
}

cmd_down() {
  if ! is_running; then
    rm -f "$PID_FILE"
    echo "kafka not running"
    return 0
  fi
  local pid start
  pid="$(read_pid)"
  start="$(now)"
  stop_pid "$pid"
  echo "kafka stopped (pid $pid, in $(( $(now) - start ))s)"
}

cmd_status() {
  if ! is_running; then
    echo "kafka not running"
    return 1
  fi
  local rport
  rport="$(running_port)"
  if [[ -n "$rport" ]] && probe "$rport"; then
    echo "kafka running (pid $(read_pid)) and answering on $HOST:$rport"
    return 0
  fi
  echo "kafka running (pid $(read_pid)) but not answering on $HOST:${rport:-?}"
  return 2
}

cmd_reset() {
  cmd_down
  # Guard against deleting something unexpected if KAFKA_DATA_DIR is set to "/" or "".
  [[ -n "$DATA_DIR" && "$DATA_DIR" != "/" ]] || die "refusing to delete data dir '$DATA_DIR'"
  rm -rf "$DATA_DIR"
  echo "kafka data deleted ($DATA_DIR)"
}

cmd_tool() {
  [[ $# -ge 1 ]] || die "usage: kafka.sh tool CLASS [ARGS...]"
  cmd_fetch
  run_tool "$@"
}

usage() {
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

case "${1:-}" in
  fetch)  cmd_fetch ;;
  up)     cmd_up ;;
  down)   cmd_down ;;
  status) cmd_status ;;
  reset)  cmd_reset ;;
  tool)   shift; cmd_tool "$@" ;;
  *)      usage ;;
esac
