#!/usr/bin/env bash
# The .env docker compose reads: copied from .env.example when missing, and every required secret
# left empty there filled with a new random value. Values already set are kept, so running it
# again changes nothing. Secrets are never printed.
#
# Usage: deploy/compose-env.sh [ENV_FILE]   (default: .env beside compose.yaml)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ENV_FILE="${1:-$REPO/.env}"
EXAMPLE="$REPO/.env.example"

log() { echo "compose-env: $*" >&2; }

random() { # urlsafe base64 of N random bytes, no padding
  head -c "$1" /dev/urandom | base64 | tr -d '\n=' | tr '+/' '-_'
}

fernet() { # urlsafe base64 of 32 random bytes, padded: what MLflow's Fernet expects
  head -c 32 /dev/urandom | base64 | tr -d '\n' | tr '+/' '-_'
}

value_for() {
  case "$1" in
    REVIEW_NOTIFIER_TOKEN_KEY | MLFLOW_BRIDGE_WEBHOOK_SECRET) random 32 ;;
    MINIO_ROOT_USER) echo "signoff-minio" ;;
    MINIO_ROOT_PASSWORD) random 24 ;;
    MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY) fernet ;;
    *) return 1 ;;
  esac
}

if [[ ! -f "$ENV_FILE" ]]; then
  cp "$EXAMPLE" "$ENV_FILE"
  log "wrote $ENV_FILE from .env.example"
fi
chmod 600 "$ENV_FILE"

filled=()
for name in REVIEW_NOTIFIER_TOKEN_KEY MINIO_ROOT_USER MINIO_ROOT_PASSWORD MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY \
            MLFLOW_BRIDGE_WEBHOOK_SECRET; do
  current="$(grep -E "^${name}=" "$ENV_FILE" | tail -n 1 | cut -d= -f2- || true)"
  [[ -n "$current" ]] && continue
  new="$(value_for "$name")"
  tmp="$ENV_FILE.tmp.$$"
  if grep -qE "^${name}=" "$ENV_FILE"; then
    awk -v n="$name" -v v="$new" 'BEGIN { FS = OFS = "=" } $1 == n && !done { print n "=" v; done = 1; next } { print }' \
      "$ENV_FILE" >"$tmp"
  else
    { cat "$ENV_FILE"; echo "$name=$new"; } >"$tmp"
  fi
  chmod 600 "$tmp" && mv "$tmp" "$ENV_FILE"
  filled+=("$name")
done
if ((${#filled[@]})); then
  log "generated ${filled[*]} in $ENV_FILE"
else
  log "$ENV_FILE already has every required value"
fi
