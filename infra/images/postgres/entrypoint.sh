#!/bin/sh
# First start: initdb with the password, create the database, allow password logins from the
# network. Every start: run postgres with the arguments given (e.g. -p 15432).
set -eu
if [ "${1#-}" != "$1" ]; then
    set -- postgres "$@"
fi
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    : "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD must be set}"
    user=${POSTGRES_USER:-postgres}
    db=${POSTGRES_DB:-$user}
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --username="$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    if [ "$db" != postgres ]; then
        # A server on the pod's own socket only, to create the database, as the official image does.
        pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -k /tmp" -w -s start
        psql -v ON_ERROR_STOP=1 -q -h /tmp -U "$user" -d postgres -c "CREATE DATABASE \"$db\""
        pg_ctl -D "$PGDATA" -m fast -w -s stop
    fi
    echo "docker-entrypoint: initialised $PGDATA (user $user, database $db)"
fi
exec "$@"
