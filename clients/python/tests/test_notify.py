"""LISTEN consciousness_update from Python: each change of a memory arrives once committed, with
the documented payload (node_id, node_key, user_id, atp, action)."""

import json
import uuid

import psycopg
import pytest
from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

from embedding import embed
from memory import Memory, tenant


def test_memory_changes_are_announced_with_their_payload(db):
    user = uuid.uuid4()
    with psycopg.connect(db, autocommit=True) as listener, \
         ConnectionPool(db, min_size=1, max_size=2, kwargs={"autocommit": True},
                        configure=register_vector, open=True) as pool:
        listener.execute("LISTEN consciousness_update")
        with tenant(pool, user) as conn:  # three transactions: remember, reinforce, forget
            node_id, _ = Memory(conn, embed).remember("The tide comes in twice a day", importance=0.4)
            key = conn.execute("SELECT node_key FROM fractality.nodes WHERE id = %s", (node_id,)).fetchone()[0]
        with tenant(pool, user) as conn:
            energy = Memory(conn, embed).reinforce([node_id], 0.25)[node_id]
        with tenant(pool, user) as conn:
            assert Memory(conn, embed).forget(key=key)
        received = list(listener.notifies(timeout=2.0, stop_after=3))
    assert {n.channel for n in received} == {"consciousness_update"}
    mine = [json.loads(n.payload) for n in received]
    assert [p["action"] for p in mine] == ["INSERT", "UPDATE", "DELETE"]
    for p in mine:
        assert set(p) == {"node_id", "node_key", "user_id", "atp", "action"}
        assert (p["node_id"], p["node_key"], p["user_id"]) == (str(node_id), key, str(user))
    assert mine[0]["atp"] == pytest.approx(0.4)
    assert mine[1]["atp"] == pytest.approx(energy)
    assert energy == pytest.approx(0.65, abs=1e-3)  # 0.4 plus 0.25, a fraction of a second of decay


def test_the_insert_payload(db):
    user = uuid.uuid4()
    with psycopg.connect(db, autocommit=True) as listener, psycopg.connect(db, autocommit=True) as writer:
        listener.execute("LISTEN consciousness_update")
        writer.execute("SELECT set_config('fractality.user_id', %s, false)", (str(user),))
        node_id = writer.execute("SELECT fractality.upsert_node('spark', 'a spark', '{}', 0.75)").fetchone()[0]
        n = next(listener.notifies(timeout=2.0))
        assert n.channel == "consciousness_update" and n.pid == writer.info.backend_pid
    assert json.loads(n.payload) == {"node_id": str(node_id), "node_key": "spark", "user_id": str(user),
                                     "atp": 0.75, "action": "INSERT"}
