"""Least-privilege PostgreSQL roles for the platform's databases (docs/security.md#database-roles).

``platform_writer`` is what every platform service connects as: it creates and writes the tables of the
Iceberg SQL catalog and of Dagster's storage, in schema ``public`` of their databases, and owns them. It
is not a superuser, cannot create databases, roles or schemas, and cannot drop what another role owns.
``bi_reader`` reads every table of the catalog's database (those there now and those the writer creates
later, such as marts should they ever live in PostgreSQL), writes nothing, and reads nothing of Dagster's.

One list of statements, :func:`plan`, runs two ways: ``analytics-platform db roles create`` executes it on
a server (:func:`apply`; idempotent: a missing role is created, and attributes, passwords and grants are set
again), and :func:`init_script` renders it for psql as ``docker/postgres-init.sql``, which the compose
``postgres`` service runs on its first start (a test checks that the file is current).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psycopg2

from analytics_platform.exceptions import ConfigError
from analytics_platform.security.redaction import redact

WRITER = "platform_writer"
READER = "bi_reader"
WRITER_PASSWORD_VARIABLE = "POSTGRES_WRITER_PASSWORD"
READER_PASSWORD_VARIABLE = "POSTGRES_READER_PASSWORD"
CATALOG_DATABASE = "iceberg"
DAGSTER_DATABASE = "dagster"
# On the server as a whole both roles may log in, nothing more: set on every run, so a role that existed
# with more is brought back (SUPERUSER, REPLICATION and BYPASSRLS are refused instead, see plan()).
ROLE_ATTRIBUTES = "LOGIN NOCREATEDB NOCREATEROLE"
# Role names are spliced into DO blocks, variable names into psql commands: plain identifiers only.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# PostgreSQL's own default for SCRAM-SHA-256 verifiers (scram_iterations).
SCRAM_ITERATIONS = 4096


@dataclass(frozen=True)
class Role:
    name: str
    password_variable: str  # the environment variable that holds its password

    def __post_init__(self) -> None:
        for what, value in (("role name", self.name), ("password variable", self.password_variable)):
            if not _NAME.match(value):
                raise ConfigError(f"{what} {value!r}: use letters, digits and _ (no digit first), at most 63")


@dataclass(frozen=True)
class Layout:
    """The roles and the databases they get rights in. The defaults are the compose stack's."""

    writer: Role = Role(WRITER, WRITER_PASSWORD_VARIABLE)
    reader: Role = Role(READER, READER_PASSWORD_VARIABLE)
    catalog_database: str = CATALOG_DATABASE
    dagster_database: str | None = DAGSTER_DATABASE  # None: Dagster's storage is not on this server


@dataclass(frozen=True)
class Statement:
    sql: str
    shown: str  # what the command prints: one line, never a password
    password_of: Role | None = None  # the SQL ends in PASSWORD {password}
    creates: str | None = None  # the role this statement creates when it is missing


@dataclass(frozen=True)
class Step:
    """Statements run together, in one transaction, in one database (None: roles, which are server-wide)."""

    database: str | None
    purpose: str
    statements: tuple[Statement, ...]


