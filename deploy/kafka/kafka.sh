#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, combined broker+controller) for development and CI.
# No Docker: the broker runs straight from the Maven jars pinned in deploy/kafka/pom.xml.
#
# Usage: deploy/kafka/kafka.sh {fetch|up|down|status|reset|certs|user-add NAME|user-rotate NAME|tool CLASS [ARGS...]
#                               |cluster-up|cluster-down|cluster-kill N|cluster-start N|cluster-status|cluster-reset}
#
#   fetch     copy the jars listed in pom.xml into the cache (once per pom.xml content)
#   up        fetch if needed, format storage on first run (with a SCRAM credential for every
#             principal), start the broker in the background and wait until it answers Kafka
#             API requests (authenticated as admin)
#   down      controlled shutdown (SIGTERM, wait, SIGKILL only as a last resort)
#   status    exit 0 if the broker is running and answering, non-zero otherwise
#   reset     down, then delete the data dir (topics, messages, logs, credentials)
#   certs     make the CA and the broker certificate (SANs 127.0.0.1, localhost, kafka) in
#             KAFKA_CERTS_DIR if they are not there yet; prints where the CA is
#   user-add  give principal NAME a SCRAM-SHA-512 credential on the running broker (random
#             password, written to <data dir>/credentials/NAME); its ACLs come from
#             `signoff acl apply --pipeline NAME`
#   user-rotate  a new random password for principal NAME on the running broker (the old one
#             stops working for new connections): restart every process running as NAME after it
#   cluster-up / cluster-down / cluster-status / cluster-reset
#             the same for a three-node cluster on loopback (deploy/kafka/cluster.sh)
#   cluster-kill N / cluster-start N
#             SIGKILL node N of the cluster (a crash), or start it again and wait until it answers
#   tool      run a Kafka CLI class with the cached jars, e.g.
#               kafka.sh tool org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 \
#                 --command-config <data dir>/admin.properties --list
#
# Security (on by default): the client listener takes SASL/SCRAM-SHA-512, over TLS when
# KAFKA_TLS=1, and the StandardAuthorizer denies whatever no ACL allows (`signoff acl apply`
# writes them). Passwords are random, one file per principal under <data dir>/credentials
# (mode 600): point a client at one with KAFKA_SASL_USERNAME + KAFKA_SASL_PASSWORD_FILE.
# <data dir>/admin.properties is a Kafka CLI --command-config for the admin.
# KAFKA_PLAINTEXT=1 turns all of it off (no authentication, no authorizer): a developer's
# laptop only, and the script says so each time.
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
#   KAFKA_TLS              1: the client listener is SASL_SSL   [0: SASL_PLAINTEXT]
#   KAFKA_CERTS_DIR        CA and broker certificate (PEM)     [<data dir>/certs]
#   KAFKA_PLAINTEXT        1: no authentication, no ACLs       [0]
#   KAFKA_USERS            principals given a credential at format time (broker is always added)
#                          [admin validator policy review-notifier deployer pipeline operator console]
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
CRED_DIR="$DATA_DIR/credentials"       # one password file per principal, mode 600
CERTS_DIR="${KAFKA_CERTS_DIR:-$DATA_DIR/certs}"
ADMIN_CONFIG="$DATA_DIR/admin.properties"  # Kafka CLI client config of the admin (probe, tools)
USERS="broker ${KAFKA_USERS:-admin validator policy review-notifier deployer pipeline operator console}"
TLS="${KAFKA_TLS:-0}"
PLAINTEXT="${KAFKA_PLAINTEXT:-0}"
if [[ "$PLAINTEXT" == 1 ]]; then
  PROTOCOL=PLAINTEXT
elif [[ "$TLS" == 1 ]]; then
  PROTOCOL=SASL_SSL
else
  PROTOCOL=SASL_PLAINTEXT
