// fractality through node-postgres' own type handling, against FRACTALITY_TEST_URL (libpq
// conninfo or URL; scripts/test.sh starts that server), in a database of this file's own.
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import pg from 'pg';
import pgvector from 'pgvector/pg';
import { BUFFER, connectionConfig, run } from '../agent.js';
import { embed } from '../embedding.js';
import { Memory, memoryKey, vectorText, withTenant } from '../memory.js';

const DB = 'fractality_node';
const ROLE = 'fractality_node_app';

function config(database, user) {  // node-postgres takes URLs, not libpq's key=value form
  const raw = process.env.FRACTALITY_TEST_URL ?? 'host=localhost port=54331 user=postgres dbname=postgres';
  let c;
  if (raw.includes('://')) {
    const u = new URL(raw);
    c = { host: u.hostname, port: u.port, user: u.username, dbname: u.pathname.slice(1), password: u.password };
  } else {
    c = Object.fromEntries(raw.trim().split(/\s+/).map((kv) => kv.split('=')));
  }
  return { host: c.host, port: Number(c.port || 5432), user: user ?? c.user, password: c.password || undefined,
    database: database ?? c.dbname };
}

async function connect({ vector = true } = {}) {
  const client = new pg.Client(config(DB));
  await client.connect();
  if (vector) await pgvector.registerTypes(client);
  return client;
}

const newPool = (user, max) => new pg.Pool({ ...config(DB, user), max });  // withTenant registers pgvector's types

const close = (a, b, eps = 1e-9) => assert.ok(Math.abs(a - b) <= eps, `${a} is not within ${eps} of ${b}`);
let db;

