#!/bin/sh
# First start: a cluster in $PGDATA whose superuser is $POSTGRES_USER with the
# password from $POSTGRES_PASSWORD_FILE or $POSTGRES_PASSWORD (never on a
# command line), a database $POSTGRES_DB, password logins from the network
# (scram-sha-256). Later starts use the cluster as it is.
set -eu
: "${PGDATA:?}"
user="${POSTGRES_USER:-postgres}"
db="${POSTGRES_DB:-$user}"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  pwfile=$(mktemp)
  trap 'rm -f "$pwfile"' EXIT
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    cat "$POSTGRES_PASSWORD_FILE" >"$pwfile"
  elif [ -n "${POSTGRES_PASSWORD:-}" ]; then
    printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  else
    echo "postgres-entrypoint: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE" >&2
    exit 2
  fi
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  rm -f "$pwfile"
  trap - EXIT
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.auto.conf"
  if [ "$db" != postgres ]; then
    printf 'CREATE DATABASE "%s" OWNER "%s";\n' "$db" "$user" |
      postgres --single -D "$PGDATA" -j postgres >/dev/null
  fi
  echo "postgres-entrypoint: made a cluster with user $user and database $db" >&2
fi
exec postgres -D "$PGDATA"
