"""Errors reach Python as psycopg's exception classes, with their SQLSTATE, message and hint; a
failed call writes nothing and leaves a pooled connection usable."""

import json
import uuid

import psycopg
import pytest
from pgvector import Vector
from pgvector.psycopg import register_vector
from psycopg import errors
from psycopg_pool import ConnectionPool

from memory import Memory, in_tenant, tenant

TENANT = uuid.uuid4()


def unit(i: int, dims: int = 384) -> Vector:
    return Vector([1.0 if d == i else 0.0 for d in range(dims)])


@pytest.mark.parametrize("sql, args, cls, sqlstate, words", [
    ("SELECT fractality.normalize_vector(%s)", (Vector([0.0, 0.0]),), errors.InvalidParameterValue, "22023", "zero vector"),
    ("SELECT fractality.pulse(%s, 0.1)", (uuid.UUID(int=255),), errors.NoDataFound, "P0002", "does not exist"),
    ("SELECT fractality.cosine_similarity(%s, %s)", (Vector([1.0, 2, 3]), Vector([1.0, 2])), errors.DataException, "22000", "3 and 2"),
    ("SELECT fractality.upsert_node('k', 'label', '{}', NULL, %s)", (Vector([0.5] * 3),), errors.DataException, "22000", "384"),
    ("SELECT fractality.upsert_node('k', 'label', '{}', %s)", (float("nan"),), errors.InvalidParameterValue, "22023", "NaN"),
    ("SELECT fractality.link('nowhere', 'elsewhere')", None, errors.NoDataFound, "P0002", "'nowhere'"),
    ("SELECT fractality.write_events_json(%s::text)", ('[{"event_id": ]',), errors.InvalidTextRepresentation, "22P02", "line 1 column 15"),
    ("SELECT * FROM fractality.remember(NULL, 'x', %s)", (Vector([0.5] * 3),), errors.DataException, "22000", "3 dimensions"),
    ("SELECT * FROM fractality.remember(NULL, 'x', %s, dedup_threshold => 1.5)", (unit(1),), errors.InvalidParameterValue, "22023", "dedup_threshold"),
    ("SELECT * FROM fractality.remember_many(%s)", ('[{"content": "x"}]',), errors.InvalidParameterValue, "22023", 'memory 1, field "embedding"'),
    ("SELECT * FROM fractality.recall(%s, 0)", (unit(1),), errors.InvalidParameterValue, "22023", "k: 0"),
    ("SELECT * FROM fractality.recall(%s, context => 'no-such-node')", (unit(1),), errors.NoDataFound, "P0002", "'no-such-node'"),
    ("SELECT * FROM fractality.recall(%s)", (Vector([0.0] * 384),), errors.InvalidParameterValue, "22023", "zero vector"),
    ("SELECT * FROM fractality.remember(NULL, 'x', %s, model => 'no_such_model')", (unit(1),), errors.InvalidParameterValue, "22023", "'no_such_model'"),
    ("SELECT * FROM fractality.recall(%s, model => 'no_such_model')", (unit(1),), errors.InvalidParameterValue, "22023", "'no_such_model'"),
    ("SELECT * FROM fractality.find_resonant('k', 0.7, 20, 'no_such_model')", None, errors.InvalidParameterValue, "22023", "'no_such_model'"),
    ("SELECT fractality.upsert_node('k', embedding => %s, model => 'No Model')", (unit(1),), errors.InvalidParameterValue, "22023", "'No Model'"),
    ("SELECT * FROM fractality.sample_experiences('nobuffer', 10)", None, errors.InvalidParameterValue, "22023", "'nobuffer'"),
    ("SELECT * FROM fractality.replay_batch('nobuffer', 10)", None, errors.InvalidParameterValue, "22023", "'nobuffer'"),
])
def test_errors_carry_their_sqlstate(conn, sql, args, cls, sqlstate, words):
    conn.execute("SELECT set_config('fractality.user_id', %s, false)", (str(TENANT),))
    before = conn.execute("SELECT count(*) FROM fractality.nodes").fetchone()[0]
    with pytest.raises(cls) as e:
        conn.execute(sql, args)
    assert e.value.sqlstate == sqlstate
    assert words in e.value.diag.message_primary
    assert e.value.diag.message_hint  # every user-facing error has a hint
    assert conn.execute("SELECT count(*) FROM fractality.nodes").fetchone()[0] == before