before(async () => {
  const admin = new pg.Client(config());
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${DB}`);
  await admin.end();
  db = await connect({ vector: false });
  await db.query('CREATE EXTENSION fractality CASCADE');
  await pgvector.registerTypes(db);  // the vector type exists only now
  // an application role: not superuser, not owner, not BYPASSRLS (README, "Tenants")
  await db.query(`DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${ROLE}')
                  THEN CREATE ROLE ${ROLE} LOGIN; END IF; END $$`);
  await db.query(`GRANT USAGE ON SCHEMA fractality TO ${ROLE};
                  GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA fractality TO ${ROLE}`);
});

after(async () => {
  await db.end();
  const admin = new pg.Client(config());
  await admin.connect();
  await admin.query(`DROP DATABASE ${DB} WITH (FORCE)`);
  await admin.end();
});

test('a vector round-trips exactly (as float32) through toSql and the type parser', async () => {
  const values = Array.from({ length: 384 }, (_, i) => Math.fround((Math.random() * 2 - 1) * 10 ** ((i % 61) - 30)));
  values[0] = Math.fround(0.1);
  values[1] = 3.4028234663852886e38;  // the largest float32
  const { rows: [{ v }] } = await db.query('SELECT $1::vector AS v', [pgvector.toSql(values)]);
  assert.equal(v.length, 384);
  assert.deepEqual(v.map(Math.fround), values);  // shortest decimal digits: the same float32 values

  // as an embedding: magnitudes whose squares sum within single precision (fractality refuses
  // others: pgvector compares vectors in single precision)
  const embeddable = values.map((x) => (Math.abs(x) > 1e15 ? Math.fround(Math.sign(x) * 1e15) : x));
  await db.query("SELECT set_config('fractality.user_id', $1, false)", [randomUUID()]);
  const { rows: [{ id }] } = await db.query("SELECT fractality.upsert_node('vec', 'v', '{}', NULL, $1) AS id",
    [pgvector.toSql(embeddable)]);
  const { rows: [{ embedding }] } = await db.query('SELECT embedding FROM fractality.node_embeddings WHERE node_id = $1', [id]);
  assert.deepEqual(embedding.map(Math.fround), embeddable);
});

test('traverse paths decode to arrays of uuid strings', async () => {
  await db.query("SELECT set_config('fractality.user_id', $1, false)", [randomUUID()]);
  const ids = {};
  for (const key of ['mind', 'dream', 'river']) {
    ids[key] = (await db.query('SELECT fractality.upsert_node($1) AS id', [key])).rows[0].id;
  }
  await db.query("SELECT fractality.link('mind', 'dream', 'child', 0.6), fractality.link('dream', 'river', 'child', 0.8)");
  const { rows } = await db.query('SELECT node_key, depth, path, accumulated_weight FROM fractality.traverse($1) ORDER BY depth', [ids.mind]);
  assert.deepEqual(rows.map((r) => [r.node_key, r.depth]), [['mind', 0], ['dream', 1], ['river', 2]]);
  assert.deepEqual(rows[2].path, [ids.mind, ids.dream, ids.river]);
  close(rows[2].accumulated_weight, 0.48);
  const { rows: [{ keys }] } = await db.query(
    'SELECT array_agg(node_key ORDER BY node_key) AS keys FROM fractality.nodes WHERE id = ANY($1::uuid[])', [[ids.mind, ids.river]]);
  assert.deepEqual(keys, ['mind', 'river']);
});

test('bytea event ids and JSON batches survive write_events_json and query_events', async () => {
  const base = 2_000_000;
  const ids = [randomBytes(16), randomBytes(16), randomBytes(16)];
  const parameters = { query: 'it\'s "quoted"', k: 3, nested: [1.5, null, true] };
  const batch = ids.map((id, n) => {
    const e = { event_id: id.toString('hex'), timestamp: base + n, episode_id: 9, step_number: n, event_type: 1, flags: 0,
      reward_goal: n / 2, reward_curiosity: 0.25, adna_version_hash: 7, sequence_number: n };
    for (let k = 1; k <= 8; k++) { e[`state_l${k}`] = k / 8; e[`action_l${k}`] = -k / 16; }
    if (n === 0) e.metadata = { intent_type: 'recall', executor_id: 'node-test', parameters };
    return e;
  });
  const { rows: [{ n }] } = await db.query('SELECT fractality.write_events_json($1::text) AS n', [JSON.stringify(batch)]);
  assert.equal(n, '3');  // bigint comes back as a string in node-postgres
  const { rows } = await db.query(
    'SELECT event_id, state, total_reward, intent_type, parameters FROM fractality.query_events($1, $2, 100, true)', [base, base + 3]);
  assert.deepEqual(rows.map((r) => r.event_id), ids);  // bytea -> Buffer
  assert.deepEqual(rows[0].state, [1, 2, 3, 4, 5, 6, 7, 8].map((k) => k / 8));  // real[] -> numbers
  rows.forEach((r, i) => close(r.total_reward, 0.25 + i / 2, 1e-6));
  assert.deepEqual([rows[0].intent_type, rows[0].parameters], ['recall', parameters]);  // jsonb -> object

  const one = randomBytes(16);  // a Buffer as a bytea parameter
  await db.query(`SELECT fractality.write_event($1, $2, 10, 0, 1::int2, 0::int2, $3::real[], $3::real[], 7, 0)`,
    [one, base + 10, [0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]]);
  const { rows: [got] } = await db.query('SELECT event_id FROM fractality.query_events($1, $2)', [base + 10, base + 11]);
  assert.ok(got.event_id.equals(one));

  const { rows: [ret] } = await db.query(
    'SELECT steps, total, discounted FROM fractality.episode_returns($1, $2, 0.5) WHERE episode_id = 9', [base, base + 3]);
  assert.equal(Number(ret.steps), 3);
  close(ret.total, 0.75 + 1.5, 1e-6);
  close(ret.discounted, 0.25 + 0.75 * 0.5 + 1.25 * 0.25, 1e-6);
  // a replay buffer over them: Buffers out of a sample, an array of Buffers back in as bytea[]
  await db.query("SELECT fractality.create_replay_buffer('types', backfill => true)");
  const { rows: sample } = await db.query("SELECT event_id, weight FROM fractality.sample_experiences('types', 20, seed => 1)");
  assert.equal(sample.length, 20);
  assert.ok(sample.every((r) => Buffer.isBuffer(r.event_id) && r.event_id.length === 16));
  close(Math.max(...sample.map((r) => r.weight)), 1);
  const { rows: [{ n: updated }] } = await db.query("SELECT fractality.update_priorities('types', $1, $2) AS n", [[ids[0], one], [3, 0]]);
  assert.equal(updated, '2');
  const { rows: items } = await db.query('SELECT event_id, priority FROM fractality.replay_priorities ORDER BY priority DESC');
  assert.ok(items[0].event_id.equals(ids[0]) && items.at(-1).event_id.equals(one));
  close(items[0].priority, 3 + 1e-6, 1e-12);
  close(items.at(-1).priority, 1e-6, 1e-12);
});

test('errors carry their SQLSTATE in err.code, with a hint, and write nothing', async () => {
  // the buffer of the last case, made here if an earlier test has not (this test runs alone too)
  if ((await db.query("SELECT count(*)::int AS n FROM fractality.replay_buffers WHERE name = 'types'")).rows[0].n === 0) {
    await db.query("SELECT fractality.create_replay_buffer('types')");
  }
  await db.query("SELECT set_config('fractality.user_id', $1, false)", [randomUUID()]);
  const cases = [
    ['SELECT fractality.normalize_vector($1)', [pgvector.toSql([0, 0])], '22023', /zero vector/],
    ['SELECT fractality.pulse($1, 0.1)', [randomUUID()], 'P0002', /does not exist/],
    ['SELECT fractality.cosine_similarity($1::vector, $2::vector)', ['[1,2,3]', '[1,2]'], '22000', /3 and 2/],
    ["SELECT fractality.upsert_node('k', 'l', '{}', NULL, $1)", [pgvector.toSql([0.5, 0.5, 0.5])], '22000', /384/],
    ["SELECT fractality.upsert_node('k', 'l', '{}', $1)", ['NaN'], '22023', /NaN/],
    ['SELECT fractality.write_events_json($1::text)', ['[{"event_id": ]'], '22P02', /line 1 column 15/],
    ['SELECT * FROM fractality.recall($1, 0)', [pgvector.toSql(embed('x'))], '22023', /k: 0/],
    ["SELECT * FROM fractality.remember(NULL, 'x', $1)", [pgvector.toSql([1, 0, 0])], '22000', /3 dimensions/],
    ["SELECT * FROM fractality.remember(NULL, 'x', $1, model => 'no_such_model')", [pgvector.toSql(embed('x'))], '22023', /'no_such_model'/],
    ["SELECT * FROM fractality.recall($1, model => 'no_such_model')", [pgvector.toSql(embed('x'))], '22023', /'no_such_model'/],
    ["SELECT fractality.upsert_node('k', embedding => $1, model => 'No Model')", [pgvector.toSql(embed('x'))], '22023', /'No Model'/],
    ["SELECT * FROM fractality.replay_batch('nobuffer', 1)", [], '22023', /'nobuffer'/],
    ["SELECT fractality.update_priorities('types', ARRAY[$1::bytea], ARRAY[-1.0])", [randomBytes(16)], '22023', /-1 at position 1/],
  ];
  for (const [sql, params, code, message] of cases) {
    await assert.rejects(db.query(sql, params), (err) => {
      assert.equal(err.code, code, `${sql}: ${err.message}`);
      assert.match(err.message, message);
      assert.ok(err.hint, `${sql} has a hint`);
      return true;
    });
  }
  assert.equal((await db.query('SELECT count(*)::int AS n FROM fractality.nodes WHERE node_key = $1', ['k'])).rows[0].n, 0);
  await db.query('RESET fractality.user_id');
  await assert.rejects(db.query("SELECT fractality.upsert_node('k')"), { code: '22004' });
});

test("withTenant's settings hold for its transaction only, as its tenant does (what a pooler needs)", async () => {
  const pool = new pg.Pool({ ...config(DB), max: 1 });  // one connection: the next query is on it
  try {
    const inside = await withTenant(pool, randomUUID(), async (c) =>
      (await c.query('SELECT fractality.notify_enabled() AS on, fractality.current_user_id() AS tenant')).rows[0],
    { settings: { 'fractality.notify': 'on' } });
    assert.equal(inside.on, true);
    assert.ok(inside.tenant);
    const { rows: [later] } = await pool.query(
      'SELECT fractality.notify_enabled() AS on, fractality.current_user_id() AS tenant');
    assert.deepEqual(later, { on: false, tenant: null });
  } finally {
    await pool.end();
  }
});

test('withTenant runs a transaction again after a serialization failure, and no other error', async () => {
  const pool = new pg.Pool({ ...config(DB), max: 1 });
  const user = randomUUID();
  let tries = 0;
  try {
    const count = await withTenant(pool, user, async (c) => {
      tries += 1;
      await new Memory(c, embed).remember('told once', { key: 'retried' });
      if (tries === 1) {  // the first attempt ends as a serialization failure would end it
        await c.query("DO $$ BEGIN RAISE EXCEPTION 'in the way' USING ERRCODE = '40001'; END $$");
      }
      return (await c.query("SELECT count(*)::int AS n FROM fractality.nodes WHERE node_key = 'retried'")).rows[0].n;
    });
    assert.deepEqual([count, tries], [1, 2]);
    await assert.rejects(withTenant(pool, user, async (c) => {
      tries += 1;
      await c.query('SELECT fractality.pulse($1, 0.1)', [randomUUID()]);
    }), { code: 'P0002' });
    assert.equal(tries, 3);
  } finally {
    await pool.end();
  }
});

test('withTenant retries a lock timeout, and refuses a turn that caught an error of the database', async () => {
  const pool = new pg.Pool({ ...config(DB), max: 1 });
  const user = randomUUID();
  let tries = 0;
  try {
    await withTenant(pool, user, async (c) => {  // 55P03: a lock waited for longer than lock_timeout
      tries += 1;
      if (tries === 1) await c.query("DO $$ BEGIN RAISE EXCEPTION 'locked' USING ERRCODE = '55P03'; END $$");
    });
    assert.equal(tries, 2);
    // the failed call ends the transaction: COMMIT rolls it back, and the turn must not pass for done
    await assert.rejects(withTenant(pool, user, async (c) => {
      const m = new Memory(c, embed);
      await m.remember('The ferry leaves at noon', { key: 'ferry' });
      return c.query("SELECT fractality.link('ferry', 'no-such-key')").catch((e) => e.code);
    }), (e) => e.code === '25P02' && /rolled its whole transaction back/.test(e.message));
    const n = (await db.query("SELECT count(*)::int AS n FROM fractality.nodes WHERE node_key = 'ferry'")).rows[0].n;
    assert.equal(n, 0);
    // caught inside a savepoint of its own, the turn commits
    const caught = await withTenant(pool, user, async (c) => {
      await new Memory(c, embed).remember('The ferry leaves at noon', { key: 'ferry' });
      await c.query('SAVEPOINT link');
      const code = await c.query("SELECT fractality.link('ferry', 'no-such-key')").then(() => null, (e) => e.code);
      await c.query('ROLLBACK TO SAVEPOINT link');
      return code;
    });
    assert.equal(caught, 'P0002');
    // a turn that ends its transaction itself is refused too (what came after ran without a tenant)
    await assert.rejects(withTenant(pool, user, async (c) => {
      await c.query('SELECT 1/0').catch(() => null);
      await c.query('ROLLBACK');
    }), { code: '25000' });
    assert.equal((await db.query("SELECT count(*)::int AS n FROM fractality.nodes WHERE node_key = 'ferry'")).rows[0].n, 1);
  } finally {
    await pool.end();
  }
});

test('an embedding with NaN or an infinity is refused by the server as such, naming it', async () => {
  const pool = new pg.Pool({ ...config(DB), max: 1 });
  try {
    for (const [bad, message] of [[NaN, /NaN not allowed in vector/], [Infinity, /infinite value not allowed/],
      [-Infinity, /infinite value not allowed/]]) {
      await assert.rejects(withTenant(pool, randomUUID(), (c) =>
        new Memory(c, () => [bad, ...Array(383).fill(0.1)]).remember('not a direction')),
      (e) => e.code === '22000' && message.test(e.message));
    }
    // a Float32Array, what embedding models give, is written as an array
    const v = new Float32Array(384).fill(0.05);
    const { nodeId } = await withTenant(pool, randomUUID(), (c) => new Memory(c, () => v).remember('float32'));
    const { rows: [{ e }] } = await db.query(
      'SELECT embedding AS e FROM fractality.node_embeddings WHERE node_id = $1', [nodeId]);
    assert.deepEqual(e.map(Math.fround), Array.from(v));  // float32 both ways: exactly
    assert.equal(vectorText([0.5, NaN, -Infinity]), '[0.5,NaN,-Infinity]');
    assert.throws(() => vectorText(['1,2']), TypeError);
    assert.throws(() => vectorText([[1, 2], [3]]), TypeError);
  } finally {
    await pool.end();
  }
});

test('SET LOCAL tenancy holds across a pool: two tenants interleaved on the same connections', async () => {
  const pool = newPool(ROLE, 3);  // three: two tenants taking turns on two would keep their own
  const [a, b] = [randomUUID(), randomUUID()];
  const pids = { [a]: new Set(), [b]: new Set() };
  const nodes = { [a]: new Set(), [b]: new Set() };
  try {
    const { rows: [me] } = await pool.query('SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user');
    assert.deepEqual(me, { rolsuper: false, rolbypassrls: false });
    for (let i = 0; i < 5; i++) {
      for (const t of [a, b]) {
        await withTenant(pool, t, async (client) => {
          pids[t].add(client.processID);
          const memory = new Memory(client, embed);
          const { nodeId, created } = await memory.remember(`shared fact number ${i}`, { key: `fact-${i}` });
          assert.ok(created);
          nodes[t].add(nodeId);
          await memory.reinforce([nodeId], 0.1);
          for (const table of ['nodes', 'node_embeddings', 'consciousness_streams', 'node_energy']) {
            const { rows } = await client.query(`SELECT DISTINCT user_id FROM fractality.${table}`);
            assert.deepEqual(rows.map((r) => r.user_id), [t], table);
          }
          const recalled = await memory.recall('shared fact', { k: 50, words: 'shared fact' });
          assert.deepEqual(new Set(recalled.map((r) => r.node_id)), nodes[t]);
        });
      }
    }
    assert.ok([...pids[a]].some((pid) => pids[b].has(pid)), 'some pooled connection served both tenants');
    for (const [t, other] of [[a, b], [b, a]]) {
      await withTenant(pool, t, async (client) => {
        for (const id of nodes[other]) {  // the other tenant's nodes do not exist for this one
          await client.query('SAVEPOINT s');
          await assert.rejects(client.query('SELECT fractality.pulse($1, 0.1)', [id]), { code: 'P0002' });
          await client.query('ROLLBACK TO SAVEPOINT s');
        }
      });
    }
    const { rows: [after] } = await pool.query(
      "SELECT current_setting('fractality.user_id', true) AS tenant, (SELECT count(*)::int FROM fractality.nodes) AS n");
    assert.ok(!after.tenant, 'no tenant outside a tenant transaction');
    assert.equal(after.n, 0);
  } finally {
    await pool.end();
  }
});

test('consciousness_update notifications arrive with the documented payloads', async () => {
  const listener = await connect();
  const received = [];
  const arrived = new Promise((resolve) => listener.on('notification', (msg) => {
    received.push(msg);
    if (received.length === 4) resolve();
  }));
  await listener.query('LISTEN consciousness_update');
  // off by default (any session may LISTEN): the writers turn it on
  const pool = new pg.Pool({ ...config(DB), max: 2, options: '-c fractality.notify=on' });
  const user = randomUUID();
  try {
    const nodeId = await withTenant(pool, user, (c) =>
      new Memory(c, embed).remember('The tide comes in twice a day', { key: 'tide' }).then((r) => r.nodeId));
    await withTenant(pool, user, (c) => new Memory(c, embed).sleep(0.5));
    const energy = await withTenant(pool, user, (c) => new Memory(c, embed).reinforce([nodeId], 0.25));
    assert.equal(await withTenant(pool, user, (c) => new Memory(c, embed).forget(null, 'tide')), true);
    await Promise.race([arrived, new Promise((_, reject) => setTimeout(() => reject(new Error('no notification')), 2000))]);
    assert.deepEqual(received.map((m) => m.channel), Array(4).fill('consciousness_update'));
    const [insert, decay, update, del] = received.map((m) => JSON.parse(m.payload));
    // the tenant by the md5 of its id, never the id (which acts as the tenant)
    const tenant = createHash('md5').update(user).digest('hex');
    assert.deepEqual(insert, { node_id: nodeId, node_key: 'tide', tenant, atp: 1, action: 'INSERT' });  // full energy
    assert.deepEqual(decay, { action: 'DECAY', rows: 1, tenant });  // a decay tick: one summary
    assert.deepEqual(Object.keys(update).sort(), ['action', 'atp', 'node_id', 'node_key', 'tenant']);
    assert.equal(update.action, 'UPDATE');
    close(update.atp, energy.get(nodeId));
    close(update.atp, 0.75, 1e-3);  // halved, plus 0.25
    assert.deepEqual([del.action, del.node_id], ['DELETE', nodeId]);
  } finally {
    await pool.end();
    await listener.end();
  }
});

test('remember: a fact told twice is one memory; recall with words finds what the vector misses', async () => {
  const pool = newPool(ROLE, 1);
  try {
    await withTenant(pool, randomUUID(), async (client) => {
      const memory = new Memory(client, embed);
      const first = await memory.remember('Carol plays the cello', { metadata: { heard: 1 } });
      const again = await memory.remember('Carol plays the cello', { metadata: { confirmed: true } });
      assert.deepEqual([first.created, again.created, again.nodeId], [true, false, first.nodeId]);
      await memory.remember('Dave runs marathons', { key: 'dave', ttl: '30 days' });
      const { rows } = await client.query('SELECT node_key, metadata FROM fractality.nodes ORDER BY node_key');
      assert.deepEqual(rows, [{ node_key: 'dave', metadata: {} },
        { node_key: memoryKey('Carol plays the cello'), metadata: { heard: 1, confirmed: true } }]);  // merged
      assert.deepEqual(await memory.recall('Which sport?', { k: 1, minSimilarity: 0.5 }), []);
      const [hit] = await memory.recall('Which sport?', { k: 1, words: 'marathons', minSimilarity: 0.5 });
      assert.equal(hit.key, 'dave');
      assert.ok(hit.similarity < 0.5 && hit.text_rank > 0);
    });
  } finally {
    await pool.end();
  }
});

test('sleep without a tenant is refused and decays nothing', async () => {
  const pool = newPool(undefined, 1);  // the owner: row-level security would not hold it back
  try {
    const user = randomUUID();
    const { nodeId } = await withTenant(pool, user, (c) => new Memory(c, embed).remember('The kettle is on'));
    const client = await pool.connect();
    try {
      await pgvector.registerTypes(client);
      await assert.rejects(new Memory(client, embed).sleep(0.5), /needs a tenant/);
    } finally {
      client.release();
    }
    close((await db.query('SELECT atp FROM fractality.nodes WHERE id = $1', [nodeId])).rows[0].atp, 1.0);
  } finally {
    await pool.end();
  }
});

test("reinforce keeps to the tenant on the owner's connection, which row-level security does not limit", async () => {
  const pool = newPool(undefined, 1);  // the owner
  try {
    const [a, b] = [randomUUID(), randomUUID()];
    const { nodeId: theirs } = await withTenant(pool, b, (c) => new Memory(c, embed).remember("B's secret is the garden gate"));
    await withTenant(pool, a, async (c) => {
      const memory = new Memory(c, embed);
      const { nodeId: mine } = await memory.remember('A keeps the spare key under the mat');
      await assert.rejects(memory.reinforce([mine, theirs], 0.1), new RegExp(`not memories of this tenant: ${theirs}`));
      const fed = await memory.reinforce([mine], 0.1);
      assert.deepEqual([...fed.keys()], [mine]);
    });
    const { rows } = await db.query('SELECT count(*)::int AS n FROM fractality.consciousness_streams WHERE node_id = $1', [theirs]);
    assert.equal(rows[0].n, 0);  // nothing fed to B's memory
  } finally {
    await pool.end();
  }
});

test('texts without ASCII words are different memories', async () => {
  const pool = newPool(ROLE, 1);
  try {
    await withTenant(pool, randomUUID(), async (c) => {
      const memory = new Memory(c, embed);
      const created = [];
      for (const text of ['東京は日本の首都です', 'パリはフランスの首都です', 'Who are you?', 'What is it?', '!!', '??', 'café', 'cafard']) {
        created.push((await memory.remember(text)).created);
      }
      assert.deepEqual(created, Array(8).fill(true));
      assert.equal((await memory.recall('東京は日本の首都です', { k: 1 }))[0].content, '東京は日本の首都です');
    });
  } finally {
    await pool.end();
  }
});

test('a Memory of another model stores and recalls its embeddings', async () => {
  await db.query("SELECT fractality.register_model('node_m4', 4)");
  const axis = { north: [1, 0, 0, 0], east: [0, 1, 0, 0] };
  const pool = newPool(ROLE, 1);
  try {
    await withTenant(pool, randomUUID(), async (client) => {
      const memory = new Memory(client, (text) => axis[text.split(' ').at(-1)], { model: 'node_m4' });
      await memory.remember('the wind blows from the north', { key: 'wind' });
      await memory.remember('the sun rises in the east', { key: 'sun' });
      const [best] = await memory.recall('which way is north', { k: 1 });
      assert.equal(best.key, 'wind');
      close(best.similarity, 1.0);
    });
  } finally {
    await pool.end();
  }
});

test('the example agent runs end to end', async () => {
  const lines = [];
  const results = await run(config(DB), (line) => lines.push(line));
  assert.equal(lines[0], `replay buffer "${BUFFER}" (id ${results.bufferId}) created`);
  assert.deepEqual(results.ada.answers, [['What is the capital of France?', 'Paris is the capital of France']]);
  assert.deepEqual(results.bob.answers, [['What is the name of the cat?', 'Bob has a cat called Miso'],
    ['What is the capital of France?', null]]);  // Ada's fact lives in another tenant
  assert.ok(lines.some((l) => l.includes('"The capital of France is Paris"') && l.endsWith('again')));
  // the live listener: full energy, the night halves it, told again + 0.1, used + 0.2
  const live = lines.filter((l) => l.includes('~ live:') && l.includes('"Paris is the capital of France"'));
  assert.deepEqual(live.map((l) => [l.split(' ')[6], l.slice(-4)]), [['INSERT', '1.00'], ['UPDATE', '0.60'], ['UPDATE', '0.80']]);
  assert.ok(lines.includes('    ~ live: DECAY of 2 memories'));
  const { rows } = await db.query(
    `SELECT n.label, e.atp FROM fractality.node_energy e JOIN fractality.nodes n ON n.id = e.node_id
      WHERE n.user_id = $1 ORDER BY n.label`, [results.ada.userId]);
  assert.deepEqual(rows.map((r) => r.label), ['Ada drinks green tea in the morning', 'Paris is the capital of France']);
  close(rows[0].atp, 0.5, 1e-3);
  close(rows[1].atp, 0.8, 1e-3);
  const { rows: events } = await db.query(
    `SELECT step_number, intent_type, state FROM fractality.query_events(0, 9223372036854775807, 1000, true)
      WHERE episode_id = $1 ORDER BY step_number`, [results.ada.episodeId]);
  assert.deepEqual(events.map((e) => e.intent_type), ['remember', 'remember', 'remember', 'recall']);
  assert.equal(Number(results.ada.steps), 4);

  // replay: transitions with their next state, priorities = |TD error| + epsilon
  const { batch, errors, updated } = results.replay;
  assert.equal(batch.length, 4);
  const byId = new Map(events.map((e) => [e.step_number, e.state]));
  for (const t of batch) {
    assert.ok(Buffer.isBuffer(t.event_id) && t.state.length === 8);
    const last = t.episode_id === String(results.ada.episodeId) ? 3 : 2;  // bigint: a string
    assert.equal(t.next_state === null, t.step_number === last);
    if (t.episode_id === String(results.ada.episodeId)) {
      assert.deepEqual(t.state, byId.get(t.step_number));
      if (t.next_state) assert.deepEqual(t.next_state, byId.get(t.step_number + 1));
    }
  }
  assert.equal(updated, new Set(batch.map((t) => t.event_id.toString('hex'))).size);
  const { rows: items } = await db.query(
    `SELECT event_id, priority FROM fractality.replay_priorities JOIN fractality.replay_buffers USING (buffer_id)
      WHERE name = $1`, [BUFFER]);
  assert.equal(items.length, 4 + 3);
  const priority = new Map(items.map((i) => [i.event_id.toString('hex'), i.priority]));
  batch.forEach((t, i) => close(priority.get(t.event_id.toString('hex')), Math.abs(errors[i]) + 1e-6, 1e-9));
});

test('the agent hears its tenants when given a URL that carries options of its own', async () => {
  // the agent turns fractality.notify on per transaction, not through the connection's options:
  // a URL's own options stay as they are, and the agent still hears its tenants
  const c = config(DB);
  const url = `postgresql://${c.user}@${c.host}:${c.port}/${c.database}?options=${encodeURIComponent('-c jit=off')}`;
  const lines = [];
  await run(url, (line) => lines.push(line));
  assert.ok(lines.some((l) => l.includes('~ live:')), 'the live listener heard the agent');
});

