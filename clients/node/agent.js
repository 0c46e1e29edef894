// An example agent using fractality as its memory, from Node.js (node-postgres Pool + pgvector),
// with a listener printing live energy changes from `consciousness_update`.
//
//   node clients/node/agent.js        # FRACTALITY_URL overrides the server
//                                     # FRACTALITY_LISTEN_URL the listener's (default: the same)
//
// Each conversation is one tenant; each turn one transaction with the tenant set inside it. The
// agent remembers (a fact told again, in other words, is one memory, reinforced), sleeps (its
// memories lose half their energy), recalls (query vector + words) reinforcing what it answers
// from, and logs each step as an experience event (write_events_json); then it reads the
// episode's return, replays a batch from its replay buffer (replay_batch) and writes toy TD
// errors back (update_priorities).
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { embed } from './embedding.js';
import { checkout, Memory, memoryKey, withTenant } from './memory.js';

export const DEFAULT_URL = 'postgresql://postgres@localhost:54330/fractality_demo';
const ANSWER_SIMILARITY = 0.3;
const INTENTS = ['remember', 'recall'];
export const BUFFER = 'node-agent';
const POLICY_VERSION = 2;  // the events' adna_version_hash: the buffer takes this agent's events only

export const CONVERSATIONS = {
  ada: [['tell', 'Paris is the capital of France'], ['tell', 'Ada drinks green tea in the morning'],
    ['sleep'], ['tell', 'The capital of France is Paris'], ['ask', 'What is the capital of France?']],
  bob: [['tell', 'Bob has a cat called Miso'], ['ask', 'What is the name of the cat?'],
    ['ask', 'What is the capital of France?']],
};