@pytest.mark.parametrize("call", ["SELECT fractality.upsert_node('k')",
                                  "SELECT * FROM fractality.remember('k', 'x', %s)",
                                  "SELECT * FROM fractality.recall(%s)"])
def test_no_tenant_is_22004(conn, call):
    conn.execute("RESET fractality.user_id")
    with pytest.raises(errors.NullValueNotAllowed) as e:
        conn.execute(call, (unit(1),) if "%s" in call else None)
    assert e.value.sqlstate == "22004"
    assert "fractality.user_id" in e.value.diag.message_primary


def test_replay_errors_write_nothing(conn):
    assert conn.execute("SELECT fractality.create_replay_buffer('errors')").fetchone()[0] > 0
    with pytest.raises(errors.DuplicateObject) as e:  # the name exists
        conn.execute("SELECT fractality.create_replay_buffer('errors')")
    assert e.value.sqlstate == "42710"
    assert e.value.diag.message_primary == 'replay buffer "errors" already exists'
    assert "drop_replay_buffer" in e.value.diag.message_hint
    one = uuid.uuid4().bytes
    conn.execute("""SELECT fractality.write_event(%s, 7000000, 1, 0, 1::int2, 0::int2, %s::real[], %s::real[], 0, 0)""",
                 (one, [0.0] * 8, [0.0] * 8))
    items = "SELECT event_id, priority FROM fractality.replay_priorities i JOIN fractality.replay_buffers b USING (buffer_id) WHERE b.name = 'errors'"
    assert conn.execute(items).fetchall() == [(one, 1.0)]  # entered at the largest priority
    # an id the buffer holds no item of is skipped (as Reverb skips it): the count says so
    assert conn.execute("SELECT fractality.update_priorities('errors', %s, %s)",
                        ([uuid.uuid4().bytes], [0.5])).fetchone()[0] == 0
    assert conn.execute(items).fetchall() == [(one, 1.0)]
    for ids, priorities, cls, words in [
        ([one], [-1.0], errors.InvalidParameterValue, "-1 at position 1"),
        ([one], [0.5, 0.5], errors.InvalidParameterValue, "2 priorities for 1 event ids"),
    ]:
        with pytest.raises(cls) as e:
            conn.execute("SELECT fractality.update_priorities('errors', %s, %s)", (ids, priorities))
        assert words in e.value.diag.message_primary and e.value.diag.message_hint
        assert conn.execute(items).fetchall() == [(one, 1.0)]  # all or nothing
    assert conn.execute("SELECT fractality.update_priorities('errors', %s, %s)", ([one], [0.5])).fetchone()[0] == 1
    assert conn.execute(items).fetchall() == [(one, pytest.approx(0.5 + 1e-6))]
    conn.execute("DELETE FROM fractality.experience_events WHERE event_id = %s", (one,))
    assert conn.execute(items).fetchall() == []  # a deleted event leaves every buffer


def test_a_bad_batch_is_refused_whole(conn):
    good = {"event_id": uuid.uuid4().hex, "timestamp": 5_000_000, "episode_id": 1, "step_number": 0,
            "event_type": 1, "flags": 0, "adna_version_hash": 1, "sequence_number": 0,
            **{f"state_l{k}": 0.0 for k in range(1, 9)}, **{f"action_l{k}": 0.0 for k in range(1, 9)}}
    bad = dict(good, event_id="0102030405060708090a0b0c0d0e0f")  # 15 bytes
    with pytest.raises(errors.InvalidParameterValue) as e:
        conn.execute("SELECT fractality.write_events_json(%s::text)", (json.dumps([good, bad]),))
    assert "element 1" in e.value.diag.message_primary and "15 bytes" in e.value.diag.message_primary
    assert conn.execute("SELECT count(*) FROM fractality.experience_events").fetchone()[0] == 0
    assert conn.execute("SELECT fractality.write_events_json(%s::text)", (json.dumps([good]),)).fetchone()[0] == 1
    with pytest.raises(errors.UniqueViolation) as e:  # the same (timestamp, event_id) again
        conn.execute("SELECT fractality.write_events_json(%s::text)", (json.dumps([good]),))
    assert e.value.sqlstate == "23505"
    assert conn.execute("SELECT count(*) FROM fractality.experience_events").fetchone()[0] == 1


