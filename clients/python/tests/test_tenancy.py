"""SET LOCAL tenancy behind a connection pool: two tenants interleaved on the same pooled
connections, as an application role that row-level security applies to, never see each other."""

import threading
import uuid

import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from conftest import app_role
from embedding import embed
from memory import Memory, tenant

ROLE = "fractality_py_app"
TENANT_TABLES = ["nodes", "node_embeddings", "edges", "consciousness_streams", "node_energy"]


@pytest.fixture(scope="module")
def app_url(db):
    return app_role(db, ROLE)


@pytest.fixture
def pool(app_url):
    # three connections: two tenants taking turns on two would each keep getting the same one
    with ConnectionPool(app_url, min_size=3, max_size=3, kwargs={"autocommit": True},
                        configure=register_vector, open=True) as p:
        p.wait()
        yield p


def test_the_application_role_is_subject_to_row_level_security(app_url):
    with psycopg.connect(app_url) as c:
        row = c.execute("""SELECT r.rolsuper, r.rolbypassrls, t.tableowner = current_user
                             FROM pg_roles r, pg_tables t
                            WHERE r.rolname = current_user AND t.schemaname = 'fractality' AND t.tablename = 'nodes'""").fetchone()
        assert row == (False, False, False)


def visible(conn) -> dict[str, set]:
    return {t: {r[0] for r in conn.execute(f"SELECT DISTINCT user_id FROM fractality.{t}")} for t in TENANT_TABLES}


def test_two_tenants_interleaved_on_the_same_pooled_connections(pool):
    a, b = uuid.uuid4(), uuid.uuid4()
    pids = {a: set(), b: set()}
    ids = {a: set(), b: set()}
    for i in range(5):
        for t in (a, b):  # a, b, a, b, ...: each transaction borrows whichever connection is free
            with tenant(pool, t) as conn:
                pids[t].add(conn.info.backend_pid)
                memory = Memory(conn, embed)
                # the same keys and contents in both tenants
                node_id, created = memory.remember(f"shared fact number {i}", key=f"fact-{i}")
                assert created
                ids[t].add(node_id)
                memory.reinforce([node_id], 0.1)  # a stream point
                if i:
                    memory.link("fact-0", f"fact-{i}")
                expected = {table: {t} for table in TENANT_TABLES}
                expected["edges"] = {t} if i else set()  # the first fact has no edge yet
                assert visible(conn) == expected
                assert conn.execute("SELECT count(*) FROM fractality.nodes").fetchone()[0] == i + 1
    assert pids[a] & pids[b], "some pooled connection must have served both tenants"

    for t, other in ((a, b), (b, a)):
        with tenant(pool, t) as conn:
            memory = Memory(conn, embed)
            assert {m.node_id for m in memory.recall("shared fact", k=50, words="shared fact")} == ids[t]
            found = {r[0] for r in conn.execute("SELECT node_id FROM fractality.search_nodes('shared fact', 50)")}
            assert found == ids[t]
            resonant = {r[0] for r in conn.execute("SELECT node_id FROM fractality.find_resonant('fact-0'::text, 0.0, 50)")}
            assert resonant == ids[t] - {conn.execute("SELECT id FROM fractality.nodes WHERE node_key = 'fact-0'").fetchone()[0]}
            assert len(memory.walk("fact-0")) == 5
            for node_id in ids[other]:  # the other tenant's nodes do not exist for this one
                with pytest.raises(psycopg.errors.NoDataFound), conn.transaction():
                    conn.execute("SELECT fractality.pulse(%s, 0.1)", (node_id,))

    # forgetting is per tenant too: a's fact-1 goes, b's (same key, same content) stays
    with tenant(pool, a) as conn:
        assert Memory(conn, embed).forget(key="fact-1")
    with tenant(pool, b) as conn:
        assert conn.execute("SELECT count(*) FROM fractality.nodes WHERE node_key = 'fact-1'").fetchone()[0] == 1

    # between transactions the setting is gone: a borrower with no tenant sees nothing
    for _ in range(2):
        with pool.connection() as conn:
            assert conn.execute("SELECT current_setting('fractality.user_id', true)").fetchone()[0] in (None, "")
            assert visible(conn) == {table: set() for table in TENANT_TABLES}


def test_concurrent_tenants_share_a_pool(pool):
    tenants = [uuid.uuid4() for _ in range(3)]
    failures = []

    def work(t: uuid.UUID):
        try:
            for i in range(15):
                with tenant(pool, t) as conn:
                    conn.execute("SELECT fractality.upsert_node(%s)", (f"k{i}",))
                    seen = conn.execute("SELECT user_id, count(*) FROM fractality.nodes GROUP BY user_id").fetchall()
                    assert seen == [(t, i + 1)], seen
        except Exception as e:  # reported by the main thread
            failures.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in tenants]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert failures == []
