"""SET LOCAL tenancy behind a connection pool: two tenants interleaved on the same pooled
connections, as an application role that row-level security applies to, never see each other;
and the memory calls (remember's lock, batches, words, expiry) as that role."""

import threading
from datetime import timedelta
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
                    _, created = Memory(conn, embed).remember(f"concurrent fact {i}", key=f"k{i}")
                    assert created
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


def test_one_fact_told_at_once_on_three_connections_is_one_memory(pool):
    """remember holds a lock per tenant until the transaction ends: the second and third tellers
    wait, then find the first's memory (by the key derived from the content) and reinforce it."""
    t = uuid.uuid4()
    ready = threading.Barrier(3)
    results, failures = [], []

    def tell():
        try:
            with tenant(pool, t) as conn:
                ready.wait(timeout=5)
                results.append(Memory(conn, embed).remember("The bakery opens at seven", {"teller": threading.get_ident()}))
        except Exception as e:
            failures.append(e)

    threads = [threading.Thread(target=tell) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert failures == []
    assert sorted(created for _, created in results) == [False, False, True]
    assert len({node_id for node_id, _ in results}) == 1
    with tenant(pool, t) as conn:
        assert conn.execute("SELECT count(*) FROM fractality.nodes").fetchone()[0] == 1
        # the two later tellings reinforced it: two stream points, energy capped at 1
        assert conn.execute("SELECT count(*), max(atp_level) FROM fractality.consciousness_streams").fetchone() == (2, 1.0)


def test_batches_words_and_expiry_as_the_application_role(pool):
    with tenant(pool, uuid.uuid4()) as conn:
        memory = Memory(conn, embed)
        rows = memory.remember_many([{"content": "Carol plays the cello"},
                                     {"content": "Dave runs marathons", "node_key": "dave", "ttl": "30 days"},
                                     {"content": "Carol plays the cello", "metadata": {"heard": 2}}])
        assert [created for _, created in rows] == [True, True, False] and rows[0][0] == rows[2][0]
        assert conn.execute("SELECT count(*) FROM fractality.nodes").fetchone()[0] == 2

        # the words find what the vector alone does not: below min_similarity, matched by text
        assert memory.recall("Which sport?", k=1, min_similarity=0.5) == []
        [hit] = memory.recall("Which sport?", k=1, words="marathons", min_similarity=0.5)
        assert (hit.key, hit.content) == ("dave", "Dave runs marathons")
        assert hit.similarity < 0.5 and hit.text_rank > 0

        node_id, _ = memory.remember("The library closes at noon", ttl=timedelta(hours=1))
        assert conn.execute("SELECT expires_at - now() FROM fractality.nodes WHERE id = %s", (node_id,)).fetchone()[0] \
            == timedelta(hours=1)
        assert memory.recall("The library closes at noon", k=1)[0].node_id == node_id
        conn.execute("UPDATE fractality.nodes SET expires_at = now() - interval '1 second' WHERE id = %s", (node_id,))
        assert node_id not in {m.node_id for m in memory.recall("The library closes at noon", k=5)}  # expired


def test_sleep_without_a_tenant_is_refused_and_decays_nothing(db, pool):
    """apply_consciousness_decay given NULL decays every tenant's memories: Memory.sleep on a
    connection without a tenant raises instead of passing NULL on."""
    user = uuid.uuid4()
    with tenant(pool, user) as conn:
        node_id, _ = Memory(conn, embed).remember("The kettle is on", key="kettle")
    with psycopg.connect(db, autocommit=True) as owner:
        register_vector(owner)
        with pytest.raises(ValueError, match="needs a tenant"):
            Memory(owner, embed).sleep(0.5)
        atp = owner.execute("SELECT atp FROM fractality.nodes WHERE id = %s", (node_id,)).fetchone()[0]
    assert atp == pytest.approx(1.0)


def test_memory_of_another_model(db, pool):
    """Memory(conn, embed, model=...) stores and recalls embeddings of that model."""
    with psycopg.connect(db, autocommit=True) as owner:
        owner.execute("SELECT fractality.register_model('py_m4', 4)")
    axis = {"north": [1.0, 0.0, 0.0, 0.0], "east": [0.0, 1.0, 0.0, 0.0]}
    with tenant(pool, uuid.uuid4()) as conn:
        memory = Memory(conn, lambda text: axis[text.split()[-1]], model="py_m4")
        memory.remember("the wind blows from the north", key="wind")
        memory.remember("the sun rises in the east", key="sun")
        [best] = memory.recall("which way is north", k=1)
        assert best.key == "wind"
        assert best.similarity == pytest.approx(1.0)
        dims = conn.execute("""SELECT DISTINCT fractality.vector_dims_native(embedding)
                                 FROM fractality.node_embeddings WHERE model = 'py_m4'""").fetchall()
        assert dims == [(4,)]


def test_reinforce_and_energy_keep_to_the_tenant_on_the_owners_connection(db):
    """The owner's connection is not limited by row-level security: Memory's calls by id keep to
    the tenant themselves, refusing another tenant's memory (and feeding nothing) as an
    application role's connection would."""
    a, b = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(db, autocommit=True) as owner:
        register_vector(owner)
        with owner.transaction():
            owner.execute("SELECT set_config('fractality.user_id', %s, true)", (str(b),))
            theirs, _ = Memory(owner, embed).remember("B's secret is the garden gate", key="secret")
        with owner.transaction():
            owner.execute("SELECT set_config('fractality.user_id', %s, true)", (str(a),))
            memory = Memory(owner, embed)
            mine, _ = memory.remember("A keeps the spare key under the mat", key="key")
            with pytest.raises(LookupError, match=str(theirs)):
                memory.reinforce([mine, theirs], 0.1)
            with pytest.raises(LookupError, match=str(theirs)):
                memory.energy(theirs)
            assert memory.energy(mine) == pytest.approx(1.0, abs=1e-3)
            assert memory.forget(key="key")
            with pytest.raises(LookupError, match=str(mine)):
                memory.energy(mine)
        points = owner.execute("SELECT count(*) FROM fractality.consciousness_streams WHERE node_id = %s",
                               (theirs,)).fetchone()[0]
    assert points == 0  # nothing fed to B's memory, not even by the refused batch's first id


def test_in_tenant_refuses_no_attempt(pool):
    from memory import in_tenant
    ran = []
    with pytest.raises(ValueError, match="at least 1"):
        in_tenant(pool, uuid.uuid4(), ran.append, attempts=0)
    assert ran == []


def test_texts_without_ascii_words_are_different_memories(pool):
    """The example's embedding reads words of any script, and a text of stop words or punctuation
    alone by its own content: such texts are not taken for one memory."""
    with tenant(pool, uuid.uuid4()) as conn:
        memory = Memory(conn, embed)
        created = [memory.remember(text)[1] for text in
                   ["東京は日本の首都です", "パリはフランスの首都です", "Who are you?", "What is it?", "!!", "??",
                    "café", "cafard"]]
        assert created == [True] * 8
        assert memory.recall("東京は日本の首都です", k=1)[0].content == "東京は日本の首都です"
