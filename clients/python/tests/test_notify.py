"""LISTEN consciousness_update from Python: each change of a memory arrives once committed, with
the documented payload (node_id, node_key, tenant, atp, action): the tenant as the md5 of its id,
never the id, which a session sets to act as the tenant."""

import hashlib
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
         ConnectionPool(db, min_size=1, max_size=2,
                        # off by default (any session may LISTEN): the writers turn it on
                        kwargs={"autocommit": True, "options": "-c fractality.notify=on"},
                        configure=register_vector, open=True) as pool:
        listener.execute("LISTEN consciousness_update")
        # five transactions: remember, told again, a night, reinforce, forget
        with tenant(pool, user) as conn:
            node_id, created = Memory(conn, embed).remember("The tide comes in twice a day", key="tide")
            assert created
        with tenant(pool, user) as conn:
            assert Memory(conn, embed).remember("The tide comes in twice a day", key="tide") == (node_id, False)
        with tenant(pool, user) as conn:
            assert Memory(conn, embed).sleep(0.5) == 1
        with tenant(pool, user) as conn:
            energy = Memory(conn, embed).reinforce([node_id], 0.25)[node_id]
        with tenant(pool, user) as conn:
            assert Memory(conn, embed).forget(key="tide")
        received = list(listener.notifies(timeout=2.0, stop_after=5))
    assert {n.channel for n in received} == {"consciousness_update"}
    mine = [json.loads(n.payload) for n in received]
    assert [p["action"] for p in mine] == ["INSERT", "UPDATE", "DECAY", "UPDATE", "DELETE"]
    digest = hashlib.md5(str(user).encode()).hexdigest()
    for p in mine[:2] + mine[3:]:  # one per row changed
        assert set(p) == {"node_id", "node_key", "tenant", "atp", "action"}
        assert (p["node_id"], p["node_key"], p["tenant"]) == (str(node_id), "tide", digest)
    assert mine[2] == {"action": "DECAY", "rows": 1, "tenant": digest}  # a decay tick: one summary
    assert all(str(user) not in json.dumps(p) for p in mine)
    assert mine[0]["atp"] == 1.0  # a new memory starts at full energy
    assert mine[1]["atp"] == pytest.approx(1.0)  # told again: + 0.1, capped at 1
    assert mine[3]["atp"] == pytest.approx(energy)
    assert energy == pytest.approx(0.75, abs=1e-3)  # halved, plus 0.25 (a fraction of a second of decay)
    assert mine[4]["atp"] == pytest.approx(energy)


def test_the_insert_payload(db):
    user = uuid.uuid4()
    with psycopg.connect(db, autocommit=True) as listener, \
         psycopg.connect(db, autocommit=True, options="-c fractality.notify=on") as writer:
        listener.execute("LISTEN consciousness_update")
        writer.execute("SELECT set_config('fractality.user_id', %s, false)", (str(user),))
        node_id = writer.execute("SELECT fractality.upsert_node('spark', 'a spark', '{}', 0.75)").fetchone()[0]
        n = next(listener.notifies(timeout=2.0))
        assert n.channel == "consciousness_update" and n.pid == writer.info.backend_pid
    assert json.loads(n.payload) == {"node_id": str(node_id), "node_key": "spark",
                                     "tenant": hashlib.md5(str(user).encode()).hexdigest(),
                                     "atp": 0.75, "action": "INSERT"}