def plan(layout: Layout) -> list[Step]:
    """What :func:`apply` and :func:`init_script` run, in order."""
    writer, reader = _ident(layout.writer.name), _ident(layout.reader.name)
    roles: list[Statement] = []
    for role in (layout.writer, layout.reader):
        name = _ident(role.name)
        # A role of that name with SUPERUSER, REPLICATION or BYPASSRLS is refused rather than altered: it was
        # made so on purpose, by a superuser, and someone should look before it loses them.
        found = f"FROM pg_roles WHERE rolname = '{role.name}'"
        create = (
            "DO $$ BEGIN\n"
            f"  IF NOT EXISTS (SELECT {found}) THEN CREATE ROLE {name}; END IF;\n"
            f"  IF (SELECT rolsuper OR rolreplication OR rolbypassrls {found}) THEN\n"
            f"    RAISE EXCEPTION 'role {role.name} has SUPERUSER, REPLICATION or BYPASSRLS: as a superuser, run "
            f"ALTER ROLE {name} NOSUPERUSER NOREPLICATION NOBYPASSRLS';\n"
            "  END IF;\n"
            "END $$"
        )
        roles += [
            Statement(create, f"CREATE ROLE {name}", creates=role.name),
            _plain(f"ALTER ROLE {name} {ROLE_ATTRIBUTES}"),
            Statement(f"ALTER ROLE {name} PASSWORD {{password}}", f"ALTER ROLE {name} PASSWORD '***'", role),
        ]
    # Should a grant ever give the reader more, its sessions still refuse to write.
    roles.append(_plain(f"ALTER ROLE {reader} SET default_transaction_read_only = on"))
    # Before PostgreSQL 15 every role may create tables in public; the writer alone should.
    schema = (
        _plain("REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
        _plain(f"GRANT USAGE, CREATE ON SCHEMA public TO {writer}"),
    )
    catalog = _ident(layout.catalog_database)
    steps = [
        Step(None, "roles", tuple(roles)),
        Step(
            layout.catalog_database,
            "the Iceberg catalog: the writer creates and writes its tables, the reader reads every table",
            (
                # CONNECT is PUBLIC's by default; granted anyway, so a server that revoked it still works.
                _plain(f"GRANT CONNECT ON DATABASE {catalog} TO {writer}, {reader}"),
                *schema,
                _plain(f"GRANT USAGE ON SCHEMA public TO {reader}"),
                _plain(f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}"),
                _plain(f"ALTER DEFAULT PRIVILEGES FOR ROLE {writer} GRANT SELECT ON TABLES TO {reader}"),
            ),
        ),
    ]
    if layout.dagster_database is not None:
        dagster = _ident(layout.dagster_database)
        steps.append(
            Step(
                layout.dagster_database,
                "Dagster's storage: the writer creates and writes its tables, the reader gets nothing",
                (_plain(f"GRANT CONNECT ON DATABASE {dagster} TO {writer}"), *schema),
            )
        )
    return steps


def apply(
    admin_url: str,
    layout: Layout,
    *,
    environ: Mapping[str, str] = os.environ,
    dry_run: bool = False,
    echo: Callable[[str], None] = print,
) -> None:
    """Run :func:`plan` on the server at ``admin_url`` (a libpq or SQLAlchemy PostgreSQL URL of a superuser; its
    password may come from PGPASSWORD or ~/.pgpass), each database's statements in one transaction, printing
    each statement.

    Passwords are read from the variables the roles name and sent as SCRAM-SHA-256 verifiers, as psql's
    ``\\password`` does, so no clear-text password reaches the server or its statement log.

    Raises:
        ConfigError: a password variable is unset or empty, or a password is not ASCII.
        psycopg2.Error: the server refused a statement (the message says which and why); that database's
            statements are rolled back, those of the steps before stay.
    """
    verifiers = {role: scram_sha_256(_password(role, environ)) for role in (layout.writer, layout.reader)}
    dsn = re.sub(r"^postgres(ql)?\+\w+://", "postgresql://", admin_url)  # SQLAlchemy's driver suffix
    echo(f"{'would run' if dry_run else 'running'} on {redact(admin_url)}:")
    for step in plan(layout):
        echo(f"{step.database or 'server'}: {step.purpose}")
        keywords = {"dbname": step.database} if step.database else {}
        # `with connection` is one transaction: committed at the end of the block, rolled back on an error.
        with (
            contextlib.closing(psycopg2.connect(dsn, **keywords)) as connection,
            connection,
            connection.cursor() as cursor,
        ):
            for statement in step.statements:
                echo(f"  {_outcome(cursor, statement, dry_run)}")
                if dry_run:
                    continue
                if statement.password_of is None:
                    cursor.execute(statement.sql)
                else:
                    cursor.execute(statement.sql.format(password="%s"), (verifiers[statement.password_of],))


def _outcome(cursor: Any, statement: Statement, dry_run: bool) -> str:
    """The line printed for ``statement``: what it does (would do), without passwords."""
    if statement.password_of is not None:
        return f"{statement.shown} (from {statement.password_of.password_variable})"
    if statement.creates is None:
        return statement.shown
    cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (statement.creates,))
    if cursor.fetchone():
        return f"{statement.shown}: exists, kept"
    return f"{statement.shown}: {'would create' if dry_run else 'created'}"


def init_script(layout: Layout | None = None) -> str:
    """``docker/postgres-init.sql``: :func:`plan` for psql, run by the postgres image's entrypoint as the
    superuser, connected to the database it created from POSTGRES_DB (Dagster's). Creates the catalog's
    database first; takes the passwords from the container's environment."""
    layout = layout or Layout()
    lines = [
        "-- Generated from analytics_platform/security/roles.py (init_script) by `make docs`: edit it there.",
        "-- tests/security/test_roles.py checks that this file is current.",
        "--",
        "-- The postgres service runs this once, on an empty data volume, as POSTGRES_USER connected to",
        "-- POSTGRES_DB (Dagster's run, event and schedule storage). It creates the database of the Iceberg",
        "-- SQL catalog, the role every platform service connects as and a read-only one for BI tools, with",
        "-- the passwords from the container's environment. `analytics-platform db roles create` runs the",
        "-- same statements on any server (docs/security.md#database-roles).",
        "",
        f"CREATE DATABASE {_ident(layout.catalog_database)};",
        "",
    ]
    for role in (layout.writer, layout.reader):
        variable = role.password_variable.lower()
        lines += [
            f"\\getenv {variable} {role.password_variable}",
            f"\\if :{{?{variable}}}",
            "\\else",
            f"DO $$ BEGIN RAISE EXCEPTION 'set {role.password_variable}: the password of role {role.name} "
            "(see .env.example)'; END $$;",
            "\\endif",
        ]
    for step in plan(layout):
        lines += ["", f"-- {step.database or 'server'}: {step.purpose}"]
        if step.database is not None:
            lines.append(f"\\connect {_ident(step.database)}")
        for statement in step.statements:
            sql = statement.sql
            if statement.password_of is not None:
                sql = sql.format(password=f":'{statement.password_of.password_variable.lower()}'")
            lines.append(f"{sql};")
    return "\n".join(lines) + "\n"


def scram_sha_256(password: str, *, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802 and 7677; libpq's
    ``PQencryptPasswordConn``). ASCII only: SASLprep leaves ASCII as it is, so no normalisation is needed.

    Raises:
        ConfigError: the password is not ASCII.
    """
    if not password.isascii():
        raise ConfigError("a database password must be ASCII (it also goes into connection URLs)")
    salt = os.urandom(16) if salt is None else salt
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    return f"SCRAM-SHA-256${iterations}:{_b64(salt)}${_b64(stored_key)}:{_b64(server_key)}"


def _password(role: Role, environ: Mapping[str, str]) -> str:
    password = environ.get(role.password_variable, "")
    if not password:
        raise ConfigError(
            f"{role.password_variable} is not set: it holds the password of role {role.name} (see .env.example); "
            "set it, or name another variable with --writer-password-env / --reader-password-env"
        )
    return password


def _plain(sql: str) -> Statement:
    return Statement(sql, sql)


def _ident(name: str) -> str:
    """A quoted SQL identifier (database names may hold anything; quoting also keeps case)."""
    return '"' + name.replace('"', '""') + '"'


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
