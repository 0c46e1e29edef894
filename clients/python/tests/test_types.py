"""fractality's types through psycopg's own adaptation: vector, uuid[], bytea, jsonb, real[]."""

import json
import random
import uuid
from array import array
from datetime import timedelta

import pytest
from pgvector import Vector
from psycopg.types.json import Jsonb

TENANT = uuid.UUID("a11ce000-0000-4000-8000-00000000000a")


def float32s(n: int, seed: int, embedding: bool = False) -> list[float]:
    """n float32 values (as Python floats) of every magnitude, extremes included; for an
    `embedding`, of magnitudes whose squares sum within single precision (fractality refuses
    others: pgvector compares vectors in single precision), the largest float32 left out."""
    rng = random.Random(seed)
    top, largest = (15, 1e15) if embedding else (30, 3.4028234663852886e38)
    values = [rng.uniform(-1, 1) * 10 ** rng.randint(-30, top) for _ in range(n - 4)]
    values += [largest, -1.401298464324817e-45, 1 / 3, 0.1]  # max, min subnormal
    return array("f", values).tolist()


def set_tenant(conn, user_id=TENANT):
    conn.execute("SELECT set_config('fractality.user_id', %s, false)", (str(user_id),))


@pytest.mark.parametrize("param", ["%t", "%b"], ids=["send-text", "send-binary"])
@pytest.mark.parametrize("binary", [False, True], ids=["read-text", "read-binary"])
def test_vector_round_trips_exactly(conn, param, binary):
    values = float32s(384, seed=1)
    with conn.cursor(binary=binary) as cur:
        got = cur.execute(f"SELECT {param}::vector", (Vector(values),)).fetchone()[0]
    assert isinstance(got, Vector)
    assert got.to_list() == values  # bit for bit: every value is a float32 to begin with


def test_embedding_stored_by_upsert_node_comes_back_exactly(conn):
    set_tenant(conn)
    values = float32s(384, seed=2, embedding=True)
    node_id = conn.execute("SELECT fractality.upsert_node('vec', 'a vector', '{}', NULL, %s)",
                           (Vector(values),)).fetchone()[0]
    assert isinstance(node_id, uuid.UUID)
    stored = conn.execute("SELECT embedding FROM fractality.node_embeddings WHERE node_id = %s",
                          (node_id,)).fetchone()[0]
    assert stored.to_list() == values
    thawed = conn.execute("SELECT fractality.thaw('vec')").fetchone()[0]  # jsonb -> dict
    assert thawed["id"] == str(node_id)
    assert array("f", thawed["embedding"]).tolist() == values  # shortest float32 digits in JSON


def test_traverse_paths_decode_to_lists_of_uuids(conn):
    set_tenant(conn, uuid.uuid4())
    ids = {k: conn.execute("SELECT fractality.upsert_node(%s)", (k,)).fetchone()[0]
           for k in ("mind", "memory", "dream", "river")}
    for a, b, w in [("mind", "memory", 0.9), ("mind", "dream", 0.6), ("dream", "river", 0.8)]:
        conn.execute("SELECT fractality.link(%s, %s, 'child', %s)", (a, b, w))
    rows = conn.execute("SELECT node_key, depth, path, accumulated_weight FROM fractality.traverse(%s)",
                        (ids["mind"],)).fetchall()
    by_key = {key: (depth, path, weight) for key, depth, path, weight in rows}
    assert set(by_key) == set(ids)
    depth, path, weight = by_key["river"]
    assert depth == 2
    assert path == [ids["mind"], ids["dream"], ids["river"]]
    assert all(isinstance(p, uuid.UUID) for p in path)
    assert weight == pytest.approx(0.6 * 0.8)
    assert by_key["mind"][1] == [ids["mind"]]
    # and a uuid[] parameter: a Python list of UUIDs
    keys = conn.execute("SELECT array_agg(node_key ORDER BY node_key) FROM fractality.nodes WHERE id = ANY(%s)",
                        ([ids["memory"], ids["river"]],)).fetchone()[0]
    assert keys == ["memory", "river"]


def event(event_id: bytes, ts: int, step: int, goal: float, **extra) -> dict:
    e = {"event_id": event_id.hex(), "timestamp": ts, "episode_id": 42, "step_number": step,
         "event_type": 1, "flags": 0, "reward_goal": goal, "reward_curiosity": 0.25,
         "adna_version_hash": 7, "sequence_number": step, **extra}
    for k in range(1, 9):
        e[f"state_l{k}"] = k / 8
        e[f"action_l{k}"] = -k / 16
    return e