def test_an_error_rolls_back_the_tenant_transaction_and_the_pool_goes_on(db):
    with ConnectionPool(db, min_size=1, max_size=1, kwargs={"autocommit": True},
                        configure=register_vector, open=True) as pool:
        with pytest.raises(errors.NoDataFound):
            with tenant(pool, TENANT) as conn:
                Memory(conn, lambda text: unit(7).to_list()).remember("written, then rolled back", key="doomed")
                conn.execute("SELECT fractality.pulse(%s, 0.1)", (uuid.UUID(int=1),))
        with tenant(pool, TENANT) as conn:  # the same (only) connection, usable again
            assert conn.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
            assert conn.execute("SELECT count(*) FROM fractality.nodes WHERE node_key = 'doomed'").fetchone()[0] == 0


def test_in_tenant_runs_a_turn_again_after_a_serialization_failure(db):
    """in_tenant runs fn again, in a new transaction, when PostgreSQL ends the first with 40001
    (as remember does when another session changed the memory meanwhile); the failed attempt's
    writes are gone, and other errors are not retried."""
    tries = []

    def turn(conn):
        tries.append(1)
        Memory(conn, lambda text: unit(8).to_list()).remember("told once", key="retried")
        if len(tries) == 1:  # the first attempt ends as a serialization failure would end it
            conn.execute("DO $$ BEGIN RAISE EXCEPTION 'in the way' USING ERRCODE = '40001'; END $$")
        return conn.execute("SELECT count(*) FROM fractality.nodes WHERE node_key = 'retried'").fetchone()[0]

    with ConnectionPool(db, min_size=1, max_size=1, kwargs={"autocommit": True},
                        configure=register_vector, open=True) as pool:
        assert in_tenant(pool, TENANT, turn) == 1
        assert len(tries) == 2
        with pytest.raises(errors.NoDataFound):  # not retried
            in_tenant(pool, TENANT, lambda conn: tries.append(1) or
                      conn.execute("SELECT fractality.pulse(%s, 0.1)", (uuid.UUID(int=1),)))
        assert len(tries) == 3


def test_in_tenant_retries_a_lock_timeout_and_refuses_a_turn_that_caught_an_error(db):
    """A lock timeout (55P03) is retried as a serialization failure is. A turn that caught an error
    of the database and returned raises 25P02: PostgreSQL rolled it all back, and the turn must not
    pass for committed; caught in a savepoint of its own, the turn commits."""
    tries = []

    def locked_once(conn):
        tries.append(1)
        if len(tries) == 1:
            conn.execute("DO $$ BEGIN RAISE EXCEPTION 'locked' USING ERRCODE = '55P03'; END $$")

    def caught(conn):
        Memory(conn, lambda text: unit(9).to_list()).remember("The ferry leaves at noon", key="ferry")
        try:
            conn.execute("SELECT fractality.link('ferry', 'no-such-key')")
        except errors.NoDataFound:
            return "link failed"

    def caught_in_a_savepoint(conn):
        Memory(conn, lambda text: unit(9).to_list()).remember("The ferry leaves at noon", key="ferry")
        try:
            with conn.transaction():
                conn.execute("SELECT fractality.link('ferry', 'no-such-key')")
        except errors.NoDataFound:
            return "link failed"

    def ferries():
        with psycopg.connect(db) as c:
            return c.execute("SELECT count(*) FROM fractality.nodes WHERE node_key = 'ferry'").fetchone()[0]

    with ConnectionPool(db, min_size=1, max_size=1, kwargs={"autocommit": True},
                        configure=register_vector, open=True) as pool:
        in_tenant(pool, TENANT, locked_once)
        assert len(tries) == 2
        with pytest.raises(errors.InFailedSqlTransaction) as e:
            in_tenant(pool, TENANT, caught)
        assert e.value.sqlstate == "25P02" and "rolled its whole transaction back" in str(e.value)
        assert ferries() == 0
        assert in_tenant(pool, TENANT, caught_in_a_savepoint) == "link failed"
        assert ferries() == 1

        def ended_by_the_turn(conn):
            try:
                conn.execute("SELECT 1/0")
            except errors.DivisionByZero:
                conn.execute("ROLLBACK")

        with pytest.raises(errors.InvalidTransactionState):  # what came after ran without a tenant
            in_tenant(pool, TENANT, ended_by_the_turn)
    # a pool of connections in psycopg's own transactions: a turn's COMMIT would go unseen
    with ConnectionPool(db, min_size=1, max_size=1, kwargs={"autocommit": False},
                        configure=register_vector, open=True) as pool:
        with pytest.raises(psycopg.ProgrammingError, match="autocommit"):
            in_tenant(pool, TENANT, lambda conn: conn.execute("SELECT 1"))
