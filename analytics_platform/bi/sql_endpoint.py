"""The Postgres-wire SQL endpoint: BI tools and ``psql`` query the published marts as if it were PostgreSQL.

buenavista speaks the protocol; each session gets its own DuckDB connection, opened on the build that
is published when the session logs in (a session keeps its build; a new one sees the newest). Users
are the API's keys: the user name is a key's name and the password is the key, so one keys file
(``analytics-platform api-key``) governs both, and a country-limited key gets the same row-level
security as in the API. The password is sent in clear text (Postgres's ``password`` method), which is
why the endpoint listens on loopback unless told otherwise; the key file only stores hashes.

A session can read, never write: the build is opened read-only, then file access is switched off and
the configuration locked, so SQL cannot read or write files on the server (``read_csv``, ``COPY TO``,
``ATTACH``). Views over the raw Iceberg tables (``raw``, ``staging``, ``intermediate``) need file access
and fail; the endpoint serves the built tables (``marts``, ``snapshots``, ``seeds``).
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import signal
import struct
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from buenavista import bv_dialects, postgres, rewrite
from buenavista.backends.duckdb import DuckDBConnection, DuckDBQueryResult, DuckDBSession
from buenavista.core import Session

from analytics_platform.exceptions import AccessDeniedError, NotPublishedError
from analytics_platform.serving.access import KeyStore, Role
from analytics_platform.serving.metrics import METRICS
from analytics_platform.settings import Settings
from analytics_platform.warehouse.connections import current_build, duckdb_config

ROLE = Role.analyst  # arbitrary SQL over the marts: what the API's analyst role may read
# What a country-limited user sees: tables with a country column, filtered (the API's split metrics,
# and the users dimension), and the tables that hold no per-country facts.
COUNTRY_TABLES = {
    *(metric.relation for metric in METRICS.values() if metric.country_column is not None),
    "marts.dim_users",
}
SHARED_TABLES = {"marts.dim_dates", "marts.dim_products"}
POSTGRES_EPOCH = datetime(2000, 1, 1)
BINARY_PARAMETERS: dict[int, Callable[[bytes], Any]] = {  # OID: decode the binary format (pg_type_d.h)
    16: lambda v: v != b"\x00",
    20: lambda v: struct.unpack("!q", v)[0],
    21: lambda v: struct.unpack("!h", v)[0],
    23: lambda v: struct.unpack("!i", v)[0],
    700: lambda v: struct.unpack("!f", v)[0],
    701: lambda v: struct.unpack("!d", v)[0],
    25: lambda v: v.decode("utf-8"),
    1043: lambda v: v.decode("utf-8"),
    1082: lambda v: (POSTGRES_EPOCH + timedelta(days=struct.unpack("!i", v)[0])).date(),
    1114: lambda v: POSTGRES_EPOCH + timedelta(microseconds=struct.unpack("!q", v)[0]),
    1184: lambda v: POSTGRES_EPOCH.replace(tzinfo=UTC) + timedelta(microseconds=struct.unpack("!q", v)[0]),
}
# Describing a prepared statement runs it with a sample value per parameter type: add the types above.
postgres.TYPE_OIDS.update(
    {16: ("BOOLOID", None, True), 25: ("TEXTOID", None, "x"), 1043: ("VARCHAROID", None, "x")}
    | {1082: ("DATEOID", None, POSTGRES_EPOCH.date())}
    | {oid: ("TIMESTAMPOID", None, POSTGRES_EPOCH) for oid in (1114, 1184)}
)
SERVER_VERSION = "14.0"  # what clients are told: a PostgreSQL whose catalog queries they know
TRANSACTION_COMMANDS = {
    "begin": "BEGIN",
    "start transaction": "BEGIN",
    "commit": "COMMIT",
    "end": "COMMIT",
    "rollback": "ROLLBACK",
    "abort": "ROLLBACK",
}
# PostgreSQL catalog functions clients call that DuckDB lacks, as session macros (called without the
# pg_catalog prefix, which the rewriter drops: a macro cannot live in that schema).
POSTGRES_FUNCTIONS = {
    "to_regtype": "to_regtype(name) as cast(null as integer)",  # psycopg's type lookup (hstore)
    "pg_get_serial_sequence": "pg_get_serial_sequence(t, c) as cast(null as varchar)",  # SQLAlchemy's columns
    "pg_get_userbyid": "pg_get_userbyid(id) as 'warehouse'",  # psql's \dt
}
CATALOG_FUNCTION = re.compile(rf"pg_catalog\.({'|'.join(POSTGRES_FUNCTIONS)})\s*\(", re.IGNORECASE)
POSTGRES_SETTINGS = {  # what drivers SHOW on connecting (SQLAlchemy, psycopg, JDBC)
    "transaction isolation level": "read committed",
    "standard_conforming_strings": "on",
    "client_encoding": "UTF8",
    "server_encoding": "UTF8",
    "datestyle": "ISO, MDY",
    "timezone": "UTC",
    "integer_datetimes": "on",
    "server_version": SERVER_VERSION,
    "max_identifier_length": "63",
}
logger = logging.getLogger(__name__)
_INSTANCE_LOCK = threading.Lock()


def open_session(build: Path, settings: Settings, countries: frozenset[str] | None) -> duckdb.DuckDBPyConnection:
    """A locked-down, read-only DuckDB connection on ``build`` for one SQL session.

    Unrestricted: the build itself. Country-limited: an in-memory database holding
    copies of :data:`COUNTRY_TABLES` filtered to ``countries`` and of :data:`SHARED_TABLES`; every other
    mart is a view that fails saying why. Copies, not views over the attached build: with the build
    attached, any query could name it directly and read every row."""
    if countries is None:
        # Connections to one file in one process share a database instance, and with it its settings:
        # the first session locks them (the check and the lock under one lock, as sessions open at once).
        with _INSTANCE_LOCK:
            con = duckdb.connect(str(build), read_only=True, config=duckdb_config(settings))
            _lock_down(con)
    else:
        con = duckdb.connect(":memory:", config=duckdb_config(settings))  # a fresh instance per session
        con.execute(f"attach '{build}' as published (read_only)")
        con.execute("create schema marts")
        marts = con.execute(
            "select table_schema || '.' || table_name from information_schema.tables "
            "where table_catalog = 'published' and table_schema = 'marts'"
        ).fetchall()
        allowed = sorted(countries)
        for (relation,) in marts:
            if relation in COUNTRY_TABLES:
                con.execute(
                    f"create table {relation} as select * from published.{relation} "
                    "where country in (select unnest(?::varchar[]))",
                    [allowed],
                )
            elif relation in SHARED_TABLES:
                con.execute(f"create table {relation} as select * from published.{relation}")
            else:
                reason = (
                    f"{relation} is aggregated over every country, and this user may only see rows of "
                    f"{', '.join(allowed)}"
                )
                con.execute(f"create view {relation} as select error('{reason}') as denied")
        con.execute("detach published")
        _lock_down(con)
    for macro in POSTGRES_FUNCTIONS.values():
        con.execute(f"create temp macro {macro}")
    return con


def _lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """No file access, no settings changed: for the database instance ``con`` belongs to."""
    if con.execute("select current_setting('lock_configuration')").fetchone() != (True,):
        con.execute("set enable_external_access = false")
        con.execute("set lock_configuration = true")


class LoginRefused(Exception):
    """A login the endpoint refused (already answered to the client)."""


class _NoTracebackForGoneClients(logging.Filter):
    """buenavista logs a traceback when a connection ends with an exception: not news for a refused
    login or a client that hung up (a reset, or a read that came back short: a liveness probe)."""

    def filter(self, record: logging.LogRecord) -> bool:
        gone = LoginRefused | ConnectionError | struct.error
        return not (record.exc_info and isinstance(record.exc_info[1], gone))


class PlatformSession(DuckDBSession):
    """A buenavista session whose DuckDB connection is opened once its user has logged in.

    Statements are told apart by their first word: buenavista looks for "begin" or "commit" anywhere
    in the text, so a column named ``committed_at`` would end a transaction. Transactions and ``SET``
    are acknowledged and do nothing: the session reads one immutable build, and its configuration is
    locked."""

    def __init__(self) -> None:
        Session.__init__(self)
        self.in_txn = False
        self.config_params: set[str] = set()
        self._cursor: Any = None

    def start(self, con: duckdb.DuckDBPyConnection) -> None:
        self._cursor = con

    def close(self) -> None:
        if self._cursor is not None:
            self._cursor.close()

    def execute_sql(self, sql: str, params: Any = None) -> DuckDBQueryResult:
        words = sql.strip().rstrip(";").split(None, 2)
        command = " ".join(words[:2]).lower() if words[:1] == ["start"] else (words[0].lower() if words else "")
        if command == "rollback" and len(words) > 1 and words[1].lower() == "to":
            return DuckDBQueryResult(status="ROLLBACK")  # to a savepoint: the transaction goes on
        if command in TRANSACTION_COMMANDS:
            status = TRANSACTION_COMMANDS[command]
            self.in_txn = status == "BEGIN"
            return DuckDBQueryResult(status=status)
        if command in {"set", "reset", "discard", "savepoint", "release"}:
            return DuckDBQueryResult(status=command.upper())
        self._cursor.execute(self.rewrite_sql(sql), params or None)
        if self._cursor.description:
            return DuckDBQueryResult(self._cursor.fetch_record_batch())
        return DuckDBQueryResult(status=command.upper())


class PublishedWarehouse(DuckDBConnection):
    def __init__(self) -> None:
        super().__init__(None)

    def parameters(self) -> dict[str, str]:
        return super().parameters() | {"server_version": SERVER_VERSION}

    def new_session(self) -> Session:
        return PlatformSession()


class Handler(postgres.BuenaVistaHandler):
    """buenavista's handler with the platform's login: clear-text password checked against the keys."""

    server: SqlEndpoint

    def send_auth_request(self, ctx: postgres.BVContext) -> None:
        self.wfile.write(struct.pack("!cii", postgres.ServerResponse.AUTHENTICATION_REQUEST, 8, 3))

    def handle_md5_password(self, ctx: postgres.BVContext, payload: bytes) -> None:
        user = ctx.params.get("user", "")
        try:
            key = self.server.keys.authenticate(payload.decode("utf-8").rstrip("\x00"))
            if key.name != user:
                raise AccessDeniedError("the key does not belong to this user", authenticated=False)
        except AccessDeniedError:
            self._fatal("28P01", f'password authentication failed for user "{user}" (the password is its API key)')
            return
        try:
            key.require(ROLE, "the SQL endpoint")
            build = current_build(self.server.settings)
            if build is None:
                raise NotPublishedError("no marts are published yet: run `analytics-platform build`")
            ctx.session.start(open_session(build, self.server.settings, key.countries))
        except (AccessDeniedError, NotPublishedError) as error:
            self._fatal("42501" if isinstance(error, AccessDeniedError) else "57P03", str(error))
            return
        logger.info("session of %s on build %s", key.name, build.parent.name)
        self.send_authentication_ok()
        self.handle_post_auth(ctx)

    def handle_bind(self, ctx: postgres.BVContext, payload: bytes) -> None:
        """Bind parameters (buenavista's version parses an untyped text parameter as a date, reads a
        NULL as the rest of the message, and knows no binary dates or times; drivers send those)."""
        portal_name, statement_name, rest = payload.split(b"\x00", 2)
        portal, statement = portal_name.decode("utf-8"), statement_name.decode("utf-8")
        buffer = postgres.BVBuffer(io.BytesIO(rest))
        formats = [buffer.read_int16() for _ in range(buffer.read_int16())]
        count = buffer.read_int16()
        formats = formats * count if len(formats) == 1 else (formats or [0] * count)
        oids = ctx.stmts[statement][1]
        params: list[Any] = []
        for index in range(count):
            size = buffer.read_int32()
            if size < 0:
                params.append(None)
                continue
            value = buffer.read_bytes(size)
            oid = oids[index] if index < len(oids) else 0
            if formats[index] == 0:
                params.append(value.decode("utf-8"))  # DuckDB casts text to what the query compares it with
            elif oid in BINARY_PARAMETERS:
                params.append(BINARY_PARAMETERS[oid](value))
            else:
                raise ValueError(f"parameter ${index + 1} has a binary type this endpoint cannot read (OID {oid})")
        result_formats = [buffer.read_int16() for _ in range(buffer.read_int16())]
        ctx.add_portal(portal, statement, params, result_formats)
        self.send_bind_complete()

    def _fatal(self, code: str, message: str) -> None:
        """Refuse the login and end the connection (buenavista's loop ends on an exception)."""
        self._error("FATAL", code, message)
        raise LoginRefused(message)

    def send_error(self, exception: Any, ctx: postgres.BVContext | None = None) -> None:
        # buenavista sends only the message; clients (SQLAlchemy, psql) also read severity and SQLSTATE.
        if not isinstance(exception, LoginRefused):
            self._error("ERROR", "XX000", str(exception))
        if ctx:
            ctx.mark_error()

    def _error(self, severity: str, code: str, message: str) -> None:
        parts = ((b"S", severity), (b"V", severity), (b"C", code), (b"M", message))
        fields = b"".join(tag + value.encode() + b"\x00" for tag, value in parts)
        body = fields + b"\x00"
        with contextlib.suppress(OSError):  # the client has gone: nobody to tell
            self.wfile.write(struct.pack("!ci", postgres.ServerResponse.ERROR_RESPONSE, len(body) + 4) + body)


class PostgresToDuckDB(rewrite.Rewriter):
    """Postgres SQL from clients, transpiled to DuckDB's dialect by sqlglot; what clients ask on connecting
    that DuckDB cannot answer is answered here."""

    def __init__(self) -> None:
        super().__init__(bv_dialects.BVPostgres(), bv_dialects.BVDuckDB())

    def rewrite(self, sql: str) -> str:
        asked = " ".join(sql.strip().rstrip(";").lower().split())
        if asked in {"select pg_catalog.version()", "select version()"}:
            return f"select 'PostgreSQL {SERVER_VERSION} (DuckDB {duckdb.__version__} via buenavista)' as version"
        if asked.startswith("show ") and (setting := asked.removeprefix("show ")) in POSTGRES_SETTINGS:
            return f"select '{POSTGRES_SETTINGS[setting]}' as {setting.replace(' ', '_')}"
        return super().rewrite(CATALOG_FUNCTION.sub(lambda call: f"{call.group(1)}(", sql))


class SqlEndpoint(postgres.BuenaVistaServer):
    daemon_threads = True

    def __init__(self, settings: Settings, address: tuple[str, int]) -> None:
        super().__init__(address, PublishedWarehouse(), rewriter=PostgresToDuckDB())
        self.RequestHandlerClass = Handler
        self.settings = settings
        self.keys = KeyStore(settings.api_keys_path)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return True  # the listen address decides who can connect (loopback by default)

    def handle_error(self, request: Any, client_address: Any) -> None:
        logger.debug("connection from %s ended abruptly", client_address, exc_info=True)


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # out of serve_forever, in the main thread, as Ctrl-C does


def serve(settings: Settings, host: str, port: int, ready: threading.Event | None = None) -> None:
    """Serve until interrupted (Ctrl-C or SIGTERM)."""
    logging.getLogger("buenavista").setLevel(logging.WARNING)  # it logs every query's text at INFO
    logging.getLogger("buenavista.postgres").addFilter(_NoTracebackForGoneClients())
    if threading.current_thread() is threading.main_thread():
        # A parent that blocked or ignored SIGTERM (a mask survives exec) would leave a supervisor's stop
        # waiting for its kill timeout (30 s in tests): take both signals back explicitly.
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
        signal.signal(signal.SIGTERM, _stop)
    server = SqlEndpoint(settings, (host, port))
    if ready is not None:
        ready.set()
    try:
        server.serve_forever()
    finally:
        server.server_close()
