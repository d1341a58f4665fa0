# shellcheck shell=bash
# A three-node KRaft cluster on loopback from the same jars: kafka.sh's cluster-* commands source
# this file (it uses kafka.sh's functions: config, credentials, launch, probe, stop).
#
# Layout: each node is a combined broker+controller, and the three are the static quorum
# (controller.quorum.voters). Why combined rather than 3 controllers + 3 brokers: three JVMs
# instead of six on a 2-core machine, one config shape (the single broker's, with another node id),
# and killing a node takes one broker and one voter away, which a quorum of three survives (two
# left): the fault the cluster is there to show. A production cluster under load would run its
# controllers apart; nothing in Signoff depends on which.
#
# Secured like the single broker (kafka.sh): SCRAM-SHA-512 users formatted into every node's
# metadata, the StandardAuthorizer, SASL/PLAIN between the nodes' controllers; SASL_SSL with
# KAFKA_TLS=1 (the certificate's SAN 127.0.0.1 serves every node). The same folder layout:
#   <cluster dir>/credentials/NAME    one password per principal (mode 600)
#   <cluster dir>/admin.properties    the admin's Kafka CLI config
#   <cluster dir>/certs               CA and broker certificate (KAFKA_TLS=1)
#   <cluster dir>/cluster.id          the id every node is formatted with
#   <cluster dir>/node-N/             server.properties, storage, logs, kafka.pid of node N
# Internal topics get 3 replicas and min.insync.replicas 2, and so does a topic created without
# its own settings; Signoff's topics take theirs from SIGNOFF_TOPIC_REPLICATION_FACTOR=3 and
# SIGNOFF_TOPIC_MIN_INSYNC_REPLICAS=2 (`signoff topics create` as the admin).
#
# Environment (besides kafka.sh's KAFKA_TLS, KAFKA_PLAINTEXT, KAFKA_USERS, KAFKA_START_TIMEOUT,
# KAFKA_STOP_TIMEOUT, KAFKA_OPTS, KAFKA_CERTS_DIR):
#   KAFKA_CLUSTER_DIR               the cluster's files      [$REPO/.data/kafka-cluster]
#   KAFKA_CLUSTER_PORTS             client ports of nodes 1 2 3      [9292 9293 9294]
#   KAFKA_CLUSTER_CONTROLLER_PORTS  controller ports of nodes 1 2 3  [9392 9393 9394]
#   KAFKA_CLUSTER_HEAP_OPTS         each node's heap         [-Xms128m -Xmx512m]

CLUSTER_SIZE=3
CLUSTER_DIR="${KAFKA_CLUSTER_DIR:-$REPO/.data/kafka-cluster}"
read -r -a CLUSTER_PORTS <<<"${KAFKA_CLUSTER_PORTS:-9292 9293 9294}"
read -r -a CLUSTER_CONTROLLER_PORTS <<<"${KAFKA_CLUSTER_CONTROLLER_PORTS:-9392 9393 9394}"
HEAP_OPTS="${KAFKA_CLUSTER_HEAP_OPTS:--Xms128m -Xmx512m}"  # three of them share the machine

# The files the nodes share, where the single broker keeps its own.
DATA_DIR="$CLUSTER_DIR"
CRED_DIR="$DATA_DIR/credentials"
ADMIN_CONFIG="$DATA_DIR/admin.properties"
CERTS_DIR="${KAFKA_CERTS_DIR:-$DATA_DIR/certs}"
CLUSTER_ID_FILE="$DATA_DIR/cluster.id"
REPLICAS=3
MIN_ISR=2  # a write acknowledged by all of 3 in-sync replicas, or 2 while one node is down