// microseconds since the epoch, from the wall clock (as the server's now()), never backwards and
// never the same twice within a run
let lastUs = 0n;
const nowUs = () => {
  const us = BigInt(Date.now()) * 1000n;
  lastUs = us > lastUs ? us : lastUs + 1n;
  return lastUs;
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function event(episodeId, step, intent, state, rewards) {  // one row of experience_events, as JSON
  const e = { event_id: randomBytes(16).toString('hex'), timestamp: Number(nowUs()), episode_id: episodeId,
    step_number: step, event_type: INTENTS.indexOf(intent) + 1, flags: 0, adna_version_hash: POLICY_VERSION,
    sequence_number: step, ...rewards, metadata: { intent_type: intent, executor_id: 'node-agent', parameters: {} } };
  for (let i = 0; i < 8; i++) {
    e[`state_l${i + 1}`] = state[i];
    e[`action_l${i + 1}`] = i === INTENTS.indexOf(intent) ? 1 : 0;
  }
  return e;
}

// the agent's replay buffer, created once (42710: another session created it meanwhile)
export async function ensureBuffer(pool) {
  const find = async () => (await pool.query('SELECT buffer_id FROM fractality.replay_buffers WHERE name = $1', [BUFFER])).rows[0];
  const found = await find();
  if (found) return { bufferId: found.buffer_id, created: false };
  try {
    const { rows: [{ id }] } = await pool.query(
      'SELECT fractality.create_replay_buffer($1, policy_version => $2) AS id', [BUFFER, POLICY_VERSION]);
    return { bufferId: id, created: true };
  } catch (e) {
    if (e.code !== '42710') throw e;
    return { bufferId: (await find()).buffer_id, created: false };
  }
}

// a learner's step: a batch of transitions, TD errors of a toy critic (V = the batch's mean
// reward, 0 after an episode's end), |TD error| written back as priorities
// (one transaction on one connection: the priorities go back to the items where this session drew
// them, and together with the draw)
export async function learn(pool, n, seed, gamma = 0.9) {
  const client = await checkout(pool);
  let broken;
  try {
    await client.query('BEGIN');
    const { rows: batch } = await client.query(
      `SELECT event_id, episode_id, step_number, intent_type, state, next_state, total_reward, priority, weight
         FROM fractality.replay_batch($1, $2, seed => $3)`, [BUFFER, n, seed]);
    const v = batch.reduce((s, t) => s + t.total_reward, 0) / (batch.length || 1);
    const errors = batch.map((t) => t.total_reward + (t.next_state ? gamma * v : 0) - v);
    const { rows: [{ updated }] } = await client.query(
      'SELECT fractality.update_priorities($1, $2::bytea[], $3::float8[]) AS updated',
      [BUFFER, batch.map((t) => t.event_id), errors.map(Math.abs)]);
    await client.query('COMMIT');
    return { batch, errors, updated: Number(updated) };
  } catch (e) {
    await client.query('ROLLBACK').catch((r) => { broken = r; });
    throw e;
  } finally {
    client.release(broken);
  }
}

// The libpq keywords node-postgres can follow, and what it calls them (the others, such as
// service or target_session_attrs, are refused by name rather than silently left out).
const LIBPQ_KEYS = {
  host: 'host', hostaddr: 'host', port: 'port', dbname: 'database', user: 'user', password: 'password',
  options: 'options', application_name: 'application_name', fallback_application_name: 'fallback_application_name',
  client_encoding: 'client_encoding', connect_timeout: 'connect_timeout', sslmode: 'sslmode',
  sslrootcert: 'sslrootcert', sslcert: 'sslcert', sslkey: 'sslkey',
};

// A connection string as node-postgres takes it: a URL as it is ({connectionString}), and libpq's
// key=value form ('host=localhost port=5432 dbname=x', what psql and the Python client take),
// which node-postgres does not read (it would take the first word for a host), as a config object:
// values quoted or not, backslash escapes as libpq reads them, an unknown key refused.
export function connectionConfig(s) {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(s.trim())) return { connectionString: s };
  const found = {};
  // a value quoted ('...', with \\ and \' escapes), or a word (a quote inside it is a quote; a
  // backslash escapes what follows, a trailing one is dropped), as libpq reads them
  const pair = /\s*([A-Za-z_]+)\s*=\s*(?:'((?:[^'\\]|\\.)*)'|((?:[^\s'\\]|\\[^]?)(?:[^\s\\]|\\[^]?)*)|)\s*/y;
  for (let at = 0; at < s.length;) {
    pair.lastIndex = at;
    const m = pair.exec(s);
    if (!m || pair.lastIndex === at) {  // the string itself is not told: it may hold a password
      throw new Error(`the connection string is neither a URL nor libpq's key=value form (at character ${at + 1})`);
    }
    if (!Object.hasOwn(LIBPQ_KEYS, m[1])) throw new Error(`connection option "${m[1]}": unknown, or not one node-postgres follows`);
    found[m[1]] = (m[2] ?? m[3] ?? '').replace(/\\([^]?)/g, '$1');
    at = pair.lastIndex;
  }
  const integer = (k) => {
    if (!/^\s*[+-]?\d+\s*$/.test(found[k])) throw new Error(`connection option "${k}": invalid integer value "${found[k]}"`);
    return Number(found[k]);
  };
  const config = {};
  for (const [k, v] of Object.entries(found)) {
    if (['sslmode', 'sslrootcert', 'sslcert', 'sslkey', 'connect_timeout', 'fallback_application_name',
      'hostaddr', 'port'].includes(k)) continue;
    config[LIBPQ_KEYS[k]] = v;
  }
  // node-postgres connects where host says: hostaddr, libpq's address to connect to, goes there
  if (found.hostaddr) config.host = found.hostaddr;
  if (found.port !== undefined) config.port = integer('port');
  if (!config.application_name && found.fallback_application_name) config.application_name = found.fallback_application_name;
  if (found.connect_timeout !== undefined) config.connectionTimeoutMillis = integer('connect_timeout') * 1000;
  // libpq reads require with a root certificate as verify-ca
  const mode = found.sslmode === 'require' && found.sslrootcert ? 'verify-ca' : (found.sslmode ?? 'prefer');
  if (mode === 'disable' || mode === 'allow' || mode === 'prefer') {
    config.ssl = false;  // node-postgres has no "try TLS, then plain": prefer and allow connect plainly
  } else if (['require', 'verify-ca', 'verify-full'].includes(mode)) {
    const read = (f) => (f ? readFileSync(f).toString() : undefined);
    config.ssl = {
      rejectUnauthorized: mode !== 'require' || Boolean(found.sslrootcert),
      ca: read(found.sslrootcert), cert: read(found.sslcert), key: read(found.sslkey),
      ...(mode === 'verify-ca' ? { checkServerIdentity: () => undefined } : {}),
    };
  } else {
    throw new Error(`connection option "sslmode": "${mode}" is none of disable, allow, prefer, require, verify-ca, verify-full`);
  }
  return config;
}

