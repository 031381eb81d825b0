"""The least-privilege roles on the machine's PostgreSQL, created both ways: by `analytics-platform db roles
create`, and by docker/postgres-init.sql's statements run with psql as the compose postgres service runs them.

Roles are cluster-wide, so each test has roles and databases of its own (unique names) and drops them after.
The server trusts every local connection: these tests check privileges, not passwords.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import psycopg2
import pyarrow as pa
import pytest
import yaml
from dagster import DagsterInstance
from psycopg2 import errors
from psycopg2.extensions import make_dsn, parse_dsn
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.schema import Schema
from pyiceberg.types import NestedField, StringType
from sqlalchemy.exc import InternalError

from analytics_platform.security.roles import Layout, Role, init_script, scram_sha_256
from tests.conftest import POSTGRES_ADMIN_DSN

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = str(Path(sys.executable).parent / "analytics-platform")
PASSWORDS = {"TEST_WRITER_PASSWORD": "writer-pw-1", "TEST_READER_PASSWORD": "reader-pw-1"}
SCHEMA = Schema(NestedField(1, "user_id", StringType(), required=False))
ROWS = pa.table({"user_id": pa.array(["u1"], pa.string())})


@dataclass(frozen=True)
class Cluster:
    """One test's roles and databases on the machine's server."""

    layout: Layout

    @property
    def writer(self) -> str:
        return self.layout.writer.name

    @property
    def reader(self) -> str:
        return self.layout.reader.name

    @property
    def catalog(self) -> str:
        return self.layout.catalog_database

    @property
    def dagster(self) -> str:
        return str(self.layout.dagster_database)

    def url(self, database: str, user: str | None = None, driver: str = "") -> str:
        """A URL of ``database`` as ``user`` (default: the admin), e.g. with driver ``+psycopg2`` for SQLAlchemy."""
        server = parse_dsn(POSTGRES_ADMIN_DSN)
        user = user or server.get("user", "postgres")
        return f"postgresql{driver}://{user}@{server.get('host', '127.0.0.1')}:{server.get('port', 5432)}/{database}"

    def run(self, database: str, *statements: str, user: str | None = None) -> list[tuple[object, ...]]:
        """``statements`` in one session, each committed at once; the rows of the last, if any."""
        dsn = make_dsn(POSTGRES_ADMIN_DSN, dbname=database, **({"user": user} if user else {}))
        with contextlib.closing(psycopg2.connect(dsn)) as connection:
            connection.autocommit = True
            with connection.cursor() as cursor:
                for statement in statements:
                    cursor.execute(statement)
                return cursor.fetchall() if cursor.description else []

    def refused(self, database: str, sql: str, user: str) -> str:
        """The server's reason for refusing ``sql`` to ``user`` (the test fails if it ran). The session is made
        read-write first, so that only privileges stand in the way (the reader's sessions start read-only)."""
        with pytest.raises(errors.InsufficientPrivilege) as refusal:
            self.run(database, "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE", sql, user=user)
        return str(refusal.value).splitlines()[0]

    def catalog_as(self, user: str, warehouse: Path) -> SqlCatalog:
        return SqlCatalog(
            "test", uri=self.url(self.catalog, user, "+psycopg2"), warehouse=warehouse.as_uri(), pool_pre_ping="true"
        )


def admin(sql: str) -> None:
    with contextlib.closing(psycopg2.connect(POSTGRES_ADMIN_DSN)) as connection:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(sql)


def create_roles(
    cluster: Cluster, *options: str, environment: dict[str, str] = PASSWORDS
) -> subprocess.CompletedProcess[str]:
    """``analytics-platform db roles create`` for the cluster's layout."""
    layout = cluster.layout
    command = [
        CLI, "db", "roles", "create", cluster.url("postgres", driver="+psycopg2"),
        f"--catalog-database={layout.catalog_database}",
        f"--dagster-database={layout.dagster_database}",
        f"--writer={layout.writer.name}",
        f"--reader={layout.reader.name}",
        f"--writer-password-env={layout.writer.password_variable}",
        f"--reader-password-env={layout.reader.password_variable}",
        *options,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=os.environ | environment)


def run_init_script(cluster: Cluster, environment: dict[str, str] = PASSWORDS) -> subprocess.CompletedProcess[str]:
    """The init script for the cluster's layout, as the postgres image's entrypoint runs it: psql, stop at the
    first error, connected to Dagster's database (POSTGRES_DB)."""
    dsn = make_dsn(POSTGRES_ADMIN_DSN, dbname=cluster.dagster)
    command = ["psql", "-v", "ON_ERROR_STOP=1", "--no-psqlrc", "-q", "-d", dsn]
    return subprocess.run(
        command,
        input=init_script(cluster.layout),
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ | environment,
    )


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """Unique roles and the Dagster database (the catalog's is created by the init script or the test)."""
    suffix = uuid.uuid4().hex[:10]
    layout = Layout(
        writer=Role(f"ap_writer_{suffix}", "TEST_WRITER_PASSWORD"),
        reader=Role(f"ap_reader_{suffix}", "TEST_READER_PASSWORD"),
        catalog_database=f"ap_test_{suffix}_iceberg",
        dagster_database=f"ap_test_{suffix}_dagster",
    )
    admin(f'CREATE DATABASE "{layout.dagster_database}"')
    try:
        yield Cluster(layout)
    finally:
        for database in (layout.catalog_database, layout.dagster_database):
            admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'")
            admin(f'DROP DATABASE IF EXISTS "{database}"')
        for role in (layout.writer.name, layout.reader.name):
            admin(f'DROP ROLE IF EXISTS "{role}"')


@pytest.fixture(params=["cli", "psql"])
def roles(request: pytest.FixtureRequest, cluster: Cluster) -> Cluster:
    """The roles, created by the CLI or by the init script."""
    if request.param == "cli":
        admin(f'CREATE DATABASE "{cluster.catalog}"')
        created = create_roles(cluster)
    else:
        created = run_init_script(cluster)
    assert created.returncode == 0, created.stderr
    return cluster


def test_init_script_is_current() -> None:
    assert (REPO_ROOT / "docker" / "postgres-init.sql").read_text() == init_script(), (
        "docker/postgres-init.sql is stale: run `make docs`"
    )


def test_roles_may_log_in_and_nothing_more(roles: Cluster) -> None:
    attributes = roles.run(
        "postgres",
        "SELECT r.rolname, r.rolcanlogin, r.rolsuper, r.rolcreatedb, r.rolcreaterole, r.rolreplication, "
        "r.rolbypassrls, a.rolpassword LIKE 'SCRAM-SHA-256$%', r.rolconfig FROM pg_roles r JOIN pg_authid a "
        f"USING (oid) WHERE r.rolname IN ('{roles.writer}', '{roles.reader}') ORDER BY r.rolname",
    )
    assert attributes == [
        (roles.reader, True, False, False, False, False, False, True, ["default_transaction_read_only=on"]),
        (roles.writer, True, False, False, False, False, False, True, None),
    ]


def test_writer_creates_and_writes_the_catalog_and_dagster_storage(roles: Cluster, tmp_path: Path) -> None:
    catalog = roles.catalog_as(roles.writer, tmp_path / "warehouse")
    catalog.create_namespace("raw")
    table = catalog.create_table("raw.visit", SCHEMA)
    table.append(ROWS)  # a commit: an UPDATE of the catalog's row
    owners = roles.run(roles.catalog, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
    assert owners == [(roles.writer,)]

    (tmp_path / "dagster.yaml").write_text(
        yaml.safe_dump({"storage": {"postgres": {"postgres_url": roles.url(roles.dagster, roles.writer, "+psycopg2")}}})
    )
    instance = DagsterInstance.from_config(str(tmp_path))
    try:
        instance.run_storage.set_cursor_values({"probe": "1"})  # creates Dagster's tables, then writes one
        assert instance.run_storage.get_cursor_values({"probe"}) == {"probe": "1"}
    finally:
        instance.dispose()
    owners = roles.run(roles.dagster, "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
    assert owners == [(roles.writer,)]


def test_reader_reads_the_catalog_and_writes_nothing(roles: Cluster, tmp_path: Path) -> None:
    writer = roles.catalog_as(roles.writer, tmp_path / "warehouse")
    writer.create_namespace("raw")
    writer.create_table("raw.visit", SCHEMA).append(ROWS)
    roles.run(roles.catalog, "CREATE TABLE fct_daily (day date, users int)", user=roles.writer)  # a mart, if ever
    roles.run(roles.dagster, "CREATE TABLE runs_probe (id int)", user=roles.writer)

    reader = roles.catalog_as(roles.reader, tmp_path / "warehouse")
    assert reader.load_table("raw.visit").scan().to_arrow().equals(ROWS)
    assert roles.run(roles.catalog, "SELECT count(*) FROM fct_daily", user=roles.reader) == [(0,)]
    # Its sessions start read-only; made read-write, it still has no right to write.
    with pytest.raises(InternalError, match="cannot execute INSERT in a read-only transaction"):
        reader.create_namespace("sneaky")
    table = "iceberg_tables"
    refusals = [
        roles.refused(roles.catalog, "INSERT INTO fct_daily VALUES (current_date, 1)", roles.reader),
        roles.refused(roles.catalog, f"UPDATE {table} SET metadata_location = 'x'", roles.reader),
        roles.refused(roles.catalog, f"DELETE FROM {table}", roles.reader),
        roles.refused(roles.catalog, "CREATE TABLE mine (id int)", roles.reader),
        roles.refused(roles.catalog, "CREATE SCHEMA mine", roles.reader),
        roles.refused(roles.catalog, "DROP TABLE fct_daily", roles.reader),
        roles.refused(roles.dagster, "SELECT * FROM runs_probe", roles.reader),  # nothing of Dagster's
    ]
    assert refusals == [
        "permission denied for table fct_daily",
        f"permission denied for table {table}",
        f"permission denied for table {table}",
        "permission denied for schema public",
        f"permission denied for database {roles.catalog}",
        "must be owner of table fct_daily",
        "permission denied for table runs_probe",
    ]


def test_writer_cannot_touch_what_other_roles_own(roles: Cluster) -> None:
    for database in (roles.catalog, roles.dagster):
        roles.run(database, "CREATE TABLE admins_table (id int)")  # owned by the admin
    refusals = [
        roles.refused(roles.catalog, "DROP TABLE admins_table", roles.writer),
        roles.refused(roles.dagster, "DROP TABLE admins_table", roles.writer),
        roles.refused(roles.catalog, "ALTER TABLE admins_table ADD COLUMN x int", roles.writer),
        roles.refused(roles.catalog, "INSERT INTO admins_table VALUES (1)", roles.writer),
        roles.refused(roles.catalog, "DROP SCHEMA public CASCADE", roles.writer),
        roles.refused(roles.catalog, "CREATE SCHEMA mine", roles.writer),
        roles.refused("postgres", f'DROP DATABASE "{roles.dagster}"', roles.writer),
        roles.refused("postgres", f'DROP ROLE "{roles.reader}"', roles.writer),
        roles.refused("postgres", "CREATE ROLE intruder", roles.writer),
    ]
    assert refusals == [
        "must be owner of table admins_table",
        "must be owner of table admins_table",
        "must be owner of table admins_table",
        "permission denied for table admins_table",
        "must be owner of schema public",
        f"permission denied for database {roles.catalog}",
        f"must be owner of database {roles.dagster}",
        "permission denied to drop role",
        "permission denied to create role",
    ]


def test_cli_is_idempotent_and_says_what_it_did(cluster: Cluster) -> None:
    admin(f'CREATE DATABASE "{cluster.catalog}"')
    first, again = create_roles(cluster), create_roles(cluster)
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    writer, reader = f'"{cluster.writer}"', f'"{cluster.reader}"'
    assert first.stdout.splitlines()[:5] == [
        f"running on {cluster.url('postgres', driver='+psycopg2')}:",
        "server: roles",
        f"  CREATE ROLE {writer}: created",
        f"  ALTER ROLE {writer} LOGIN NOCREATEDB NOCREATEROLE",
        f"  ALTER ROLE {writer} PASSWORD '***' (from TEST_WRITER_PASSWORD)",
    ]
    assert f"  CREATE ROLE {writer}: exists, kept" in again.stdout.splitlines()
    assert f"  ALTER DEFAULT PRIVILEGES FOR ROLE {writer} GRANT SELECT ON TABLES TO {reader}" in again.stdout
    written = f"{cluster.catalog} and {cluster.dagster}"
    assert (
        again.stdout.splitlines()[-1]
        == f"done: {cluster.writer} writes {written}, {cluster.reader} reads {cluster.catalog}"
    )
    for password in PASSWORDS.values():
        assert password not in first.stdout + first.stderr


def test_dry_run_changes_nothing(cluster: Cluster) -> None:
    admin(f'CREATE DATABASE "{cluster.catalog}"')
    result = create_roles(cluster, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f'  CREATE ROLE "{cluster.writer}": would create' in result.stdout.splitlines()
    assert result.stdout.splitlines()[-1].startswith("dry run, nothing changed: ")
    assert cluster.run("postgres", f"SELECT count(*) FROM pg_roles WHERE rolname = '{cluster.writer}'") == [(0,)]


def test_a_missing_password_stops_both_ways_before_any_change(cluster: Cluster) -> None:
    admin(f'CREATE DATABASE "{cluster.catalog}"')
    without = {"TEST_WRITER_PASSWORD": PASSWORDS["TEST_WRITER_PASSWORD"]}  # the reader's is missing
    by_cli = create_roles(cluster, environment=without)
    assert by_cli.returncode == 1
    assert by_cli.stderr.strip() == (
        f"error: TEST_READER_PASSWORD is not set: it holds the password of role {cluster.reader} (see .env.example); "
        "set it, or name another variable with --writer-password-env / --reader-password-env"
    )
    admin(f'DROP DATABASE "{cluster.catalog}"')
    by_psql = run_init_script(cluster, environment=without)
    assert by_psql.returncode == 3  # psql: a statement failed with ON_ERROR_STOP
    assert f"set TEST_READER_PASSWORD: the password of role {cluster.reader} (see .env.example)" in by_psql.stderr
    assert cluster.run("postgres", f"SELECT count(*) FROM pg_roles WHERE rolname = '{cluster.writer}'") == [(0,)]


def test_an_existing_superuser_of_that_name_is_refused_not_used(cluster: Cluster) -> None:
    admin(f'CREATE DATABASE "{cluster.catalog}"')
    admin(f'CREATE ROLE "{cluster.writer}" SUPERUSER LOGIN')
    result = create_roles(cluster)
    assert result.returncode == 1
    assert f"role {cluster.writer} has SUPERUSER, REPLICATION or BYPASSRLS: as a superuser, run ALTER ROLE" in (
        result.stderr
    )


def test_password_verifier_is_the_one_libpq_makes() -> None:
    """Same salt and iterations as libpq's PQencryptPasswordConn (through psycopg 3): the same verifier."""
    with psycopg.connect(POSTGRES_ADMIN_DSN) as connection:
        verifier = connection.pgconn.encrypt_password(b"correct horse", b"anyone", b"scram-sha-256").decode()
    iterations, salt = verifier.removeprefix("SCRAM-SHA-256$").split("$")[0].split(":")
    assert scram_sha_256("correct horse", salt=base64.b64decode(salt), iterations=int(iterations)) == verifier