def test_bytea_ids_and_json_batches_survive_write_events_json(conn):
    base = 1_000_000
    ids = [uuid.uuid4().bytes for _ in range(5)]
    meta = {"intent_type": "recall", "executor_id": "pytest",
            "parameters": {"query": "it's \"quoted\"", "k": 3, "nested": [1.5, None, True]}}
    batch = [event(i, base + n, n, goal=n / 2, **({"metadata": meta} if n == 0 else {}))
             for n, i in enumerate(ids)]
    written = conn.execute("SELECT fractality.write_events_json(%s::text)", (json.dumps(batch),)).fetchone()[0]
    assert written == 5
    rows = conn.execute(
        """SELECT event_id, state, action, total_reward, intent_type, parameters
             FROM fractality.query_events(%s, %s, 100, true)""", (base, base + 5)).fetchall()
    assert [r[0] for r in rows] == ids  # bytea -> bytes, oldest first
    assert all(isinstance(r[0], bytes) and len(r[0]) == 16 for r in rows)
    assert rows[0][1] == [k / 8 for k in range(1, 9)]  # real[] -> list of float (exact in float32)
    assert rows[0][2] == [-k / 16 for k in range(1, 9)]
    assert [r[3] for r in rows] == pytest.approx([0.25 + n / 2 for n in range(5)])
    assert rows[0][4] == "recall" and rows[0][5] == meta["parameters"]  # jsonb -> dict
    assert rows[1][4] is None

    # the json overload too, and a bytea parameter going the other way
    more = [event(uuid.uuid4().bytes, base + 10, 0, goal=1.0)]
    assert conn.execute("SELECT fractality.write_events_json(%s::json)", (json.dumps(more),)).fetchone()[0] == 1
    one = uuid.uuid4().bytes
    conn.execute("""SELECT fractality.write_event(%s, %s, 43, 0, 1::int2, 0::int2, %s::real[], %s::real[], 7, 0,
                                                  reward_goal => 0.5, metadata => %s)""",
                 (one, base + 20, [0.5] * 8, [0.0] * 8, Jsonb(meta)))
    got = conn.execute("SELECT event_id, parameters FROM fractality.query_events(%s, %s, 10, true)",
                       (base + 20, base + 21)).fetchone()
    assert got == (one, meta["parameters"])

    steps, total, discounted = conn.execute(
        "SELECT steps, total, discounted FROM fractality.episode_returns(%s, %s, 0.5) WHERE episode_id = 42",
        (base, base + 5)).fetchone()
    assert steps == 5
    assert total == pytest.approx(sum(0.25 + n / 2 for n in range(5)))
    assert discounted == pytest.approx(sum((0.25 + n / 2) * 0.5 ** n for n in range(5)))

    # a replay buffer over them (backfilled): bytea ids out of a sample, a bytea[] back in
    conn.execute("SELECT fractality.create_replay_buffer('types', backfill => true)")
    sample = conn.execute("SELECT event_id, priority, weight FROM fractality.sample_experiences('types', 50, seed => 3)").fetchall()
    assert len(sample) == 50
    stored = {r[0] for r in conn.execute("SELECT event_id FROM fractality.experience_events")}
    assert {r[0] for r in sample} == stored  # 50 draws from 7 items: every one drawn
    assert all(r[1] == 1.0 and r[2] == pytest.approx(1.0) for r in sample)
    assert conn.execute("SELECT fractality.update_priorities('types', %s, %s)",
                        ([ids[0], one], [3.0, 0.0])).fetchone()[0] == 2
    priorities = dict(conn.execute("SELECT event_id, priority FROM fractality.replay_priorities"))
    assert priorities[ids[0]] == pytest.approx(3.0 + 1e-6) and priorities[one] == pytest.approx(1e-6)
    weights = dict(conn.execute("SELECT event_id, weight FROM fractality.sample_experiences('types', 200, seed => 4)"))
    assert weights[ids[0]] < weights[ids[1]] < 1 + 1e-12  # drawn more often, weighted less


def test_memories_through_remember_many_and_recall(conn):
    set_tenant(conn, uuid.uuid4())
    values = [float32s(384, seed=5, embedding=True)]
    values.append(values[0][::-1])  # another direction (the largest component elsewhere)
    facts = [{"content": "a fact with every magnitude", "embedding": values[0], "metadata": {"n": [1, 2.5, None]}},
             {"content": "another one", "embedding": values[1], "node_key": "other", "ttl": "2 days"},
             {"content": "another one, told again", "embedding": values[1]}]  # similarity 1: the same memory
    rows = conn.execute("SELECT node_id, created FROM fractality.remember_many(%s)", (Jsonb(facts),)).fetchall()
    assert [r[1] for r in rows] == [True, True, False]
    assert rows[1][0] == rows[2][0] and all(isinstance(r[0], uuid.UUID) for r in rows)
    stored = conn.execute("SELECT embedding FROM fractality.node_embeddings WHERE node_id = %s", (rows[0][0],)).fetchone()[0]
    assert stored.to_list() == values[0]  # JSON numbers: the same float32 values
    recalled = conn.execute(
        "SELECT node_id, node_key, content, metadata, similarity, text_rank, atp, edge_weight, score FROM fractality.recall(%s, 2, min_similarity => -1)",
        (Vector(values[0]),)).fetchall()
    node_id, key, content, metadata, similarity, text_rank, atp, edge, score = recalled[0]
    assert (node_id, content, metadata) == (rows[0][0], "a fact with every magnitude", {"n": [1, 2.5, None]})  # jsonb -> dict
    assert key.startswith("memory-") and len(key) == 7 + 32
    assert similarity == pytest.approx(1.0) and text_rank is None and edge == 0.0
    assert score == pytest.approx(0.5 * similarity + 0.3 * atp)
    assert recalled[1][1] == "other" and recalled[1][3] == {}
    # metadata merged and the expiry kept: the telling again had no ttl of its own
    # (compared in SQL: under a session time zone with summer time, two days may be 47 or 49 hours)
    two_days, ttl = conn.execute(
        "SELECT expires_at = created_at + interval '2 days', interval '2 days' FROM fractality.nodes WHERE node_key = 'other'").fetchone()
    assert two_days and ttl == timedelta(days=2)  # interval -> timedelta