test("the agent takes libpq's key=value connection strings, as psql and the Python client do", async () => {
  const c = config(DB);
  const conninfo = `host=${c.host} port=${c.port} user=${c.user} dbname='${c.database}' options='-c jit=off'`;
  assert.deepEqual(connectionConfig('postgresql://u@h/d'), { connectionString: 'postgresql://u@h/d' });
  assert.throws(() => connectionConfig("host=a password='secret"), (e) => !e.message.includes('secret'));
  // read as libpq reads it: any database name, escapes quoted or not, unknown keys refused
  assert.deepEqual(connectionConfig("host=h port=5 dbname='a+b/c#d e' user=it\\'s password=a\\\\b"),
    { host: 'h', port: 5, database: 'a+b/c#d e', user: "it's", password: 'a\\b', ssl: false });
  assert.throws(() => connectionConfig('passwrd=x host=y'), /"passwrd": unknown/);
  assert.throws(() => connectionConfig('constructor=x'), /"constructor": unknown/);
  assert.deepEqual(connectionConfig("password=ab'c hostaddr=127.0.0.1 host=h application_name=abc\\"),
    { password: "ab'c", application_name: 'abc', host: '127.0.0.1', ssl: false });
  assert.equal(connectionConfig('application_name=a\\ b').application_name, 'a b');
  assert.throws(() => connectionConfig('host=h port= user=postgres'), /invalid integer value "user=postgres"/);
  assert.throws(() => connectionConfig('connect_timeout=abc'), /invalid integer/);
  assert.throws(() => connectionConfig('host=y sslmode=sometimes'), /sslmode/);
  assert.equal(connectionConfig('host=y sslmode=require').ssl.rejectUnauthorized, false);
  const lines = [];
  await run(conninfo, (line) => lines.push(line));
  assert.ok(lines.some((l) => l.includes('~ live:')), 'the live listener heard the agent');
});
