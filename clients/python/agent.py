"""An example agent using fractality as its memory, from Python (psycopg 3 + psycopg_pool + pgvector).

Two scripted conversations, one tenant each. Every turn is one transaction on a pooled
connection with the conversation's tenant set for that transaction: the agent remembers what it
is told (a fact told again, in any words close enough, is the same memory, reinforced), recalls
with a query vector and the words of a question (reinforcing the memory it answers from), forgets
on request, sleeps (its memories lose half their energy), and logs the step as an experience
event. At the end of a conversation it reads the episode's return and walks its memory graph; at
the end of the session it replays a prioritised batch from its replay buffer and writes the TD
errors back as priorities.

    clients/python/.venv/bin/python clients/python/agent.py      # FRACTALITY_URL overrides the server
"""

import os
import sys
import uuid

from pgvector.psycopg import register_vector
from psycopg_pool import ConnectionPool

import experience
from embedding import embed
from memory import Memory, in_tenant, memory_key, tenant

DEFAULT_URL = "postgresql://postgres@localhost:54330/fractality_demo"
ANSWER_SIMILARITY = 0.35  # recall's min_similarity: below it (and without matching words) the agent does not know
USE_ENERGY = 0.2  # what recalling a memory to answer from feeds it

CONVERSATIONS = {
    "ada": [
        ("tell", "Paris is the capital of France"),
        ("tell", "The Seine flows through Paris"),
        ("tell", "Ada drinks green tea in the morning"),
        ("sleep", "a night passes"),
        ("tell", "The capital of France is Paris"),  # the same fact in other words: one memory
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
    in_tenant(pool, user_id,
              lambda conn: Memory(conn, embed).remember(f"conversation with {name}", key=root))
    for kind, text in turns:
        # one transaction per turn, the tenant set inside it, run again if another session got in
        # its way (in_tenant): the turn keeps its lines and answer until it has committed, and
        # the episode goes back to its mark before each try
        mark = episode.mark()

        def turn(conn, kind=kind, text=text):
            episode.rewind(mark)
            lines, answer = [], None
            memory = Memory(conn, embed)
            state = embed(text)[:8]
            if kind == "tell":
                nearest = memory.recall(text, k=1)
                novelty = 1.0 - (nearest[0].similarity or 0.0) if nearest else 1.0
                node_id, created = memory.remember(text, {"source": name})
                if created:  # its key is the one remember derived from the content
                    memory.link(root, memory_key(text), weight=0.8)
                lines.append(f"  remember  {text!r:45} {'new' if created else 'again'}, energy {memory.energy(node_id):.2f}")
                episode.step("remember", state, {"text": text}, curiosity=novelty)
            elif kind == "ask":
                # one call: the best memory above the threshold (or matching the words), fed on use
                recalled = memory.recall(text, k=1, words=text, context=root,
                                         min_similarity=ANSWER_SIMILARITY, reinforce=USE_ENERGY)
                if recalled:
                    best = recalled[0]
                    answer = (text, best.content)
                    similarity = "-" if best.similarity is None else f"{best.similarity:.2f}"
                    lines.append(f"  ask       {text!r:45} -> {best.content!r} (similarity {similarity}, "
                                 f"score {best.score:.2f}, energy {best.atp:.2f} -> {memory.energy(best.node_id):.2f})")
                    episode.step("recall", state, {"text": text, "used": best.key}, goal=1.0)
                else:
                    answer = (text, None)
                    lines.append(f"  ask       {text!r:45} -> I don't know")
                    episode.step("recall", state, {"text": text}, goal=0.0)
            elif kind == "forget":
                gone = memory.forget(text)
                lines.append(f"  forget    {text!r:45} {'forgotten' if gone else 'not known'}")
                episode.step("forget", state, {"text": text}, efficiency=0.5 if gone else 0.0)
            elif kind == "sleep":
                lines.append(f"  sleep     {text}: {memory.sleep(0.5)} memories keep half their energy")
            episode.flush(conn)
            return lines, answer

        lines, answer = in_tenant(pool, user_id, turn)
        for line in lines:
            out(line)
        if answer is not None:
            answers.append(answer)
    with tenant(pool, user_id) as conn:
        steps, total, discounted = episode.returns(conn, since_us)
        walk = Memory(conn, embed).walk(root)
    out(f"  episode   {steps} steps, return {total:.2f}, discounted (gamma 0.9) {discounted:.2f}")
    out(f"  graph     {root} > " + ", ".join(repr(label) for _, label, depth, _ in walk if depth == 1))
    return {"tenant": user_id, "episode_id": episode_id, "answers": answers,
            "steps": steps, "total": total, "discounted": discounted, "walk": walk}


def replay(pool, out, episodes: dict[int, str], n: int = 6, seed: int = 7) -> dict:
    """A learner's step: a prioritised batch, toy TD errors, priorities written back."""
    with pool.connection() as conn, conn.transaction():
        batch = experience.replay_batch(conn, n, seed=seed)
        errors = experience.td_errors(batch)
        updated = experience.update_priorities(conn, [t["event_id"] for t in batch], errors)
    out(f"replay batch of {len(batch)} from buffer {experience.BUFFER!r} (seed {seed}):")
    for t, delta in zip(batch, errors):
        origin = episodes.get(t["episode_id"], "earlier")  # the buffer keeps the events of earlier runs
        nxt = "-> next" if t["next_state"] is not None else "(end)  "
        out(f"  {t['event_id'].hex()[:8]}…  {origin:7} step {t['step_number']} {t['intent_type'] or '-':8} "
            f"reward {t['total_reward']:.2f} {nxt}  priority {t['priority']:.3f} weight {t['weight']:.3f}  "
            f"|TD error| {abs(delta):.3f}")
    out(f"update_priorities: {updated} priorities written back")
    return {"batch": batch, "errors": errors, "updated": updated}


def run(url: str, out=print) -> dict:
    """Runs both conversations against `url`; returns what each produced."""
    started = experience.now_us()  # also the first episode id: unique per run
    results = {}
    # unnamed statements (no server-side prepare): the agent runs behind any pooler, PgBouncer
    # in transaction mode before 1.21 included (docs/CLIENTS.md, "Behind a pooler")
    with ConnectionPool(url, min_size=1, max_size=4,
                        kwargs={"autocommit": True, "prepare_threshold": None},
                        configure=register_vector, open=True) as pool:
        with pool.connection() as conn:  # before the first event: events enter buffers when written
            buffer_id, created = experience.ensure_buffer(conn)
        out(f"replay buffer {experience.BUFFER!r} (id {buffer_id}) {'created' if created else 'already there'}")
        for i, (name, turns) in enumerate(CONVERSATIONS.items()):
            results[name] = converse(pool, name, turns, started + i, started, out)
        results["replay"] = replay(pool, out, {r["episode_id"]: name for name, r in results.items()})
        results["buffer_id"] = buffer_id
    return results


if __name__ == "__main__":
    url = os.environ.get("FRACTALITY_URL", DEFAULT_URL)
    print(f"fractality agent, Python, against {url}")
    try:
        run(url)
    except Exception as e:  # a readable line for a server that is not there
        diag = getattr(e, "diag", None)
        code = f" ({e.sqlstate})" if getattr(e, "sqlstate", None) else ""
        hint = f"\nhint: {diag.message_hint}" if diag is not None and diag.message_hint else ""
        sys.exit(f"error{code}: {e}{hint}")
