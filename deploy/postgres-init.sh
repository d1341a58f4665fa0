#!/bin/sh
# One PostgreSQL role and one schema per service, so that no service can read or change another's
# state: the deployer's `production` and `revoked`, the policy's `decided`, the reviews and votes,
# the console's sessions, the validator's snapshots. Each role logs in with its own password, owns
# only its schema (its search_path), is no superuser (no COPY ... TO PROGRAM, no other schema), and
# creates nothing in `public`. Like Kafka's one principal per service with its ACLs (shared/acl.py).
#
# Run by the postgres image on its first start (compose.yaml mounts it read-only in
# /docker-entrypoint-initdb.d), and by deploy/postgres.sh up (every time: it changes nothing when
# the roles are there, and sets their passwords again from the files).
#
# Environment:
#   SIGNOFF_ROLE_PASSWORD_FILES  prefix of the password files: <prefix><service>, the service
#                                named with dashes (review-notifier) [/run/secrets/database-password-]
#   PSQL                         the psql to run [psql]
#   PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSFILE: a superuser's login (libpq's variables); in the
#   image, POSTGRES_USER and POSTGRES_DB over its socket.
set -eu

signoff_prefix="${SIGNOFF_ROLE_PASSWORD_FILES:-/run/secrets/database-password-}"
signoff_psql="${PSQL:-psql}"
PGUSER="${PGUSER:-${POSTGRES_USER:-postgres}}"
PGDATABASE="${PGDATABASE:-${POSTGRES_DB:-$PGUSER}}"
export PGUSER PGDATABASE

# Nobody but the roles below connects to the service database, and nobody creates in `public`
# (PostgreSQL 15 and later no longer allow it; said here for older servers too).
"$signoff_psql" -X -q -w -v ON_ERROR_STOP=1 -v db="$PGDATABASE" <<'SQL'
REVOKE ALL ON DATABASE :"db" FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
SQL

for signoff_schema in validator policy review_notifier deployer console; do
  signoff_file="$signoff_prefix$(echo "$signoff_schema" | tr _ -)"
  if [ ! -s "$signoff_file" ]; then
    echo "postgres-init: no password for $signoff_schema in $signoff_file (make compose-secrets, or deploy/postgres.sh up)" >&2
    exit 1
  fi
  signoff_password="$(head -n 1 "$signoff_file")"
  # What make compose-secrets and postgres.sh make (hex): nothing to escape.
  if [ "${#signoff_password}" -lt 32 ] || ! printf '%s' "$signoff_password" | grep -Eq '^[A-Za-z0-9_-]+$'; then
    echo "postgres-init: the password in $signoff_file must be 32+ characters of A-Z a-z 0-9 _ -" >&2
    exit 1
  fi
  # The password goes in on standard input (never on a command line, where `ps` shows it); psql's
  # :'...' and :"..." quote the values (a literal, an identifier).
  "$signoff_psql" -X -q -w -v ON_ERROR_STOP=1 -v db="$PGDATABASE" -v role="signoff_$signoff_schema" \
      -v schema="$signoff_schema" <<SQL
\set password '$signoff_password'
SELECT format('CREATE ROLE %I LOGIN', :'role') WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')
\gexec
ALTER ROLE :"role" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS PASSWORD :'password';
ALTER ROLE :"role" SET search_path = :"schema";
CREATE SCHEMA IF NOT EXISTS :"schema" AUTHORIZATION :"role";
ALTER SCHEMA :"schema" OWNER TO :"role";
REVOKE ALL ON SCHEMA :"schema" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"db" TO :"role";
SQL
done
echo "postgres-init: one role and schema per service (signoff_<service> owns <service>) in $PGDATABASE" >&2
