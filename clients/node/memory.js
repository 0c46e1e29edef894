// Every call the Node.js agent makes to fractality's memory, in one place (as in
// clients/python/memory.py). One tenant per conversation: `withTenant` borrows a pooled client,
// opens a transaction and sets fractality.user_id for that transaction only (set_config(..., true)
// is SET LOCAL with a bind parameter); the next borrower starts with no tenant.
//
// fractality 0.4.0 has no remember/recall/forget yet (issue 15): until they land, remember is
// upsert_node (+ a pulse when the key is known), recall an exact cosine scan of the tenant's
// embeddings plus search_nodes for the words, reinforce is pulse, forget deletes the node. Each
// method becomes one call to the SQL function of the same name afterwards.
import { createHash } from 'node:crypto';
import pgvector from 'pgvector/pg';

export const REMEMBER_ENERGY = 0.1;

// pool.connect() with pgvector's type parser registered once per connection, awaited (the
// pool.on('connect', registerTypes) idiom sends its query while the caller's may already be
// running, which node-postgres deprecates)
export async function checkout(pool) {
  const client = await pool.connect();
  if (!client.vectorTypes) {
    await pgvector.registerTypes(client);
    client.vectorTypes = true;
  }
  return client;
}

export async function withTenant(pool, userId, fn) {
  const client = await checkout(pool);
  try {
    await client.query('BEGIN');
    await client.query("SELECT set_config('fractality.user_id', $1, true)", [userId]);
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (e) {
    await client.query('ROLLBACK');
    throw e;
  } finally {
    client.release();
  }
}

export const factKey = (content) =>
  'fact-' + createHash('sha1').update(content.toLowerCase().split(/\s+/).join(' ')).digest('hex').slice(0, 12);

export class Memory {
  constructor(client, embed) {
    this.client = client;
    this.embed = embed;
  }

  async one(sql, params) {
    return (await this.client.query(sql, params)).rows[0];
  }

  // -> { nodeId, created }
  async remember(content, { metadata = {}, importance = 0.5, key = factKey(content) } = {}) {
    const known = await this.one(
      'SELECT id FROM fractality.nodes WHERE node_key = $1 AND user_id = fractality.current_user_id()', [key]);
    const { id } = await this.one("SELECT fractality.upsert_node($1, $2, $3, $4, $5, 'memory') AS id",
      [key, content, metadata, known ? null : importance, pgvector.toSql(this.embed(content))]);
    if (known) await this.reinforce([id], REMEMBER_ENERGY);
    return { nodeId: id, created: !known };
  }

  // the tenant's memories most worth bringing back, best first
  async recall(query, { k = 5, words = null } = {}) {
    const { rows } = await this.client.query(`
      WITH by_vector AS (
          SELECT node_id, 1 - (embedding <=> $1::vector) AS similarity
            FROM fractality.node_embeddings
           WHERE user_id = fractality.current_user_id()
           ORDER BY similarity DESC
           LIMIT $2::int),
      by_text AS (
          SELECT node_id, rank FROM fractality.search_nodes($3::text, $2::int) WHERE $3::text IS NOT NULL)
      SELECT n.node_id, n.node_key AS key, n.label AS content, v.similarity, t.rank AS text_rank, n.atp,
             0.5 * coalesce(v.similarity, 0) + 0.3 * n.atp + 0.2 * least(coalesce(t.rank, 0), 1) AS score
        FROM by_vector v FULL JOIN by_text t USING (node_id)
        JOIN fractality.node_energy n ON n.node_id = coalesce(v.node_id, t.node_id)
       ORDER BY score DESC
       LIMIT $2::int`, [pgvector.toSql(this.embed(query)), k, words]);
    return rows;
  }

  // pulses the memories that were used -> Map(node id -> new energy)
  async reinforce(nodeIds, energy = 0.2) {
    const { rows } = await this.client.query(
      'SELECT id, fractality.pulse(id, $1) AS atp FROM unnest($2::uuid[]) AS id', [energy, nodeIds]);
    return new Map(rows.map((r) => [r.id, r.atp]));
  }

  async forget(content, key = factKey(content)) {
    const { rowCount } = await this.client.query(
      'DELETE FROM fractality.nodes WHERE node_key = $1 AND user_id = fractality.current_user_id()', [key]);
    return rowCount === 1;
  }

  async link(fromKey, toKey, weight = 1.0) {
    return (await this.one("SELECT fractality.link($1, $2, 'child', $3) AS id", [fromKey, toKey, weight])).id;
  }
}
