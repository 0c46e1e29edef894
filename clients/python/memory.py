"""Every call the agent makes to fractality's memory, in one place.

Tenancy: one tenant per conversation. `tenant(pool, user_id)` borrows a pooled connection, opens
a transaction and sets `fractality.user_id` for that transaction only (SET LOCAL, written as
set_config(..., true) because SET cannot take a bind parameter). When the transaction ends the
setting is gone, so the next borrower of the connection starts with no tenant. For an application
role (not the owner, not BYPASSRLS) row-level security then shows each transaction its tenant's
rows only; fractality's memory functions work in the setting's tenant whoever the caller is.

The calls, each one round trip:

    remember      fractality.remember(key, content, embedding, metadata, ttl => ...): a new memory
                  at full energy (1.0), or, for the same key or a memory within `dedup` cosine
                  similarity, that memory reinforced (+ fractality.remember_energy, 0.1, at most 1;
                  metadata merged): (node_id, created). A NULL key is 'memory-' || md5(content).
    remember_many fractality.remember_many(node_keys, contents, embeddings, ...): the same for a
                  batch, an array per field
    recall        fractality.recall(query, k, query_text, context, ...): the memories most worth
                  bringing back, scored 0.5 x relevance + 0.3 x energy + 0.2 x edge weight to the
                  context; with `reinforce` > 0 each one returned is fed that energy
    reinforce     fractality.pulse per node: feeds memories by id
    sleep         fractality.apply_consciousness_decay for the tenant: an explicit decay tick
    forget        fractality.forget(key): the node, its embedding, edges and stream points go
"""

from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
import hashlib
import uuid

import psycopg
from pgvector import Vector
from psycopg.types.json import Jsonb

DEDUP_THRESHOLD = 0.95  # remember's default: a memory this similar is the same memory


@contextmanager
def tenant(pool, user_id: uuid.UUID):
    """A pooled connection in a transaction whose tenant is `user_id`. A block that caught an error
    of the database and went on raises InFailedSqlTransaction (25P02) at its end: PostgreSQL has
    rolled the whole transaction back, and its COMMIT would pass for done with nothing kept (a
    call that may fail and be caught belongs in a savepoint, `with conn.transaction():`)."""
    with pool.connection() as conn:
        if not conn.autocommit:
            # a turn's transaction() would then be a savepoint in psycopg's own transaction: a
            # COMMIT in the turn would end the tenant's transaction and open another unseen
            raise psycopg.ProgrammingError(
                "tenant() needs a pool of autocommit connections "
                "(ConnectionPool(..., kwargs={'autocommit': True})): each turn is its own transaction")
        with conn.transaction():
            conn.execute("SELECT set_config('fractality.user_id', %s, true)", (str(user_id),))
            yield conn
            status = conn.info.transaction_status
            if status == psycopg.pq.TransactionStatus.INERROR:
                raise psycopg.errors.InFailedSqlTransaction(
                    "the turn caught an error of the database and went on: PostgreSQL rolled its "
                    "whole transaction back and nothing of it is kept (a call that may fail and be "
                    "caught belongs in a savepoint of its own: with conn.transaction(): ...)")
            if status != psycopg.pq.TransactionStatus.INTRANS:
                raise psycopg.errors.InvalidTransactionState(
                    "the turn ended its transaction itself (COMMIT or ROLLBACK): what came after "
                    "ran without its tenant, and a rolled-back turn would pass for done; leave the "
                    "transaction to the turn")


# PostgreSQL ends a transaction with these when another session got in its way; nothing of it is
# kept, and running it again is the remedy: remember raises 40001 when another session changed
# the memory it was writing meanwhile (a forget, run_maintenance, upsert_node), two writers of
# the same memories may deadlock (40P01), and a lock waited for longer than lock_timeout is 55P03.
RETRIED = (psycopg.errors.SerializationFailure, psycopg.errors.DeadlockDetected,
           psycopg.errors.LockNotAvailable)


