"""Reading the department's business database: PostgreSQL or MySQL/MariaDB.

Only SELECTs, except the optional heartbeat table the department allowed. The calls are
blocking and run in a worker thread; each source holds one connection and reopens it after
a failure, so a restarted business database costs one failed cycle, not a restart.
"""

from __future__ import annotations

import abc
import contextlib
import datetime as dt
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import psycopg.sql
import pymysql

from gdx.sharing import BusinessDb


class SourceError(Exception):
    """The business database could not be read; the message says what to check."""


# Key sets (a table's and the mirror's) are compared per bucket: the first two hexadecimal
# digits of the key's MD5 name the bucket (256 of them), and each bucket's figures are its
# row count and the XOR of the next 60 bits. The databases compute them, so a comparison of a
# million keys moves 256 rows, and only the keys of buckets that differ are read. PostgreSQL
# and MariaDB give the same figures for the same keys (MD5 of the key's text, UTF-8).
KeyTally = dict[str, tuple[int, int]]

# OFFSET 0 keeps the subquery whole: flattened, it computed each key's MD5 twice (for the bucket
# and for the checksum), a third of the tally's time (2.5 s -> 1.6 s for 1,000,000 keys).
KEY_TALLY_POSTGRES = """
    SELECT substr(h, 1, 2), count(*), bit_xor(('x' || substr(h, 3, 15))::bit(60)::bigint)
    FROM (SELECT md5(({key})::text) AS h FROM {source} WHERE {where} OFFSET 0) hashed GROUP BY 1
"""
KEY_BUCKET_POSTGRES = "substr(md5(({key})::text), 1, 2)"


def add_tally(total: KeyTally, part: KeyTally) -> None:
    """Fold the tally of some keys into that of others (counts add, checksums XOR)."""
    for bucket, (count, checksum) in part.items():
        held_count, held_checksum = total.get(bucket, (0, 0))
        total[bucket] = (held_count + count, held_checksum ^ checksum)


def key_range(column: str, lower: Any, upper: Any) -> tuple[str, list[Any]]:
    """The condition `lower < column <= upper` (None: unbounded), in the database's own key
    order: each side of a comparison walks its keys in ranges of its own, and the tallies of
    the ranges add up to the whole, so the two databases' orders (collations) never meet."""
    conditions, params = [], []
    if lower is not None:
        conditions.append(f"{column} > %s")
        params.append(lower)
    if upper is not None:
        conditions.append(f"{column} <= %s")
        params.append(upper)
    return " AND ".join(conditions) or "TRUE", params


_UNREACHABLE = "check business_db in the node config, the password, and that the firewall lets this node reach it"
# A table the node reaches and cannot read: a field of the catalog entry (maybe of a new schema
# version) without its column, a table renamed, a missing grant.
_NOT_READABLE = (
    "the published table (or a view) needs a column named as each field of the catalog entry, "
    "and business_db.user needs SELECT on it"
)
_POSTGRES_NOT_READABLE = (
    psycopg.errors.UndefinedColumn,
    psycopg.errors.UndefinedTable,
    psycopg.errors.InsufficientPrivilege,
)
_MYSQL_NOT_READABLE = {1054, 1142, 1143, 1146}  # unknown column, SELECT denied (table, column), no table


def _describe(db: BusinessDb, exc: Exception, hint: str = _UNREACHABLE) -> SourceError:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return SourceError(f"business database {db.kind}://{db.user}@{db.host}:{db.port}/{db.name}: {first_line} ({hint})")


