#!/usr/bin/env bash
# The .env docker compose reads: copied from .env.example when missing, and every required secret
# left empty there filled with a new random value. Values already set are kept, so running it
# again changes nothing. Secrets are never printed.
#
# Beside it, the secret files compose.yaml mounts for the replicas (in .data/compose/ next to the
# .env, mode 644 in a 700 folder so the containers' users can read their bind mounts): PostgreSQL's
# superuser password; for each service, its own role's password (postgres/roles/<service>, read by
# deploy/postgres-init.sh) and the URL it connects with (postgres/urls/<service>: role
# signoff_<service>, its schema as the search path; SIGNOFF_DATABASE_URL_FILE); and the key every
# console replica shares (CONSOLE_SESSION_KEY_FILE). Kept when present, like the .env values.
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

# The replicas' secrets (compose.yaml's `secrets:`), made once.
SECRETS="$(cd "$(dirname "$ENV_FILE")" && pwd)/.data/compose"
mkdir -p "$SECRETS/postgres/roles" "$SECRETS/postgres/urls" "$SECRETS/console"
chmod 700 "$SECRETS" "$SECRETS/postgres" "$SECRETS/postgres/roles" "$SECRETS/postgres/urls" "$SECRETS/console"
made=()
hex() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }  # hex: nothing to escape in a URL or in SQL
if [[ ! -s "$SECRETS/postgres/password" ]]; then
  (umask 022; hex >"$SECRETS/postgres/password"; echo >>"$SECRETS/postgres/password")
  made+=(postgres/password)
fi
# One role per service (compose.yaml's database-password-* and database-url-* secrets).
for service in validator policy review-notifier deployer console; do
  schema="${service//-/_}"
  if [[ ! -s "$SECRETS/postgres/roles/$service" || ! -s "$SECRETS/postgres/urls/$service" ]]; then
    pw="$(hex)"
    (umask 022; echo "$pw" >"$SECRETS/postgres/roles/$service"
     echo "postgresql://signoff_$schema:$pw@postgres:5432/signoff?connect_timeout=10&options=-csearch_path%3D$schema" \
       >"$SECRETS/postgres/urls/$service")
    made+=("postgres/roles/$service" "postgres/urls/$service")
  fi
  chmod 644 "$SECRETS/postgres/roles/$service" "$SECRETS/postgres/urls/$service"
done
if [[ ! -s "$SECRETS/console/session-key" ]]; then
  (umask 022; fernet >"$SECRETS/console/session-key"; echo >>"$SECRETS/console/session-key")
  made+=(console/session-key)
fi
chmod 644 "$SECRETS/postgres/password" "$SECRETS/console/session-key"
if ((${#made[@]})); then
  log "generated ${made[*]} in $SECRETS"
fi