fi
CONSOLE_LOG="$LOGS_DIR/console.log"
SERVER_LOG="$LOGS_DIR/server.log"
# The single broker is node 1 and its own quorum; use_node (deploy/kafka/cluster.sh) changes these.
NODE_ID=1
QUORUM_VOTERS="1@$HOST:$CONTROLLER_PORT"
REPLICAS=1  # internal topics' replication factor and the broker's default
MIN_ISR=1

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
  log "fetching Kafka jars into $LIB_DIR with Maven (once; a minute or two on a first run)"
  mkdir -p "$CACHE_DIR"
  # Copy into a temp dir and swap it in, so an interrupted fetch never leaves a half-filled
  # lib dir that a stale stamp would vouch for.
  local tmp="$CACHE_DIR/lib.tmp.$$" out="$CACHE_DIR/mvn.out" started
  started="$(now)"
  rm -rf "$tmp"
  # Maven's whole output goes to $out; a progress line every 20 files downloaded goes to stderr.
  # (pipefail: the pipeline fails when mvn does)
  if ! mvn -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$tmp" -DincludeScope=runtime 2>&1 \
      | tee "$out" | awk '/^Downloaded from/ { n++; if (n % 20 == 0) { print "kafka.sh: " n " files downloaded..." > "/dev/stderr"; fflush("/dev/stderr") } }'; then
    grep -E '^\[(ERROR|WARNING)\]' "$out" >&2 || cat "$out" >&2
    rm -rf "$tmp"
    die "mvn dependency:copy-dependencies failed (its whole output: $out)"
  fi
  rm -rf "$LIB_DIR" "$out"
  mv "$tmp" "$LIB_DIR"
  echo "$want" >"$STAMP"
  log "fetched $(ls "$LIB_DIR" | wc -l | tr -d ' ') jars in $(( $(now) - started ))s"
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
# It authenticates as the admin (admin.properties, written by `up` for the protocol it chose).
probe() {
  local port="$1"
  [[ -f "$ADMIN_CONFIG" ]] || return 1
  run_tool org.apache.kafka.tools.BrokerApiVersionsCommand \
    --bootstrap-server "$HOST:$port" --command-config "$ADMIN_CONFIG" >/dev/null 2>&1
}

