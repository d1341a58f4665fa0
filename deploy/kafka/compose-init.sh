#!/usr/bin/env bash
# The secrets compose.yaml mounts, made once (running it again changes nothing):
#   <dir>/credentials/<principal>  a random password for each principal (and the broker's and the
#                                  controller's own), read by the broker at its first start
#                                  (SCRAM-SHA-512) and by each container as its Docker secret
#   <dir>/certs/ca.pem             the CA the clients check the broker against (KAFKA_SSL_CAFILE)
#   <dir>/certs/broker.pem         the broker's key and certificate (SANs kafka, localhost, 127.0.0.1)
#
# Usage: deploy/kafka/compose-init.sh [DIR]    (default .data/compose; `make compose-secrets`)
#
# Docker bind-mounts a file secret with its host mode and the containers run as their own users,
# so the files are readable (644) and the folders are not (700): another user of this machine
# cannot reach them, the containers can.
set -euo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"
DIR="${1:-$REPO/.data/compose}"
PRINCIPALS="broker controller admin validator policy review-notifier deployer pipeline operator console"

mkdir -p "$DIR/credentials"
chmod 700 "$DIR" "$DIR/credentials"
for name in $PRINCIPALS; do
  file="$DIR/credentials/$name"
  if [[ ! -s "$file" ]]; then
    od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$file"
  fi
  chmod 644 "$file"
done
KAFKA_CERTS_DIR="$DIR/certs" bash "$SCRIPT_DIR/kafka.sh" certs >/dev/null
chmod 700 "$DIR/certs"
chmod 644 "$DIR/certs/broker.pem" "$DIR/certs/ca.pem"
echo "compose secrets in $DIR: passwords in credentials/, the CA in certs/ca.pem"
echo "from the host: KAFKA_SECURITY_PROTOCOL=SASL_SSL KAFKA_SSL_CAFILE=$DIR/certs/ca.pem" \
     "KAFKA_SASL_USERNAME=pipeline KAFKA_SASL_PASSWORD_FILE=$DIR/credentials/pipeline signoff ..."
