#!/bin/sh
# The stack's PostgreSQL: on an empty data volume, a cluster whose user `postgres` has the password
# POSTGRES_PASSWORD, with the databases of postgres-init.sql; then the server, for the stack's
# network (the compose file publishes no port of it on the host).
set -eu
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "postgres: POSTGRES_PASSWORD is empty; set it in the environment (infra/compose.yaml)" >&2
        exit 1
    fi
    password=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$password"
    initdb --username=postgres --pwfile="$password" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$password"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    # The databases, on a server that listens on its socket only until they exist.
    pg_ctl --silent --wait --options="-c listen_addresses=''" start
    psql --quiet --username=postgres --set=ON_ERROR_STOP=1 --file=/usr/local/share/mlproject/postgres-init.sql
    pg_ctl --silent --wait stop
    echo "postgres: created the cluster and the databases of postgres-init.sql"
fi
exec postgres -c listen_addresses='*'
