-- Generated from analytics_platform/security/roles.py (init_script) by `make docs`: edit it there.
-- tests/security/test_roles.py checks that this file is current.
--
-- The postgres service runs this once, on an empty data volume, as POSTGRES_USER connected to
-- POSTGRES_DB (Dagster's run, event and schedule storage). It creates the database of the Iceberg
-- SQL catalog, the role every platform service connects as and a read-only one for BI tools, with
-- the passwords from the container's environment. `analytics-platform db roles create` runs the
-- same statements on any server (docs/security.md#database-roles).

CREATE DATABASE "iceberg";

\getenv postgres_writer_password POSTGRES_WRITER_PASSWORD
\if :{?postgres_writer_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'set POSTGRES_WRITER_PASSWORD: the password of role platform_writer (see .env.example)'; END $$;
\endif
\getenv postgres_reader_password POSTGRES_READER_PASSWORD
\if :{?postgres_reader_password}
\else
DO $$ BEGIN RAISE EXCEPTION 'set POSTGRES_READER_PASSWORD: the password of role bi_reader (see .env.example)'; END $$;
\endif

-- server: roles
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'platform_writer') THEN CREATE ROLE "platform_writer"; END IF;
  IF (SELECT rolsuper OR rolreplication OR rolbypassrls FROM pg_roles WHERE rolname = 'platform_writer') THEN
    RAISE EXCEPTION 'role platform_writer has SUPERUSER, REPLICATION or BYPASSRLS: as a superuser, run ALTER ROLE "platform_writer" NOSUPERUSER NOREPLICATION NOBYPASSRLS';
  END IF;
END $$;
ALTER ROLE "platform_writer" LOGIN NOCREATEDB NOCREATEROLE;
ALTER ROLE "platform_writer" PASSWORD :'postgres_writer_password';
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bi_reader') THEN CREATE ROLE "bi_reader"; END IF;
  IF (SELECT rolsuper OR rolreplication OR rolbypassrls FROM pg_roles WHERE rolname = 'bi_reader') THEN
    RAISE EXCEPTION 'role bi_reader has SUPERUSER, REPLICATION or BYPASSRLS: as a superuser, run ALTER ROLE "bi_reader" NOSUPERUSER NOREPLICATION NOBYPASSRLS';
  END IF;
END $$;
ALTER ROLE "bi_reader" LOGIN NOCREATEDB NOCREATEROLE;
ALTER ROLE "bi_reader" PASSWORD :'postgres_reader_password';
ALTER ROLE "bi_reader" SET default_transaction_read_only = on;

-- iceberg: the Iceberg catalog: the writer creates and writes its tables, the reader reads every table
\connect "iceberg"
GRANT CONNECT ON DATABASE "iceberg" TO "platform_writer", "bi_reader";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO "platform_writer";
GRANT USAGE ON SCHEMA public TO "bi_reader";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO "bi_reader";
ALTER DEFAULT PRIVILEGES FOR ROLE "platform_writer" GRANT SELECT ON TABLES TO "bi_reader";

-- dagster: Dagster's storage: the writer creates and writes its tables, the reader gets nothing
\connect "dagster"
GRANT CONNECT ON DATABASE "dagster" TO "platform_writer";
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO "platform_writer";
