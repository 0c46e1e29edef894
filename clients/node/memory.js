// Every call the Node.js agent makes to fractality's memory, in one place (as in
// clients/python/memory.py). One tenant per conversation: `withTenant` borrows a pooled client,
// opens a transaction and sets fractality.user_id for that transaction only (set_config(..., true)
// is SET LOCAL with a bind parameter); the next borrower starts with no tenant.
//
// Each method is one call: remember (a new memory at full energy, or the one it duplicates, by key
// or within 0.95 cosine similarity, reinforced by 0.1), recall (query vector + words, energy and
// the edge to a context in the score, `reinforce` feeding what it returns), pulse, an explicit
// decay tick for the tenant (sleep), forget by key.
import { createHash } from 'node:crypto';
import pgvector from 'pgvector/pg';

// pool.connect() with pgvector's type parser registered once per connection, awaited (the
// pool.on('connect', registerTypes) idiom sends its query while the caller's may already be
// running, which node-postgres deprecates)
export async function checkout(pool) {
  const client = await pool.connect();
  if (!client.vectorTypes) {
    try {
      await pgvector.registerTypes(client);
    } catch (e) {
      client.release(e);  // not kept by the pool: it would be lent again without the types
      throw e;
    }
    client.vectorTypes = true;
  }
  return client;
}

// PostgreSQL ends a transaction with these when another session got in its way; nothing of it is
// kept, and running it again is the remedy: remember raises 40001 when another session changed the
// memory it was writing meanwhile (a forget, run_maintenance, upsert_node), two writers of the
// same memories may deadlock (40P01), and a lock waited for longer than lock_timeout is 55P03.
export const RETRIED = new Set(['40001', '40P01', '55P03']);

// How a turn's transaction ended otherwise than by withTenant's COMMIT, as an error with its SQLSTATE:
// 25P02, fn caught an error of the database and returned (PostgreSQL then ends the transaction with
// a ROLLBACK whatever COMMIT says: nothing of the turn is kept); 25000, fn ran COMMIT or ROLLBACK
// itself (what came after ran without the tenant, and a rolled-back turn would pass for done)
const TURN_ENDED = {
  '25P02': 'the turn caught an error of the database and went on: PostgreSQL rolled its whole transaction '
    + 'back and nothing of it is kept (a call that may fail and be caught belongs in a SAVEPOINT of its own)',
  25000: 'the turn ended its transaction itself (COMMIT or ROLLBACK): leave the transaction to withTenant',
};
function turnEnded(code) {
  return Object.assign(new Error(TURN_ENDED[code]), { code });
}

// a vector as pgvector's text form: every element written as JavaScript writes the number, so that
// NaN and Infinity reach the server as such and are refused there (22000, as from Python) instead of
// becoming JSON's null; a Float32Array is taken as an array
export function vectorText(v) {
  return `[${Array.from(v, (x) => {
    if (typeof x !== 'number') throw new TypeError(`an embedding holds numbers, not ${typeof x} ${JSON.stringify(x)}`);
    return String(x);
  }).join(',')}]`;
}

// fn(client) in a transaction of tenant `userId`, run again from the start, in a new transaction,
// when it ends with a serialization failure, a deadlock or a lock timeout (up to `attempts` tries
// in all). fn may
// run more than once: it keeps what it does outside the database (output, counters) for the
// caller to apply once it has returned. `settings` ({name: value}) are set for the transaction
// too, as the tenant is: behind a pooler in transaction mode a session's setting would stay on
// the server connection for the next client.
export async function withTenant(pool, userId, fn, { attempts = 3, settings = {} } = {}) {
  for (let attempt = 1; ; attempt++) {
    const client = await checkout(pool);
    let broken;
    try {
      await client.query('BEGIN');
      await client.query("SELECT set_config('fractality.user_id', $1, true)", [userId]);
      for (const [name, value] of Object.entries(settings)) {
        await client.query('SELECT set_config($1, $2, true)', [name, String(value)]);
      }
      const result = await fn(client);
      // 'E': a caught error failed the transaction; 'I': the turn ended it itself
      const status = client.getTransactionStatus();
      if (status === 'E') throw turnEnded('25P02');
      if (status === 'I') throw turnEnded('25000');
      if ((await client.query('COMMIT')).command !== 'COMMIT') throw turnEnded('25P02');
      return result;
    } catch (e) {
      // a connection that cannot even roll back leaves the pool; the first error is the one told
      await client.query('ROLLBACK').catch((r) => { broken = r; });
      if (!broken && RETRIED.has(e.code) && attempt < attempts) continue;
      throw e;
    } finally {
      client.release(broken);
    }
  }
}