# The client port of the broker that owns this data dir, from the config it was started
# with: `status` must probe that broker even if KAFKA_PORT now says something else.
running_port() {
  sed -n "s|^advertised.listeners=CLIENT://$HOST:\([0-9]*\)\$|\1|p" "$CONFIG" 2>/dev/null || true
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

# -------------------------------------------------------------------- credentials

# A random password of 48 hex digits (no character that needs quoting in JAAS or --add-scram).
random_password() {
  od -An -tx1 -N24 /dev/urandom | tr -d ' \n'
}

password_of() {
  local f="$CRED_DIR/$1"
  [[ -s "$f" ]] || die "no credential for '$1' in $CRED_DIR ('kafka.sh reset' to start afresh, or 'kafka.sh user-add $1')"
  cat "$f"
}

# Write a fresh random password for each named principal (mode 600, the folder 700).
new_credentials() {
  local name
  mkdir -p "$CRED_DIR"
  chmod 700 "$CRED_DIR"
  for name in "$@"; do
    (umask 077; random_password >"$CRED_DIR/$name")
  done
}

jaas_scram() {
  echo "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"$1\" password=\"$2\";"
}

# --------------------------------------------------------------------- certificates

# A CA and a broker certificate signed by it, PEM, made with openssl. The broker's keystore
# is one PEM file: its private key (PKCS#8, unencrypted, mode 600) then its certificate.
cmd_certs() {
  local ca_key="$CERTS_DIR/ca.key" ca="$CERTS_DIR/ca.pem" key="$CERTS_DIR/broker.key"
  local csr="$CERTS_DIR/broker.csr" crt="$CERTS_DIR/broker.crt" ext="$CERTS_DIR/broker.ext"
  if [[ -s "$ca" && -s "$CERTS_DIR/broker.pem" ]]; then
    echo "$ca"
    return 0
  fi
  command -v openssl >/dev/null 2>&1 || die "openssl not found on PATH (needed to make the certificates)"
  mkdir -p "$CERTS_DIR"
  log "making a CA and a broker certificate in $CERTS_DIR"
  (umask 077
   openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 825 -subj "/CN=Signoff local CA" \
     -keyout "$ca_key" -out "$ca" 2>/dev/null
   openssl req -newkey rsa:2048 -nodes -sha256 -subj "/CN=kafka" -keyout "$key" -out "$csr" 2>/dev/null
   printf '%s\n' 'basicConstraints=CA:FALSE' 'keyUsage=digitalSignature,keyEncipherment' \
     'extendedKeyUsage=serverAuth,clientAuth' 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kafka' >"$ext"
   openssl x509 -req -in "$csr" -CA "$ca" -CAkey "$ca_key" -CAcreateserial -days 825 -sha256 \
     -extfile "$ext" -out "$crt" 2>/dev/null
   openssl pkcs8 -topk8 -nocrypt -in "$key" -out "$CERTS_DIR/broker.pk8"
   cat "$CERTS_DIR/broker.pk8" "$crt" >"$CERTS_DIR/broker.pem")
  rm -f "$csr" "$ext" "$key" "$CERTS_DIR/broker.pk8" "$CERTS_DIR/ca.srl"
  # The CA certificate is public (every client needs it); the folder stays readable for it.
  chmod 644 "$ca" "$crt"
  chmod 755 "$CERTS_DIR"
  log "CA certificate: $ca (clients: KAFKA_SSL_CAFILE=$ca)"
  echo "$ca"
}

# ------------------------------------------------------------------------- config

write_config() {
  # Rewritten on every `up`, so a changed KAFKA_PORT / KAFKA_CONTROLLER_PORT / KAFKA_TLS applies
  # to an existing data dir too. The quorum is static (controller.quorum.voters), so the
  # controller address is config, not something baked into the formatted metadata log.
  # Mode 600: it holds the broker's and the controller's passwords.
  (umask 077; write_base_config >"$CONFIG")
  if [[ "$PROTOCOL" != PLAINTEXT ]]; then
    (umask 077; write_security_config >>"$CONFIG")
  fi
}

write_base_config() {
  local controller_protocol=SASL_PLAINTEXT
  [[ "$PROTOCOL" != PLAINTEXT ]] || controller_protocol=PLAINTEXT
  cat <<EOF
# Generated by deploy/kafka/kafka.sh on every \`up\`; edits here are overwritten.
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=$QUORUM_VOTERS
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
listeners=CLIENT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=CLIENT://$HOST:$PORT
listener.security.protocol.map=CLIENT:$PROTOCOL,CONTROLLER:$controller_protocol

log.dirs=$STORAGE_DIR

# The project creates its topics explicitly.
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=$REPLICAS
min.insync.replicas=$MIN_ISR

# Internal topics: one replica on a single node; 3 replicas, 2 in sync, on the cluster.
offsets.topic.replication.factor=$REPLICAS
transaction.state.log.replication.factor=$REPLICAS
transaction.state.log.min.isr=$MIN_ISR
share.coordinator.state.topic.replication.factor=$REPLICAS
share.coordinator.state.topic.min.isr=$MIN_ISR

# Do not wait 3 s for more members before the first consumer-group rebalance.
group.initial.rebalance.delay.ms=0
EOF
}

# Authentication and authorization. Three kinds of connection, each authenticated:
# - clients (services, CLI, tests) on CLIENT: SCRAM-SHA-512, one principal each;
# - the broker to itself on CLIENT (inter.broker.listener.name): SCRAM as User:broker;
# - the broker to the controller on CONTROLLER: SASL/PLAIN as User:controller, a static JAAS
#   user (SCRAM credentials live in the metadata log the controller serves, so the controller
#   listener cannot depend on them). It listens on 127.0.0.1 only.
# No listener is unauthenticated, so User:ANONYMOUS is never a super user and no local process
# gets past the authorizer through the controller port. super.users: admin (who runs the
# cluster: ACLs, configs, topics), broker and controller (cluster actions between them).
write_security_config() {
  local controller_pw broker_pw
  controller_pw="$(password_of controller)"
  broker_pw="$(password_of broker)"
  cat <<EOF

# ---- security (deploy/kafka/kafka.sh write_security_config) ----
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
super.users=User:admin;User:broker;User:controller

listener.name.client.sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.client.scram-sha-512.sasl.jaas.config=$(jaas_scram broker "$broker_pw")

listener.name.controller.sasl.enabled.mechanisms=PLAIN
sasl.mechanism.controller.protocol=PLAIN
listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="controller" password="$controller_pw" user_controller="$controller_pw";
EOF
  if [[ "$PROTOCOL" == SASL_SSL ]]; then
    cat <<EOF

listener.name.client.ssl.keystore.type=PEM
listener.name.client.ssl.keystore.location=$CERTS_DIR/broker.pem
listener.name.client.ssl.truststore.type=PEM
listener.name.client.ssl.truststore.location=$CERTS_DIR/ca.pem
ssl.endpoint.identification.algorithm=https
EOF
  fi
}

# The admin's Kafka CLI client config: the probe, `tool`, `user-add`. Mode 600.
write_admin_config() {
  (umask 077
   {
     # Short client timeouts so one probe never hangs for the default 30+ s.
     printf '%s\n' 'request.timeout.ms=5000' 'default.api.timeout.ms=8000' \
       'socket.connection.setup.timeout.ms=2000' "security.protocol=$PROTOCOL"
     if [[ "$PROTOCOL" != PLAINTEXT ]]; then
       printf '%s\n' 'sasl.mechanism=SCRAM-SHA-512' "sasl.jaas.config=$(jaas_scram admin "$(password_of admin)")"
     fi
     if [[ "$PROTOCOL" == SASL_SSL ]]; then
       printf '%s\n' 'ssl.truststore.type=PEM' "ssl.truststore.location=$CERTS_DIR/ca.pem"
     fi
   } >"$ADMIN_CONFIG")
}

is_formatted() {
  [[ -f "$STORAGE_DIR/meta.properties" ]]
}

format_storage() {
  local cluster_id="${1:-}" name
  local -a scram=()
  # A static quorum is formatted with a cluster id only (--standalone is for the dynamic
  # controller.quorum.bootstrap.servers setup). kafka.tools.StorageTool is still the Scala
  # class in kafka_2.13 4.1.1. The cluster's nodes pass the id they share.
  [[ -n "$cluster_id" ]] || cluster_id="$(run_tool kafka.tools.StorageTool random-uuid)"
  # Every principal's SCRAM credential goes into the first metadata records, so the broker
  # authenticates clients from its first second. (The passwords are on this one short-lived
  # local command line: --add-scram takes no file.)
  if [[ "$PROTOCOL" != PLAINTEXT ]]; then
    for name in $USERS; do
      scram+=(--add-scram "SCRAM-SHA-512=[name=$name,password=$(password_of "$name")]")
    done
  fi
  log "formatting $STORAGE_DIR (cluster id $cluster_id; SCRAM-SHA-512 users: ${scram[*]:+$USERS})"
  run_tool kafka.tools.StorageTool format --config "$CONFIG" --cluster-id "$cluster_id" \
    --ignore-formatted ${scram[@]+"${scram[@]}"} >/dev/null
}

# Before `up` writes the config: credentials for a new data dir, or the check that a formatted
# one has them (one formatted by a KAFKA_PLAINTEXT=1 run has none).
prepare_credentials() {
  if ! is_formatted; then
    if [[ "$PROTOCOL" != PLAINTEXT ]]; then
      # shellcheck disable=SC2086 # USERS is a space-separated list
      new_credentials $USERS
    fi
  elif [[ "$PROTOCOL" != PLAINTEXT && ! -s "$CRED_DIR/broker" ]]; then
    die "$DATA_DIR was formatted without credentials (by a KAFKA_PLAINTEXT=1 run): 'kafka.sh reset' first"
  fi
  # The controller listener's password (SASL/PLAIN, static in server.properties), once per data dir.
  if [[ "$PROTOCOL" != PLAINTEXT && ! -s "$CRED_DIR/controller" ]]; then
    new_credentials controller
  fi
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
    local rprotocol
    rprotocol="$(sed -n 's|^listener.security.protocol.map=CLIENT:\([A-Z_]*\),.*|\1|p' "$CONFIG" 2>/dev/null || true)"
    if [[ "$rprotocol" != "$PROTOCOL" ]]; then
      log "warning: it runs $rprotocol, not $PROTOCOL (KAFKA_TLS / KAFKA_PLAINTEXT); run 'down' first to change it"
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

  if [[ "$PROTOCOL" == PLAINTEXT ]]; then
    log "WARNING: KAFKA_PLAINTEXT=1: no authentication, no ACLs; anyone who reaches $HOST:$PORT may" \
        "read, write and delete everything. For a developer's laptop only."
  fi
  [[ "$PROTOCOL" == SASL_SSL ]] && cmd_certs >/dev/null

  mkdir -p "$DATA_DIR" "$LOGS_DIR"
  chmod 700 "$DATA_DIR"
  prepare_credentials
  write_config
  write_admin_config
  is_formatted || format_storage

  local start pid
  start="$(now)"
  launch_broker
  pid="$(read_pid)"

  # Wait for readiness: cheap TCP polls until the client listener opens (it only opens
  # near the end of broker startup), then the real API probe, until the deadline.
  local deadline=$(( start + START_TIMEOUT ))
  while :; do
    # `ps` (is_running) can miss a live process for a moment on a loaded machine, and waiting on a
    # broker that still runs would hang this script for ever: only a process that is gone failed.
    if ! is_running && ! { kill -0 "$pid" 2>/dev/null && [[ "$(ps -o stat= -p "$pid" 2>/dev/null)" != Z* ]]; }; then
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
  echo "kafka up on $HOST:$PORT ($PROTOCOL, pid $pid, data $DATA_DIR, ready in $(( $(now) - start ))s)"
  if [[ "$PROTOCOL" != PLAINTEXT ]]; then
    echo "credentials in $CRED_DIR; admin CLI config $ADMIN_CONFIG"
  fi
  if [[ "$PROTOCOL" == SASL_SSL ]]; then
    echo "CA certificate $CERTS_DIR/ca.pem"
  fi
}

# Start the broker of $CONFIG in the background (pid in $PID_FILE); readiness is the caller's wait.
launch_broker() {
  # Roughly the JVM flags of Kafka's bin/kafka-run-class.sh, minus JMX and GC logging.
  local -a jvm_opts
  # shellcheck disable=SC2206 # KAFKA_HEAP_OPTS / KAFKA_OPTS are meant to be word-split
  jvm_opts=($HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent
    -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$LOG4J_CONFIG" "-Dkafka.logs.dir=$LOGS_DIR"
    -Dkafka.log.appender=FILE -Dkafka.log.lifecycle=INFO
    ${KAFKA_OPTS:-})
  mkdir -p "$LOGS_DIR"
  # Keep one previous console log; a fresh one means a failed start shows its own errors.
  [[ -f "$CONSOLE_LOG" ]] && mv -f "$CONSOLE_LOG" "$CONSOLE_LOG.prev"
  # nohup + </dev/null: the broker outlives this script and the terminal or CI step shell.
  nohup "$JAVA" "${jvm_opts[@]}" -cp "$(classpath)" kafka.Kafka "$CONFIG" \
    </dev/null >"$CONSOLE_LOG" 2>&1 &
  echo "$!" >"$PID_FILE"
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

# A new principal (a team's pipeline, a second operator) on a running secured broker (add), or a
# new password for one (rotate: the old one stops working for new connections at once, so
# restart whatever runs as NAME right after; connections open now stay authenticated).
cmd_user_set() {
  local mode="$1" name="${2:-}" rport old=""
  [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$ ]] || die "usage: kafka.sh user-$mode NAME (letters, digits, . _ -)"
  [[ "$name" != broker && "$name" != controller ]] || die "$name is the broker's own: 'kafka.sh reset' to renew it"
  is_running || die "kafka is not running ('kafka.sh up' first)"
  grep -q '^authorizer.class.name=' "$CONFIG" || die "the broker runs with KAFKA_PLAINTEXT=1: no users"
  if [[ "$mode" == add ]]; then
    [[ ! -s "$CRED_DIR/$name" ]] || die "$name already has a credential ($CRED_DIR/$name): 'user-rotate $name'"
  else
    [[ -s "$CRED_DIR/$name" ]] || die "$name has no credential in $CRED_DIR: 'user-add $name'"
    old="$CRED_DIR/$name.old"
    cp -p "$CRED_DIR/$name" "$old"
  fi
  rport="$(running_port)"
  new_credentials "$name"
  # The password is on this one short-lived local command line (ConfigCommand's
  # --add-config-file does not take SCRAM credentials); it lands in the metadata log salted and
  # hashed, and in $CRED_DIR/$name (mode 600).
  if ! run_tool kafka.admin.ConfigCommand --bootstrap-server "$HOST:$rport" --command-config "$ADMIN_CONFIG" \
      --alter --entity-type users --entity-name "$name" \
      --add-config "SCRAM-SHA-512=[password=$(cat "$CRED_DIR/$name")]" >/dev/null; then
    if [[ -n "$old" ]]; then mv -f "$old" "$CRED_DIR/$name"; else rm -f "$CRED_DIR/$name"; fi
    die "could not $mode $name"
  fi
  if [[ "$name" == admin ]]; then
    write_admin_config_from_running
  fi
  if [[ -n "$old" ]]; then
    rm -f "$old"
    echo "rotated $name (new password in $CRED_DIR/$name): restart every process that runs as $name now"
  else
    echo "added $name (password in $CRED_DIR/$name); its ACLs: signoff acl apply --pipeline $name"
  fi
}

# admin.properties again after the admin's password changed, with the running broker's protocol.
write_admin_config_from_running() {
  PROTOCOL="$(sed -n 's|^listener.security.protocol.map=CLIENT:\([A-Z_]*\),.*|\1|p' "$CONFIG")"
  write_admin_config
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
  certs)  cmd_certs ;;
  user-add) shift; cmd_user_set add "$@" ;;
  user-rotate) shift; cmd_user_set rotate "$@" ;;
  tool)   shift; cmd_tool "$@" ;;
  cluster-up|cluster-down|cluster-kill|cluster-start|cluster-status|cluster-reset)
    # shellcheck source=deploy/kafka/cluster.sh
    source "$SCRIPT_DIR/cluster.sh"
    cmd="${1//-/_}"; shift; "cmd_$cmd" "$@" ;;
  *)      usage ;;
esac