check_cluster_ports() {
  local p all="${CLUSTER_PORTS[*]} ${CLUSTER_CONTROLLER_PORTS[*]}"
  if (( ${#CLUSTER_PORTS[@]} != CLUSTER_SIZE || ${#CLUSTER_CONTROLLER_PORTS[@]} != CLUSTER_SIZE )); then
    die "KAFKA_CLUSTER_PORTS and KAFKA_CLUSTER_CONTROLLER_PORTS: $CLUSTER_SIZE ports each, space-separated (e.g. '9292 9293 9294')"
  fi
  for p in $all; do
    [[ "$p" =~ ^[0-9]{1,5}$ ]] && (( p >= 1 && p <= 65535 )) \
      || die "KAFKA_CLUSTER_PORTS / KAFKA_CLUSTER_CONTROLLER_PORTS: '$p' is not a port (1-65535)"
  done
  [[ "$(tr ' ' '\n' <<<"$all" | sort -u | wc -l | tr -d ' ')" == $(( 2 * CLUSTER_SIZE )) ]] \
    || die "KAFKA_CLUSTER_PORTS / KAFKA_CLUSTER_CONTROLLER_PORTS: six distinct ports, got '$all'"
}

cluster_servers() {
  local p out=""
  for p in "${CLUSTER_PORTS[@]}"; do out="${out:+$out,}$HOST:$p"; done
  echo "$out"
}

QUORUM_VOTERS=""
for (( i = 1; i <= CLUSTER_SIZE; i++ )); do
  QUORUM_VOTERS="${QUORUM_VOTERS:+$QUORUM_VOTERS,}$i@$HOST:${CLUSTER_CONTROLLER_PORTS[i - 1]:-0}"
done

# Point kafka.sh's per-broker globals at node N.
use_node() {
  local n="$1" dir
  [[ "$n" =~ ^[1-9]$ ]] && (( n <= CLUSTER_SIZE )) || die "node: 1 to $CLUSTER_SIZE (got '$n')"
  dir="$CLUSTER_DIR/node-$n"
  NODE_ID="$n"
  PORT="${CLUSTER_PORTS[n - 1]}"
  CONTROLLER_PORT="${CLUSTER_CONTROLLER_PORTS[n - 1]}"
  CONFIG="$dir/server.properties"
  STORAGE_DIR="$dir/storage"
  LOGS_DIR="$dir/logs"
  PID_FILE="$dir/kafka.pid"
  CONSOLE_LOG="$LOGS_DIR/console.log"
  SERVER_LOG="$LOGS_DIR/server.log"
}

# A new cluster: credentials and the cluster id, once; afterwards the check that they are there.
cluster_prepare() {
  mkdir -p "$CLUSTER_DIR"
  chmod 700 "$CLUSTER_DIR"
  if [[ ! -s "$CLUSTER_ID_FILE" ]]; then
    if [[ "$PROTOCOL" != PLAINTEXT ]]; then
      # shellcheck disable=SC2086 # USERS is a space-separated list
      new_credentials $USERS controller
    fi
    run_tool kafka.tools.StorageTool random-uuid >"$CLUSTER_ID_FILE"
  elif [[ "$PROTOCOL" != PLAINTEXT && ! -s "$CRED_DIR/broker" ]]; then
    die "$CLUSTER_DIR was formatted without credentials (by a KAFKA_PLAINTEXT=1 run): 'kafka.sh cluster-reset' first"
  fi
  write_admin_config
}

# Start the current node (use_node) in the background: config rewritten, storage formatted once.
start_node() {
  local p
  for p in "$PORT" "$CONTROLLER_PORT"; do
    if port_open "$p"; then
      log "port $p on $HOST is already in use by another process (set KAFKA_CLUSTER_PORTS / KAFKA_CLUSTER_CONTROLLER_PORTS)"
      return 1
    fi
  done
  mkdir -p "$CLUSTER_DIR/node-$NODE_ID"
  chmod 700 "$CLUSTER_DIR/node-$NODE_ID"
  rm -f "$PID_FILE"
  write_config
  is_formatted || format_storage "$(cat "$CLUSTER_ID_FILE")"
  launch_broker
}

# Wait until the current node answers an authenticated Kafka request, or it died, or `deadline`.
# A node only answers once a quorum (two of three) has formed and it caught up with the metadata.
wait_node() {
  local deadline="$1" pid
  pid="$(read_pid)"
  while :; do
    if ! is_running && ! { kill -0 "$pid" 2>/dev/null && [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" != Z* ]]; }; then
      log "node $NODE_ID exited during startup"
      show_log_tail
      return 1
    fi
    # The cheap TCP poll first: each probe is a JVM.
    if port_open "$PORT" && probe "$PORT"; then
      return 0
    fi
    if (( $(now) >= deadline )); then
      log "node $NODE_ID did not answer on $HOST:$PORT within ${START_TIMEOUT}s"
      show_log_tail
      return 1
    fi
    sleep 0.5
  done
}

# SIGTERM to every running node at once, then wait for them. A node's controlled shutdown needs a
# quorum (two of three) to confirm it: once fewer than two nodes run, the last one would wait for
# ever, so it gets 10 s to close its logs, then SIGKILL (the page cache keeps what it wrote; the next
# start recovers the logs). SIGKILL after KAFKA_STOP_TIMEOUT in any case.
cluster_stop() {
  local n now_s deadline grace=0 killed=0
  local -a alive
  for n in "$@"; do
    use_node "$n"
    if is_running; then kill -TERM "$(read_pid)" 2>/dev/null || true; fi
  done
  deadline=$(( $(now) + STOP_TIMEOUT ))
  while :; do
    alive=()
    for n in "$@"; do
      use_node "$n"
      if is_running; then
        alive+=("$n")
      elif [[ -f "$PID_FILE" ]]; then
        wait "$(read_pid)" 2>/dev/null || true  # reaped if it is this script's own child
        rm -f "$PID_FILE"
        echo "node $n stopped"
      fi
    done
    (( ${#alive[@]} > 0 )) || return 0
    now_s="$(now)"
    if (( grace == 0 && $(running_nodes) < 2 )); then grace=$(( now_s + 10 )); fi
    if (( killed && now_s >= deadline )); then
      die "node(s) ${alive[*]} still running 10s after SIGKILL"
    elif (( !killed && (now_s >= deadline || (grace > 0 && now_s >= grace)) )); then
      for n in "${alive[@]}"; do
        use_node "$n"
        log "node $n (pid $(read_pid)) still stopping: SIGKILL"
        kill -KILL "$(read_pid)" 2>/dev/null || true
      done
      killed=1
      deadline=$(( now_s + 10 ))
    fi
    sleep 0.2
  done
}

running_nodes() {
  local n count=0
  for n in $(all_nodes); do
    use_node "$n"
    if is_running; then count=$(( count + 1 )); fi
  done
  echo "$count"
}

all_nodes() { seq 1 "$CLUSTER_SIZE"; }

cmd_cluster_up() {
  local n start deadline
  local -a started=()
  check_cluster_ports
  cmd_fetch
  command -v "$JAVA" >/dev/null 2>&1 || die "java not found (set JAVA_HOME or put java 17+ on PATH)"
  if [[ "$PROTOCOL" == PLAINTEXT ]]; then
    log "WARNING: KAFKA_PLAINTEXT=1: no authentication, no ACLs on $(cluster_servers). For a developer's laptop only."
  fi
  [[ "$PROTOCOL" == SASL_SSL ]] && cmd_certs >/dev/null
  cluster_prepare
  start="$(now)"
  # All nodes first, then the waits: none answers before a quorum of them runs.
  for n in $(all_nodes); do
    use_node "$n"
    if is_running; then
      echo "node $n already running (pid $(read_pid)) on $HOST:$PORT"
      continue
    fi
    if ! start_node; then
      cluster_stop ${started[@]+"${started[@]}"}
      exit 1
    fi
    started+=("$n")
  done
  deadline=$(( start + START_TIMEOUT ))
  for n in $(all_nodes); do
    use_node "$n"
    if ! wait_node "$deadline"; then
      cluster_stop ${started[@]+"${started[@]}"}
      exit 1
    fi
  done
  echo "kafka cluster up on $(cluster_servers) ($PROTOCOL, $CLUSTER_SIZE nodes, data $CLUSTER_DIR, ready in $(( $(now) - start ))s)"
  if [[ "$PROTOCOL" != PLAINTEXT ]]; then
    echo "credentials in $CRED_DIR; admin CLI config $ADMIN_CONFIG"
  fi
  echo "topics: SIGNOFF_TOPIC_REPLICATION_FACTOR=3 SIGNOFF_TOPIC_MIN_INSYNC_REPLICAS=2 signoff topics create (as the admin)"
}

cmd_cluster_down() {
  # shellcheck disable=SC2046 # the node numbers
  cluster_stop $(all_nodes)
  echo "kafka cluster stopped"
}

# SIGKILL: no controlled shutdown, no clean log close, like a crashed machine.
cmd_cluster_kill() {
  local pid deadline
  use_node "${1:-}"
  is_running || die "node $NODE_ID is not running"
  pid="$(read_pid)"
  kill -KILL "$pid"
  deadline=$(( $(now) + 10 ))
  while is_running && (( $(now) < deadline )); do sleep 0.1; done
  is_running && die "node $NODE_ID (pid $pid) still runs 10s after SIGKILL"
  rm -f "$PID_FILE"
  echo "node $NODE_ID killed (pid $pid)"
}

cmd_cluster_start() {
  local start
  check_cluster_ports
  use_node "${1:-}"
  if is_running; then
    echo "node $NODE_ID already running (pid $(read_pid)) on $HOST:$PORT"
    return 0
  fi
  [[ -s "$CLUSTER_ID_FILE" ]] || die "no cluster in $CLUSTER_DIR: 'kafka.sh cluster-up' first"
  # The protocol the node ran with, so it rejoins its peers whatever KAFKA_TLS says now.
  local ran
  ran="$(sed -n 's|^listener.security.protocol.map=CLIENT:\([A-Z_]*\),.*|\1|p' "$CONFIG" 2>/dev/null || true)"
  [[ -z "$ran" ]] || PROTOCOL="$ran"
  cmd_fetch
  [[ "$PROTOCOL" == SASL_SSL ]] && cmd_certs >/dev/null
  start="$(now)"
  start_node || exit 1
  if ! wait_node $(( start + START_TIMEOUT )); then
    cluster_stop "$NODE_ID"
    exit 1
  fi
  echo "node $NODE_ID up on $HOST:$PORT (pid $(read_pid), ready in $(( $(now) - start ))s)"
}

cmd_cluster_status() {
  local n down=0
  for n in $(all_nodes); do
    use_node "$n"
    if ! is_running; then
      echo "node $n not running"; down=1
    elif probe "$PORT"; then
      echo "node $n running (pid $(read_pid)) and answering on $HOST:$PORT"
    else
      echo "node $n running (pid $(read_pid)) but not answering on $HOST:$PORT"; down=1
    fi
  done
  return "$down"
}

cmd_cluster_reset() {
  cmd_cluster_down
  [[ -n "$CLUSTER_DIR" && "$CLUSTER_DIR" != "/" ]] || die "refusing to delete cluster dir '$CLUSTER_DIR'"
  rm -rf "$CLUSTER_DIR"
  echo "kafka cluster data deleted ($CLUSTER_DIR)"
}