// the key remember derives for a memory told without one: 'memory-' || md5(content)
export const memoryKey = (content) => 'memory-' + createHash('md5').update(content).digest('hex');

// `embed` gives the embeddings of `model` (a model registered with fractality.register_model;
// 'default': 384 dimensions)
export class Memory {
  constructor(client, embed, { model = 'default' } = {}) {
    this.client = client;
    this.embed = embed;
    this.model = model;
  }

  async one(sql, params) {
    return (await this.client.query(sql, params)).rows[0];
  }

  // -> { nodeId, created }
  async remember(content, { metadata = {}, key = null, ttl = null } = {}) {
    const { node_id: nodeId, created } = await this.one(
      'SELECT node_id, created FROM fractality.remember($1, $2, $3, $4, model => $5, ttl => $6::interval)',
      [key, content, vectorText(this.embed(content)), metadata, this.model, ttl]);
    return { nodeId, created };
  }

  // the tenant's memories most worth bringing back, best first (atp: the energy before reinforcement)
  async recall(query, { k = 5, words = null, context = null, minSimilarity = 0, reinforce = 0 } = {}) {
    const { rows } = await this.client.query(
      `SELECT node_id, node_key AS key, content, metadata, similarity, text_rank, atp, edge_weight, score
         FROM fractality.recall($1, $2, query_text => $3, context => $4, min_similarity => $5, reinforce => $6,
                                model => $7)`,
      [vectorText(this.embed(query)), k, words, context, minSimilarity, reinforce, this.model]);
    return rows;
  }

  // pulses the tenant's memories by id -> Map(node id -> new energy); rejects, feeding nothing,
  // when one of the ids is not a memory of the tenant (on the owner's connection too, which
  // row-level security does not limit)
  async reinforce(nodeIds, energy = 0.2) {
    const { missing } = await this.one(
      `SELECT array_agg(w.id) AS missing FROM unnest($1::uuid[]) AS w(id)
        WHERE NOT EXISTS (SELECT 1 FROM fractality.nodes n
                           WHERE n.id = w.id AND n.user_id = fractality.current_user_id())`, [nodeIds]);
    if (missing) throw new Error(`not memories of this tenant: ${missing.join(', ')}`);
    const { rows } = await this.client.query(
      'SELECT id, fractality.pulse(id, $1) AS atp FROM unnest($2::uuid[]) AS id', [energy, nodeIds]);
    return new Map(rows.map((r) => [r.id, r.atp]));
  }

  // time passing for the tenant: every memory keeps `keep` of its energy -> how many changed
  // (a session without a tenant is refused: apply_consciousness_decay given NULL decays every
  // tenant's memories)
  async sleep(keep = 0.5) {
    const { tenant } = await this.one('SELECT fractality.current_user_id() AS tenant', []);
    if (tenant === null) {
      throw new Error('sleep needs a tenant: call it inside withTenant (fractality.user_id is not set)');
    }
    return (await this.one(
      'SELECT count(*)::int AS n FROM fractality.apply_consciousness_decay($1, 0.1, $2)', [keep, tenant])).n;
  }

  async forget(content, key = memoryKey(content)) {
    return (await this.one('SELECT fractality.forget($1) AS gone', [key])).gone;
  }

  async link(fromKey, toKey, weight = 1.0) {
    return (await this.one("SELECT fractality.link($1, $2, 'child', $3) AS id", [fromKey, toKey, weight])).id;
  }
}
