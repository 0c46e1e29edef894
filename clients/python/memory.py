"""Every call the agent makes to fractality's memory, in one place.

Tenancy: one tenant per conversation. `tenant(pool, user_id)` borrows a pooled connection, opens
a transaction and sets `fractality.user_id` for that transaction only (SET LOCAL, written as
set_config(..., true) because SET cannot take a bind parameter). When the transaction ends the
setting is gone, so the next borrower of the connection starts with no tenant. For an application
role (not the owner, not BYPASSRLS) row-level security then shows each transaction its tenant's
rows only; the queries below also name the tenant, so that a superuser sees the same.

fractality 0.4.0 has no memory API of its own yet: `remember`, `recall` and `forget` (issue 15)
are being built. Until they land, `Memory` composes what exists, and each method becomes one
call afterwards:

    remember  -> SELECT node_id, created FROM fractality.remember(key, content, embedding, metadata)
    recall    -> SELECT ... FROM fractality.recall(query, k, query_text)
    reinforce -> fractality.recall(..., reinforce => energy), or pulse as now
    forget    -> SELECT fractality.forget(key)

Today: remember is upsert_node (+ a pulse when the key is known: no similarity dedup), recall is
an exact cosine scan of the tenant's embeddings plus search_nodes for the words, scored 0.5 x
similarity + 0.3 x current energy + 0.2 x text rank (a stand-in for recall's fusion), reinforce
is pulse, forget deletes the node (its embedding, edges and stream points go with it).
"""

from contextlib import contextmanager
from dataclasses import dataclass
import hashlib
import uuid

from pgvector import Vector
from psycopg.types.json import Jsonb

REMEMBER_ENERGY = 0.1  # a fact told again gains this much energy (issue 15's remember_energy)


@contextmanager
def tenant(pool, user_id: uuid.UUID):
    """A pooled connection in a transaction whose tenant is `user_id`."""
    with pool.connection() as conn, conn.transaction():
        conn.execute("SELECT set_config('fractality.user_id', %s, true)", (str(user_id),))
        yield conn


def fact_key(content: str) -> str:
    """A stable key for a fact the agent has no key for (remember() will derive one itself)."""
    return "fact-" + hashlib.sha1(" ".join(content.lower().split()).encode()).hexdigest()[:12]


@dataclass
class Recalled:
    node_id: uuid.UUID
    key: str
    content: str
    similarity: float | None
    text_rank: float | None
    atp: float
    score: float


class Memory:
    """The memory of one tenant, through a connection from `tenant(...)`."""

    def __init__(self, conn, embed):
        self.conn = conn
        self.embed = embed

    def remember(self, content: str, metadata: dict | None = None, importance: float = 0.5,
                 key: str | None = None) -> tuple[uuid.UUID, bool]:
        """Stores a fact (new ones start with `importance` as energy); a known key is reinforced.
        Returns (node_id, created)."""
        key = key or fact_key(content)
        known = self.conn.execute(
            "SELECT id FROM fractality.nodes WHERE node_key = %s AND user_id = fractality.current_user_id()",
            (key,)).fetchone()
        node_id = self.conn.execute(
            "SELECT fractality.upsert_node(%s, %s, %s, %s, %s, 'memory')",
            (key, content, Jsonb(metadata or {}), None if known else importance,
             Vector(self.embed(content)))).fetchone()[0]
        if known:
            self.reinforce([node_id], REMEMBER_ENERGY)
        return node_id, known is None

    def recall(self, query: str, k: int = 5, words: str | None = None) -> list[Recalled]:
        """The tenant's memories most worth bringing back for `query`, best first."""
        rows = self.conn.execute(
            """
            WITH by_vector AS (   -- exact: ORDER BY similarity does not take the shared HNSW index
                SELECT node_id, 1 - (embedding <=> %(q)s) AS similarity
                  FROM fractality.node_embeddings
                 WHERE user_id = fractality.current_user_id()
                 ORDER BY similarity DESC
                 LIMIT %(k)s),
            by_text AS (
                SELECT node_id, rank FROM fractality.search_nodes(%(words)s::text, %(k)s)
                 WHERE %(words)s::text IS NOT NULL)
            SELECT n.node_id, n.node_key, n.label, v.similarity, t.rank, n.atp,
                   0.5 * coalesce(v.similarity, 0) + 0.3 * n.atp + 0.2 * least(coalesce(t.rank, 0), 1) AS score
              FROM by_vector v FULL JOIN by_text t USING (node_id)
              JOIN fractality.node_energy n ON n.node_id = coalesce(v.node_id, t.node_id)
             ORDER BY score DESC
             LIMIT %(k)s
            """,
            {"q": Vector(self.embed(query)), "k": k, "words": words}).fetchall()
        return [Recalled(*r) for r in rows]

    def reinforce(self, node_ids: list[uuid.UUID], energy: float = 0.2) -> dict[uuid.UUID, float]:
        """Feeds the memories that were used; returns their new energy."""
        rows = self.conn.execute(
            "SELECT id, fractality.pulse(id, %s) FROM unnest(%s::uuid[]) AS id", (energy, node_ids))
        return dict(rows.fetchall())

    def forget(self, content: str | None = None, key: str | None = None) -> bool:
        """Deletes a memory with its embedding, edges and stream points."""
        cur = self.conn.execute(
            "DELETE FROM fractality.nodes WHERE node_key = %s AND user_id = fractality.current_user_id()",
            (key or fact_key(content),))
        return cur.rowcount == 1

    def energy(self, node_id: uuid.UUID) -> float:
        """A memory's current (lazily decayed) energy."""
        return self.conn.execute(
            "SELECT atp FROM fractality.node_energy WHERE node_id = %s", (node_id,)).fetchone()[0]

    def link(self, from_key: str, to_key: str, weight: float = 1.0) -> uuid.UUID:
        return self.conn.execute(
            "SELECT fractality.link(%s, %s, 'child', %s)", (from_key, to_key, weight)).fetchone()[0]

    def walk(self, root_key: str, max_depth: int = 3) -> list[tuple[str, str, int, list[uuid.UUID]]]:
        """(key, content, depth, path of node ids) of every memory reachable from `root_key`."""
        return self.conn.execute(
            """SELECT t.node_key, m.label, t.depth, t.path
                 FROM fractality.nodes n
                 CROSS JOIN fractality.traverse(n.id, %s) t
                 JOIN fractality.nodes m ON m.id = t.node_id
                WHERE n.node_key = %s AND n.user_id = fractality.current_user_id()
                ORDER BY t.depth, m.label""", (max_depth, root_key)).fetchall()