// `server`: a connection string (a URL or libpq's key=value form) or a node-postgres config object;
// `listen`: the same for the connection that LISTENs (a session of its own: behind a pooler in
// transaction mode, give the server's own address here)
export async function run(server, log = console.log, { listen = server } = {}) {
  const config = typeof server === 'string' ? connectionConfig(server) : { ...server };
  const pool = new pg.Pool({ ...config, max: 4 });
  // an idle pooled connection that is lost (a server restart) is reported, not thrown: pg-pool
  // emits it on the pool, and an unheard 'error' event would end the process
  pool.on('error', (e) => log(`    ~ a pooled connection was lost (${e.message})`));
  const tenants = new Map();  // md5 of a user id -> name: the listener prints only this session's changes
  const facts = new Map();  // node key -> what the agent was told
  const listener = new pg.Client(typeof listen === 'string' ? connectionConfig(listen) : { ...listen });
  await listener.connect();
  // a lost listening connection (a server restart, a terminated backend) ends the live output,
  // not the process: an unheard 'error' event of a client would end it
  listener.on('error', (e) => log(`    ~ live: listening stopped (${e.message})`));
  listener.on('notification', (msg) => {
    // any session may NOTIFY this channel: a payload that is not fractality's is passed over
    let u;
    try {
      u = JSON.parse(msg.payload);
    } catch {
      return;
    }
    // a payload names its tenant by the md5 of its id (the id itself acts as the tenant)
    if (u === null || typeof u !== 'object' || !tenants.has(u.tenant)) return;
    if (u.node_key === undefined) log(`    ~ live: ${u.action} of ${u.rows} memories`);  // a decay tick's summary
    else log(`    ~ live: ${u.action} ${JSON.stringify(facts.get(u.node_key) ?? u.node_key)} energy ${Number(u.atp).toFixed(2)}`);
  });
  const started = nowUs();
  const results = {};
  try {
    await listener.query('LISTEN consciousness_update');
    const { bufferId, created } = await ensureBuffer(pool);  // before the first event
    log(`replay buffer ${JSON.stringify(BUFFER)} (id ${bufferId}) ${created ? 'created' : 'already there'}`);
    let episodeId = Number(started);
    for (const [name, turns] of Object.entries(CONVERSATIONS)) {
      const userId = randomUUID();
      tenants.set(createHash('md5').update(userId).digest('hex'), name);
      log(`conversation ${name} (tenant ${userId})`);
      const answers = [];
      let step = 0;
      for (const [kind, text] of turns) {
        // one transaction per turn, run again if another session got in its way (withTenant):
        // the turn keeps its lines and answer until it has committed
        // the agent prints its tenants' changes live, so its turns send them (fractality.notify is
        // off by default: any session of the database may LISTEN), for their transaction only
        const done = await withTenant(pool, userId, async (client) => {
          const memory = new Memory(client, embed);
          const turn = { lines: [], answer: undefined, stepped: false };
          let e;
          if (kind === 'tell') {
            const { created } = await memory.remember(text, { metadata: { source: name } });
            // the key remember derived, known before the commit sends its notification (setting
            // it again on a second try is the same)
            if (created) facts.set(memoryKey(text), text);
            turn.lines.push(`  remember  ${JSON.stringify(text).padEnd(40)} ${created ? 'new' : 'again'}`);
            e = event(episodeId, step, 'remember', embed(text), { reward_curiosity: created ? 1 : 0 });
          } else if (kind === 'sleep') {
            turn.lines.push(`  sleep     ${await memory.sleep(0.5)} memories keep half their energy`);
            return turn;
          } else {  // one call: the best memory above the threshold (or matching the words), fed on use
            const [best] = await memory.recall(text, { k: 1, words: text, minSimilarity: ANSWER_SIMILARITY, reinforce: 0.2 });
            turn.answer = [text, best ? best.content : null];
            turn.lines.push(`  ask       ${JSON.stringify(text).padEnd(40)} -> ${best ? JSON.stringify(best.content) +
              ` (similarity ${best.similarity === null ? '-' : best.similarity.toFixed(2)})` : "I don't know"}`);
            e = event(episodeId, step, 'recall', embed(text), { reward_goal: best ? 1 : 0 });
          }
          await client.query('SELECT fractality.write_events_json($1::text)', [JSON.stringify([e])]);
          turn.stepped = true;
          return turn;
        }, { settings: { 'fractality.notify': 'on' } });
        done.lines.forEach((line) => log(line));
        if (done.answer) answers.push(done.answer);
        if (done.stepped) step++;
        await sleep(20);  // let the listener print this turn's live updates before the next turn
      }
      const { rows: [ret] } = await pool.query(
        'SELECT steps, total, discounted FROM fractality.episode_returns($1, $2, 0.9) WHERE episode_id = $3',
        [started.toString(), (nowUs() + 1n).toString(), episodeId]);
      log(`  episode   ${ret.steps} steps, return ${ret.total.toFixed(2)}, discounted (gamma 0.9) ${ret.discounted.toFixed(2)}`);
      results[name] = { userId, episodeId, answers, ...ret };
      episodeId += 1;
    }
    const replay = await learn(pool, 4, 7);
    log(`replay batch (seed 7): ${replay.batch.map((t, i) => `${t.intent_type} p ${t.priority.toFixed(2)} ` +
      `|TD| ${Math.abs(replay.errors[i]).toFixed(2)}`).join(', ')}; ${replay.updated} priorities written back`);
    results.replay = replay;
    results.bufferId = bufferId;
  } finally {
    // the listener's own connection: closed, whether or not it is still there
    await listener.end().catch(() => undefined);
    await pool.end();
  }
  return results;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const url = process.env.FRACTALITY_URL ?? DEFAULT_URL;
  console.log(`fractality agent, Node.js, against ${url}`);
  run(url, console.log, { listen: process.env.FRACTALITY_LISTEN_URL ?? url }).catch((e) => {
    console.error(`error${e.code ? ` (${e.code})` : ''}: ${e.message}${e.hint ? `\nhint: ${e.hint}` : ''}`);
    process.exit(1);
  });
}
