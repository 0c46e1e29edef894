"""An example agent using fractality as its memory, from Python (psycopg 3 + psycopg_pool + pgvector).

Two scripted conversations, one tenant each. Every turn is one transaction on a pooled
connection with the conversation's tenant set for that transaction: the agent remembers what it
is told, recalls with a query vector and the words of a question, reinforces the memory it used,
forgets on request, and logs the step as an experience event. At the end of a conversation it
reads the episode's return and walks its memory graph; at the end of the session it samples a
prioritised replay batch.

    clients/python/.venv/bin/python clients/python/agent.py      # FRACTALITY_URL overrides the server
"""

import os
import sys
import uuid

from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

import experience
from embedding import embed
from memory import Memory, fact_key, tenant

DEFAULT_URL = "postgresql://postgres@localhost:54330/fractality_demo"
ANSWER_SIMILARITY = 0.35  # below it the agent says it does not know

CONVERSATIONS = {
    "ada": [
        ("tell", "Paris is the capital of France"),
        ("tell", "The Seine flows through Paris"),
        ("tell", "Ada drinks green tea in the morning"),
        ("tell", "Paris is the capital of France"),
        ("ask", "What is the capital of France?"),
        ("ask", "What does Ada drink in the morning?"),
        ("forget", "The Seine flows through Paris"),
        ("ask", "Which river flows through Paris?"),
    ],
    "bob": [
        ("tell", "Bob has a cat called Miso"),
        ("ask", "What is the name of the cat?"),
        ("ask", "What is the capital of France?"),  # Ada's fact: another tenant, never seen
    ],
}


def converse(pool, name: str, turns, episode_id: int, since_us: int, out) -> dict:
    user_id = uuid.uuid4()
    episode = experience.Episode(episode_id)
    root = f"conversation-{name}"
    answers = []
    out(f"conversation {name} (tenant {user_id})")
    with tenant(pool, user_id) as conn:
        Memory(conn, embed).remember(f"conversation with {name}", key=root, importance=1.0)
    for kind, text in turns:
        with tenant(pool, user_id) as conn:  # one transaction per turn, the tenant set inside it
            memory = Memory(conn, embed)
            state = embed(text)[:8]
            if kind == "tell":
                nearest = memory.recall(text, k=1)
                novelty = 1.0 - (nearest[0].similarity or 0.0) if nearest else 1.0
                node_id, created = memory.remember(text, {"source": name})
                memory.link(root, fact_key(text), weight=0.8)
                out(f"  remember  {text!r:45} {'new' if created else 'again'}, energy {memory.energy(node_id):.2f}")
                episode.step("remember", state, {"text": text}, curiosity=novelty)
            elif kind == "ask":
                recalled = memory.recall(text, k=3, words=text)
                best = recalled[0] if recalled else None
                if best and (best.similarity or 0.0) >= ANSWER_SIMILARITY:
                    energy = memory.reinforce([best.node_id])[best.node_id]
                    answers.append((text, best.content))
                    out(f"  ask       {text!r:45} -> {best.content!r} "
                        f"(similarity {best.similarity:.2f}, score {best.score:.2f}, energy now {energy:.2f})")
                    episode.step("recall", state, {"text": text, "used": best.key}, goal=1.0)
                else:
                    answers.append((text, None))
                    out(f"  ask       {text!r:45} -> I don't know")
                    episode.step("recall", state, {"text": text}, goal=0.0)
            elif kind == "forget":
                gone = memory.forget(text)
                out(f"  forget    {text!r:45} {'forgotten' if gone else 'not known'}")
                episode.step("forget", state, {"text": text}, efficiency=0.5 if gone else 0.0)
            episode.flush(conn)
    with tenant(pool, user_id) as conn:
        steps, total, discounted = episode.returns(conn, since_us)
        walk = Memory(conn, embed).walk(root)
    out(f"  episode   {steps} steps, return {total:.2f}, discounted (gamma 0.9) {discounted:.2f}")
    out(f"  graph     {root} > " + ", ".join(repr(label) for _, label, depth, _ in walk if depth == 1))
    return {"tenant": user_id, "episode_id": episode_id, "answers": answers,
            "steps": steps, "total": total, "discounted": discounted, "walk": walk}


def run(url: str, out=print) -> dict:
    """Runs both conversations against `url`; returns what each produced."""
    started = experience.now_us()  # also the first episode id: unique per run
    results = {}
    with ConnectionPool(url, min_size=1, max_size=4, kwargs={"autocommit": True},
                        configure=register_vector, open=True) as pool:
        for i, (name, turns) in enumerate(CONVERSATIONS.items()):
            results[name] = converse(pool, name, turns, started + i, started, out)
        with pool.connection() as conn:
            batch = experience.sample(conn, 6, since_us=started, seed=7)
        ours = sum(1 for row in batch if row[3] is not None)
        out(f"replay batch of {len(batch)} (seed 7; {ours} from this session, the rest from earlier events):")
        for event_id, priority, weight, episode_id, step in batch:
            origin = f"episode {episode_id} step {step}" if episode_id is not None else "earlier event"
            out(f"  {event_id.hex()[:12]}…  priority {priority:.3f}  weight {weight:.3f}  {origin}")
        out("(priorities are not written back yet: fractality.update_priorities arrives with issue 17)")
        results["replay"] = batch
    return results


if __name__ == "__main__":
    url = os.environ.get("FRACTALITY_URL", DEFAULT_URL)
    print(f"fractality agent, Python, against {url}")
    try:
        run(url)
    except Exception as e:  # a readable line for a server that is not there
        sys.exit(f"error: {e}")
