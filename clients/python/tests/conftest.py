"""Shared set-up: each test module gets a database of its own with the extension, on the server
named by FRACTALITY_TEST_URL (libpq conninfo or URL; scripts/test.sh starts that server)."""

import os

import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg import sql
from psycopg.conninfo import make_conninfo

ADMIN = os.environ.get("FRACTALITY_TEST_URL", "host=localhost port=54331 user=postgres dbname=postgres")


def conninfo(dbname: str, user: str = "postgres") -> str:
    return make_conninfo(ADMIN, dbname=dbname, user=user)


@pytest.fixture(scope="module")
def db(request) -> str:
    """The conninfo (as postgres) of a fresh database for this module, fractality created in it."""
    name = "fractality_py_" + request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(conninfo(name), autocommit=True) as c:
        c.execute("CREATE EXTENSION fractality CASCADE")
    yield conninfo(name)
    with psycopg.connect(ADMIN, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def conn(db):
    """An autocommit superuser connection to the module's database, pgvector's types registered."""
    with psycopg.connect(db, autocommit=True) as c:
        register_vector(c)
        yield c


def app_role(db: str, role: str) -> str:
    """A LOGIN role that is neither superuser, owner nor BYPASSRLS, granted what the examples need
    (the README's table grants; its sequence grant is for save_policy and the like, which they
    do not call); returns its conninfo for the module's database."""
    with psycopg.connect(db, autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            c.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        c.execute(sql.SQL("GRANT USAGE ON SCHEMA fractality TO {0};"
                          "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA fractality TO {0}"
                          ).format(sql.Identifier(role)))
        dbname = c.info.dbname
    return conninfo(dbname, role)