class Source(abc.ABC):
    """A business database, read (and written only to its heartbeat table) through one connection.

    The statements PostgreSQL and MariaDB spell alike are here (identifiers quoted by each); the
    subclasses spell the rest."""

    @staticmethod
    @abc.abstractmethod
    def _name(identifier: str) -> str:
        """The identifier (optionally schema-qualified) quoted for the database."""

    @abc.abstractmethod
    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a statement; its rows, or SourceError naming what to check."""

    @abc.abstractmethod
    def now(self) -> dt.datetime:
        """The database's clock (aware, UTC)."""

    # The schema an unqualified table name is found in.
    _CURRENT_SCHEMA = "current_schema()"

    def columns(self, table: str) -> dict[str, str]:
        """The table's columns and their types, as the database's information_schema names them
        (empty when the table is not there or not visible to this account)."""
        schema, _, name = table.rpartition(".")
        where = "table_schema = %s" if schema else f"table_schema = {self._CURRENT_SCHEMA}"
        rows = self._query(
            f"SELECT column_name, data_type FROM information_schema.columns WHERE {where} AND table_name = %s",  # noqa: S608
            [schema, name] if schema else [name],
        )
        return {str(column): str(kind) for column, kind in rows}

    @abc.abstractmethod
    def read_keys(
        self, table: str, columns: Sequence[str], change_column: str, key: str, keys: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        """The rows with these keys, each as (change value, *columns)."""

    @abc.abstractmethod
    def iter_rows(self, table: str, columns: Sequence[str], chunk: int) -> Iterator[list[tuple[Any, ...]]]:
        """Every row of the table, ``chunk`` at a time, from one snapshot."""

    @abc.abstractmethod
    def key_tally(self, table: str, key: str, lower: Any = None, upper: Any = None) -> KeyTally:
        """Per bucket of the key's MD5 (see KEY_TALLY_POSTGRES), the count and checksum of the
        keys in lower < key <= upper (see key_range)."""

    @abc.abstractmethod
    def keys_in(self, table: str, key: str, buckets: Sequence[str], lower: Any = None, upper: Any = None) -> list[Any]:
        """The keys in lower < key <= upper that fall in these buckets (as the table holds them:
        str() gives the mirror's text)."""

    @abc.abstractmethod
    def write_heartbeat(self, table: str, resource: str) -> None:
        """Advance this resource's heartbeat row (the table the department allowed)."""

    @abc.abstractmethod
    def read_heartbeat(self, table: str, resource: str) -> tuple[int, dt.datetime] | None:
        """(seq, source time) of this resource's heartbeat row, None before the first."""

    @abc.abstractmethod
    def close(self) -> None:
        """Close the connection (the next statement opens a new one)."""

    def _after(self, change_column: str, key: str, after: tuple[Any, Any]) -> tuple[str, list[Any]]:
        """The rows after (change value, key) in the order read_changed reads them."""
        return f"({change_column}, {key}) > (%s, %s)", [after[0], after[1]]

    def read_changed(
        self,
        table: str,
        columns: Sequence[str],
        change_column: str,
        key: str,
        lower: Any,
        after: tuple[Any, Any] | None,
        limit: int,
        upper: Any = None,
    ) -> list[tuple[Any, ...]]:
        """Rows with change_column >= lower (first page) or (change_column, key) > after, and
        change_column <= upper when given, ordered by (change_column, key); each tuple is
        (change value, *columns)."""
        cols = ", ".join(self._name(c) for c in columns)
        chg, k = self._name(change_column), self._name(key)
        if after is not None:
            where, params = self._after(chg, k, after)
        elif lower is not None:
            where, params = f"{chg} >= %s", [lower]
        else:
            where, params = f"{chg} IS NOT NULL", []
        if upper is not None:
            where, params = f"{where} AND {chg} <= %s", [*params, upper]
        sql = f"SELECT {chg}, {cols} FROM {self._name(table)} WHERE {where} ORDER BY {chg}, {k} LIMIT %s"  # noqa: S608
        return self._query(sql, [*params, limit])

    def read_by_key(
        self, table: str, columns: Sequence[str], key: str, after: Any, limit: int
    ) -> list[tuple[Any, ...]]:
        cols = ", ".join(self._name(c) for c in columns)
        k = self._name(key)
        where, params = (f"WHERE {k} > %s", [after]) if after is not None else ("", [])
        return self._query(f"SELECT {cols} FROM {self._name(table)} {where} ORDER BY {k} LIMIT %s", [*params, limit])  # noqa: S608

    def read_change_keys(
        self, table: str, change_column: str, key: str, lower: Any, upper: Any
    ) -> list[tuple[Any, Any]]:
        """(change value, key) of the rows with lower <= change_column < upper."""
        chg, k = self._name(change_column), self._name(key)
        sql = f"SELECT {chg}, {k} FROM {self._name(table)} WHERE {chg} >= %s AND {chg} < %s"  # noqa: S608
        return [(row[0], row[1]) for row in self._query(sql, [lower, upper])]

    def key_after(self, table: str, key: str, lower: Any, skip: int) -> Any:
        """The key `skip` + 1 places after `lower` (from the first key when None) in the table's
        key order, or None when fewer keys are left: the upper end of the next key range."""
        k = self._name(key)
        where, params = key_range(k, lower, None)
        rows = self._query(
            f"SELECT {k} FROM {self._name(table)} WHERE {where} ORDER BY {k} LIMIT 1 OFFSET %s",  # noqa: S608
            [*params, skip],
        )
        return rows[0][0] if rows else None

    def count(self, table: str) -> int:
        return int(self._query(f"SELECT count(*) FROM {self._name(table)}")[0][0])  # noqa: S608

    def max_value(self, table: str, column: str) -> Any:
        return self._query(f"SELECT max({self._name(column)}) FROM {self._name(table)}")[0][0]  # noqa: S608

    def count_above(self, table: str, column: str, value: Any) -> int:
        """How many rows have column > value."""
        sql = f"SELECT count(*) FROM {self._name(table)} WHERE {self._name(column)} > %s"  # noqa: S608
        return int(self._query(sql, [value])[0][0])


class PostgresSource(Source):
    def __init__(self, db: BusinessDb, password: str) -> None:
        self.db = db
        self._password = password
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None

    def _connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(
                    host=self.db.host,
                    port=self.db.port,
                    dbname=self.db.name,
                    user=self.db.user,
                    password=self._password,
                    connect_timeout=10,
                    autocommit=True,
                    application_name="gdx-front-end-agent",
                )
            except psycopg.Error as exc:
                raise _describe(self.db, exc) from None
        return self._conn

    @property
    def password(self) -> str:
        return self._password

    def replication_connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """A connection in the replication protocol (log capture: a slot made with a snapshot)."""
        try:
            return psycopg.connect(
                host=self.db.host, port=self.db.port, dbname=self.db.name, user=self.db.user,
                password=self._password, connect_timeout=10, autocommit=True, replication="database",
                application_name="gdx-front-end-agent",
            )  # fmt: skip
        except psycopg.Error as exc:
            raise _describe(self.db, exc) from None

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A statement of log capture's (the slot's functions, the catalog's checks)."""
        return self._query(sql, params)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except _POSTGRES_NOT_READABLE as exc:
            raise _describe(self.db, exc, _NOT_READABLE) from None
        except psycopg.OperationalError as exc:
            self.close()
            raise _describe(self.db, exc) from None

    @staticmethod
    def _name(identifier: str) -> str:
        return ".".join(f'"{part}"' for part in identifier.split("."))

    def now(self) -> dt.datetime:
        value: dt.datetime = self._query("SELECT clock_timestamp()")[0][0]
        return value

    def read_keys(
        self, table: str, columns: Sequence[str], change_column: str, key: str, keys: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        cols = ", ".join(self._name(c) for c in columns)
        chg, k = self._name(change_column), self._name(key)
        return self._query(f"SELECT {chg}, {cols} FROM {self._name(table)} WHERE {k} = ANY(%s)", [list(keys)])  # noqa: S608

    def iter_rows(
        self, table: str, columns: Sequence[str], chunk: int, snapshot: str | None = None
    ) -> Iterator[list[tuple[Any, ...]]]:
        """(``snapshot``: as that exported snapshot sees the table, for log capture's load.)"""
        cols = ", ".join(self._name(c) for c in columns)
        conn = self._connection()
        try:
            with conn.transaction():
                if snapshot is not None:
                    conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                    conn.execute(psycopg.sql.SQL("SET TRANSACTION SNAPSHOT {}").format(psycopg.sql.Literal(snapshot)))
                with conn.cursor(name="gdx_rows") as cur:
                    cur.execute(f"SELECT {cols} FROM {self._name(table)}")  # noqa: S608
                    while rows := cur.fetchmany(chunk):
                        yield rows
        except _POSTGRES_NOT_READABLE as exc:
            raise _describe(self.db, exc, _NOT_READABLE) from None
        except psycopg.OperationalError as exc:
            self.close()
            raise _describe(self.db, exc) from None

    def key_tally(self, table: str, key: str, lower: Any = None, upper: Any = None) -> KeyTally:
        k = self._name(key)
        where, params = key_range(k, lower, upper)
        sql = KEY_TALLY_POSTGRES.format(key=k, source=self._name(table), where=where)
        return {bucket: (int(count), int(checksum)) for bucket, count, checksum in self._query(sql, params)}

    def keys_in(self, table: str, key: str, buckets: Sequence[str], lower: Any = None, upper: Any = None) -> list[Any]:
        if not buckets:
            return []
        k = self._name(key)
        bucket = KEY_BUCKET_POSTGRES.format(key=k)
        where, params = key_range(k, lower, upper)
        sql = f"SELECT {k} FROM {self._name(table)} WHERE {where} AND {bucket} = ANY(%s)"  # noqa: S608
        return [row[0] for row in self._query(sql, [*params, list(buckets)])]

    def write_heartbeat(self, table: str, resource: str) -> None:
        self._query(
            f"INSERT INTO {self._name(table)} AS h (resource, seq, source_time) "  # noqa: S608
            "VALUES (%s, 1, clock_timestamp()) "
            "ON CONFLICT (resource) DO UPDATE SET seq = h.seq + 1, source_time = clock_timestamp() RETURNING seq",
            [resource],
        )

    def read_heartbeat(self, table: str, resource: str) -> tuple[int, dt.datetime] | None:
        rows = self._query(f"SELECT seq, source_time FROM {self._name(table)} WHERE resource = %s", [resource])  # noqa: S608
        return (int(rows[0][0]), rows[0][1]) if rows else None

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class MariaDbSource(Source):
    """MySQL and MariaDB, through PyMySQL (pure Python: nothing to compile on the node)."""

    def __init__(self, db: BusinessDb, password: str) -> None:
        self.db = db
        self._password = password
        self._conn: pymysql.connections.Connection[Any] | None = None

    def _connection(self) -> pymysql.connections.Connection[Any]:
        if self._conn is None or not self._conn.open:
            try:
                self._conn = pymysql.connect(
                    host=self.db.host,
                    port=self.db.port,
                    user=self.db.user,
                    # bytes: PyMySQL would encode a str password as latin-1 and fail on 中文.
                    password=self._password.encode("utf-8"),
                    database=self.db.name,
                    charset="utf8mb4",
                    autocommit=True,
                    connect_timeout=10,
                    read_timeout=300,
                )
            except pymysql.MySQLError as exc:
                raise _describe(self.db, exc) from None
        return self._conn

    @property
    def password(self) -> str:
        return self._password

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """A statement of log capture's (the server's binlog settings and grants)."""
        return self._query(sql, params)

    def snapshot_connection(self) -> pymysql.connections.Connection[Any]:
        """A connection of its own, for a transaction WITH CONSISTENT SNAPSHOT (log capture's load)."""
        try:
            return pymysql.connect(
                host=self.db.host, port=self.db.port, user=self.db.user, password=self._password.encode("utf-8"),
                database=self.db.name, charset="utf8mb4", autocommit=False, connect_timeout=10, read_timeout=300,
            )  # fmt: skip
        except pymysql.MySQLError as exc:
            raise _describe(self.db, exc) from None

    def iter_in(
        self, conn: pymysql.connections.Connection[Any], table: str, columns: Sequence[str], chunk: int
    ) -> Iterator[list[tuple[Any, ...]]]:
        """Every row of the table as ``conn``'s transaction sees it, ``chunk`` at a time."""
        cols = ", ".join(self._name(c) for c in columns)
        try:
            with conn.cursor(pymysql.cursors.SSCursor) as cur:
                cur.execute(f"SELECT {cols} FROM {self._name(table)}")  # noqa: S608
                while rows := cur.fetchmany(chunk):
                    yield list(rows)
        except pymysql.MySQLError as exc:
            raise self._described(exc) from None

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._connection().cursor() as cur:
                cur.execute(sql, tuple(params))
                return list(cur.fetchall())
        except pymysql.MySQLError as exc:
            raise self._described(exc) from None

    _CURRENT_SCHEMA = "DATABASE()"

    @staticmethod
    def _name(identifier: str) -> str:
        return ".".join(f"`{part}`" for part in identifier.split("."))

    def now(self) -> dt.datetime:
        # UTC_TIMESTAMP is zone-free: the one clock reading that needs no server setting.
        value: dt.datetime = self._query("SELECT UTC_TIMESTAMP(6)")[0][0]
        return value.replace(tzinfo=dt.UTC)

    def _after(self, change_column: str, key: str, after: tuple[Any, Any]) -> tuple[str, list[Any]]:
        # Spelt out rather than a row comparison, which MariaDB does not use an index for.
        chg, k = change_column, key
        return f"({chg} > %s OR ({chg} = %s AND {k} > %s))", [after[0], after[0], after[1]]

    def read_keys(
        self, table: str, columns: Sequence[str], change_column: str, key: str, keys: Sequence[Any]
    ) -> list[tuple[Any, ...]]:
        if not keys:
            return []
        cols = ", ".join(self._name(c) for c in columns)
        chg, k = self._name(change_column), self._name(key)
        marks = ", ".join(["%s"] * len(keys))
        return self._query(f"SELECT {chg}, {cols} FROM {self._name(table)} WHERE {k} IN ({marks})", list(keys))  # noqa: S608

    def iter_rows(self, table: str, columns: Sequence[str], chunk: int) -> Iterator[list[tuple[Any, ...]]]:
        cols = ", ".join(self._name(c) for c in columns)
        try:
            with self._connection().cursor(pymysql.cursors.SSCursor) as cur:
                cur.execute(f"SELECT {cols} FROM {self._name(table)}")  # noqa: S608
                while rows := cur.fetchmany(chunk):
                    yield list(rows)
        except pymysql.MySQLError as exc:
            raise self._described(exc) from None

    def _described(self, exc: pymysql.MySQLError) -> Exception:
        if exc.args and exc.args[0] in _MYSQL_NOT_READABLE:
            return _describe(self.db, exc, _NOT_READABLE)
        if isinstance(exc, pymysql.OperationalError | pymysql.InterfaceError):
            self.close()
            return _describe(self.db, exc)
        return exc

    def key_tally(self, table: str, key: str, lower: Any = None, upper: Any = None) -> KeyTally:
        k = self._name(key)
        where, params = key_range(k, lower, upper)
        xor = "BIT_XOR(CAST(CONV(SUBSTR(h, 3, 15), 16, 10) AS UNSIGNED))"
        hashed = f"SELECT MD5({k}) AS h FROM {self._name(table)} WHERE {where}"  # noqa: S608
        sql = f"SELECT SUBSTR(h, 1, 2), COUNT(*), {xor} FROM ({hashed}) hashed GROUP BY 1"  # noqa: S608
        return {bucket: (int(count), int(checksum)) for bucket, count, checksum in self._query(sql, params)}

    def keys_in(self, table: str, key: str, buckets: Sequence[str], lower: Any = None, upper: Any = None) -> list[Any]:
        if not buckets:
            return []
        k = self._name(key)
        where, params = key_range(k, lower, upper)
        marks = ", ".join(["%s"] * len(buckets))
        sql = f"SELECT {k} FROM {self._name(table)} WHERE {where} AND SUBSTR(MD5({k}), 1, 2) IN ({marks})"  # noqa: S608
        return [row[0] for row in self._query(sql, [*params, *buckets])]

    def write_heartbeat(self, table: str, resource: str) -> None:
        self._query(
            f"INSERT INTO {self._name(table)} (resource, seq, source_time) VALUES (%s, 1, UTC_TIMESTAMP(6)) "  # noqa: S608
            "ON DUPLICATE KEY UPDATE seq = seq + 1, source_time = UTC_TIMESTAMP(6)",
            [resource],
        )

    def read_heartbeat(self, table: str, resource: str) -> tuple[int, dt.datetime] | None:
        rows = self._query(f"SELECT seq, source_time FROM {self._name(table)} WHERE resource = %s", [resource])  # noqa: S608
        return (int(rows[0][0]), rows[0][1].replace(tzinfo=dt.UTC)) if rows else None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(pymysql.Error):
                self._conn.close()
            self._conn = None


def open_source(db: BusinessDb) -> Source:
    password = db.secret()
    if db.kind == "postgresql":
        return PostgresSource(db, password)
    return MariaDbSource(db, password)
