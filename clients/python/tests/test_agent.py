"""The example agent end to end, in a database of its own: what it prints and what it leaves."""

import uuid

import psycopg
import pytest

import agent


@pytest.fixture(scope="module")
def session(db):
    lines = []
    results = agent.run(db, out=lines.append)
    return results, lines


def test_it_answers_from_its_own_tenant_only(session):
    results, lines = session
    assert results["ada"]["answers"] == [
        ("What is the capital of France?", "Paris is the capital of France"),
        ("What does Ada drink in the morning?", "Ada drinks green tea in the morning"),
        ("Which river flows through Paris?", None),  # forgotten just before
    ]
    assert results["bob"]["answers"] == [
        ("What is the name of the cat?", "Bob has a cat called Miso"),
        ("What is the capital of France?", None),  # Ada's fact is in another tenant
    ]
    assert any("'Paris is the capital of France'" in line and "again, energy 0.60" in line for line in lines)
    assert any("forgotten" in line for line in lines)


def test_its_memories_and_their_energy(db, session):
    results, _ = session
    ada, bob = results["ada"]["tenant"], results["bob"]["tenant"]
    assert isinstance(ada, uuid.UUID) and ada != bob
    with psycopg.connect(db) as c:
        rows = c.execute("""SELECT n.label, e.atp, (SELECT count(*) FROM fractality.consciousness_streams s WHERE s.node_id = n.id)
                              FROM fractality.node_energy e JOIN fractality.nodes n ON n.id = e.node_id
                             WHERE n.user_id = %s ORDER BY n.label""", (ada,)).fetchall()
    assert [r[0] for r in rows] == ["Ada drinks green tea in the morning", "Paris is the capital of France",
                                    "conversation with ada"]  # the Seine was forgotten
    energy = {label: atp for label, atp, _ in rows}
    points = {label: n for label, _, n in rows}
    assert energy["Paris is the capital of France"] == pytest.approx(0.5 + 0.1 + 0.2, abs=1e-3)  # told twice, used once
    assert energy["Ada drinks green tea in the morning"] == pytest.approx(0.5 + 0.2, abs=1e-3)
    assert points["Paris is the capital of France"] == 2 and points["Ada drinks green tea in the morning"] == 1

    walk = results["ada"]["walk"]
    children = [(label, path) for _, label, depth, path in walk if depth == 1]
    assert sorted(label for label, _ in children) == ["Ada drinks green tea in the morning", "Paris is the capital of France"]
    root = next(path[0] for _, _, depth, path in walk if depth == 0)
    assert all(len(path) == 2 and path[0] == root and isinstance(path[1], uuid.UUID) for _, path in children)


def test_its_steps_are_experience_events(db, session):
    results, _ = session
    with psycopg.connect(db) as c:
        for name, intents in [("ada", ["remember"] * 4 + ["recall"] * 2 + ["forget", "recall"]),
                              ("bob", ["remember", "recall", "recall"])]:
            r = results[name]
            events = c.execute("""SELECT step_number, intent_type, total_reward, executor_id
                                    FROM fractality.query_events(0, 9223372036854775807, 1000, true)
                                   WHERE episode_id = %s ORDER BY step_number""", (r["episode_id"],)).fetchall()
            assert [e[0] for e in events] == list(range(len(intents)))
            assert [e[1] for e in events] == intents
            assert {e[3] for e in events} == {"python-agent"}
            assert r["steps"] == len(intents)
            assert r["total"] == pytest.approx(sum(e[2] for e in events), abs=1e-5)
            assert r["discounted"] == pytest.approx(sum(e[2] * 0.9 ** e[0] for e in events), abs=1e-5)
    answered = [e for e in results["ada"]["answers"] if e[1]]
    assert len(answered) == 2


def test_it_samples_a_replay_batch_of_its_events(session):
    results, lines = session
    batch = results["replay"]
    assert len(batch) == 6
    assert all(isinstance(event_id, bytes) and len(event_id) == 16 for event_id, *_ in batch)
    episodes = {results["ada"]["episode_id"], results["bob"]["episode_id"]}
    assert {row[3] for row in batch} <= episodes  # this database holds no other events
    assert max(row[2] for row in batch) == pytest.approx(1.0)
    assert "update_priorities" in lines[-1]