def in_tenant(pool, user_id: uuid.UUID, fn, attempts: int = 3):
    """fn(conn) in a transaction of tenant `user_id` (as `tenant`), run again from the start, in a
    new transaction, when it ends with a serialization failure, a deadlock or a lock timeout; fn's
    result. fn may run more than once: it keeps what it does outside the database (output,
    counters) for the caller to apply once it has returned."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    for attempt in range(1, attempts + 1):
        try:
            with tenant(pool, user_id) as conn:
                return fn(conn)
        except RETRIED:
            if attempt == attempts:
                raise


def memory_key(content: str) -> str:
    """The key remember() derives for a memory told without one ('memory-' || md5(content))."""
    return "memory-" + hashlib.md5(content.encode()).hexdigest()


@dataclass
class Recalled:
    node_id: uuid.UUID
    key: str
    content: str
    metadata: dict
    similarity: float | None
    text_rank: float | None  # None: the words did not match it (or no words were given)
    atp: float  # the energy the score used, before any reinforcement
    edge_weight: float
    score: float


class Memory:
    """The memory of one tenant, through a connection from `tenant(...)`; `embed` gives the
    embeddings of `model` (a model registered with fractality.register_model, 'default': 384
    dimensions)."""

    def __init__(self, conn, embed, model: str = "default"):
        self.conn = conn
        self.embed = embed
        self.model = model

    def remember(self, content: str, metadata: dict | None = None, key: str | None = None,
                 ttl: timedelta | None = None, dedup: float = DEDUP_THRESHOLD) -> tuple[uuid.UUID, bool]:
        """Stores a fact, or reinforces the memory it duplicates. Returns (node_id, created)."""
        return self.conn.execute(
            """SELECT node_id, created
                 FROM fractality.remember(%s, %s, %s, %s, model => %s, dedup_threshold => %s,
                                          ttl => %s)""",
            (key, content, Vector(self.embed(content)), Jsonb(metadata or {}), self.model, dedup,
             ttl)).fetchone()

    def remember_many(self, facts: list[dict], dedup: float = DEDUP_THRESHOLD) -> list[tuple[uuid.UUID, bool]]:
        """Remembers a batch, in order, by the rules of `remember`: each fact a dict with `content`
        and optionally `node_key`, `metadata`, `ttl` (text, e.g. '7 days'). One row per fact.
        Sent in the arrays form (an array per field, one element per fact): no JSON to build or
        for the server to parse."""
        return self.conn.execute(
            """SELECT node_id, created
                 FROM fractality.remember_many(%s::text[], %s::text[], %s::vector[], %s::jsonb[],
                                               model => %s, dedup_threshold => %s,
                                               ttls => %s::text[]::interval[])""",
            ([f.get("node_key") for f in facts],
             [f["content"] for f in facts],
             [Vector(self.embed(f["content"])) for f in facts],
             [None if f.get("metadata") is None else Jsonb(f["metadata"]) for f in facts],
             self.model,
             dedup,
             [f.get("ttl") for f in facts])).fetchall()

    def recall(self, query: str, k: int = 5, words: str | None = None, context: str | None = None,
               min_similarity: float = 0.0, reinforce: float = 0.0) -> list[Recalled]:
        """The tenant's memories most worth bringing back for `query` (its embedding; `words`
        for the full-text side, `context` a node key whose neighbours score higher), best first.
        Memories less similar than `min_similarity` are left out unless the words match them;
        `reinforce` > 0 feeds each memory returned that much energy."""
        rows = self.conn.execute(
            """SELECT node_id, node_key, content, metadata, similarity, text_rank, atp, edge_weight, score
                 FROM fractality.recall(%s, %s, query_text => %s, context => %s, model => %s,
                                        min_similarity => %s, reinforce => %s)""",
            (Vector(self.embed(query)), k, words, context, self.model, min_similarity,
             reinforce)).fetchall()
        return [Recalled(*r) for r in rows]

    def reinforce(self, node_ids: list[uuid.UUID], energy: float = 0.2) -> dict[uuid.UUID, float]:
        """Feeds the tenant's memories by id (one stream point each); returns their new energy.
        LookupError, and nothing fed, when one of the ids is not a memory of the tenant (the
        owner's connection, which row-level security does not limit, included)."""
        missing = self.conn.execute(
            """SELECT array_agg(w.id) FROM unnest(%s::uuid[]) AS w(id)
                WHERE NOT EXISTS (SELECT 1 FROM fractality.nodes n
                                   WHERE n.id = w.id AND n.user_id = fractality.current_user_id())""",
            (node_ids,)).fetchone()[0]
        if missing:
            raise LookupError(f"not memories of this tenant: {', '.join(map(str, missing))}")
        rows = self.conn.execute(
            "SELECT id, fractality.pulse(id, %s) FROM unnest(%s::uuid[]) AS id", (energy, node_ids))
        return dict(rows.fetchall())

    def sleep(self, keep: float = 0.5) -> int:
        """Time passing, for the tenant: every memory keeps `keep` of its stored energy (never below
        0.1), fractality's explicit decay tick. Returns the memories it changed. A connection
        without a tenant is refused: apply_consciousness_decay given NULL decays every tenant."""
        tenant_id = self.conn.execute("SELECT fractality.current_user_id()").fetchone()[0]
        if tenant_id is None:
            raise ValueError("sleep needs a tenant: call it inside tenant() or in_tenant() "
                             "(fractality.user_id is not set)")
        return self.conn.execute(
            "SELECT count(*) FROM fractality.apply_consciousness_decay(%s, 0.1, %s)",
            (keep, tenant_id)).fetchone()[0]

    def forget(self, content: str | None = None, key: str | None = None) -> bool:
        """Forgets a memory by key (or by the key derived from `content`); false if there was none."""
        return self.conn.execute("SELECT fractality.forget(%s)", (key or memory_key(content),)).fetchone()[0]

    def energy(self, node_id: uuid.UUID) -> float:
        """A memory's current (lazily decayed) energy; LookupError when it is not a memory of the
        tenant (forgotten, or another tenant's)."""
        row = self.conn.execute(
            """SELECT atp FROM fractality.node_energy
                WHERE node_id = %s AND user_id = fractality.current_user_id()""", (node_id,)).fetchone()
        if row is None:
            raise LookupError(f"not a memory of this tenant: {node_id}")
        return row[0]

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
