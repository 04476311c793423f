#!/bin/sh
# First start: a data directory, the database and a password user with every right on it (root
# logs in over the socket only). Every start: mariadbd on all addresses, utf8mb4 throughout; the binlog
# settings come as arguments (local_platform/business.py).
set -eu
if [ "$1" = mariadbd ]; then
    shift
    set -- mariadbd --datadir=/var/lib/mysql --socket=/run/mysqld/mysqld.sock --bind-address=0.0.0.0 \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_bin "$@"
    if [ ! -d /var/lib/mysql/mysql ]; then
        : "${MARIADB_DATABASE:?MARIADB_DATABASE must be set}" "${MARIADB_USER:?}" "${MARIADB_PASSWORD:?}"
        mariadb-install-db --user=mysql --datadir=/var/lib/mysql --auth-root-authentication-method=socket \
            --skip-test-db >/dev/null
        "$@" --skip-networking &
        pid=$!
        until mariadb-admin --socket=/run/mysqld/mysqld.sock ping >/dev/null 2>&1; do sleep 0.2; done
        mariadb --socket=/run/mysqld/mysqld.sock <<SQL
CREATE DATABASE \`$MARIADB_DATABASE\`;
CREATE USER '$MARIADB_USER'@'%' IDENTIFIED BY '$MARIADB_PASSWORD';
GRANT ALL ON \`$MARIADB_DATABASE\`.* TO '$MARIADB_USER'@'%';
SQL
        kill "$pid"
        wait "$pid" || true
        echo "docker-entrypoint: initialised /var/lib/mysql (user $MARIADB_USER, database $MARIADB_DATABASE)"
    fi
fi
exec "$@"
