// An example agent using fractality as its memory, from Node.js (node-postgres Pool + pgvector),
// with a listener printing live energy changes from `consciousness_update`.
//
//   node clients/node/agent.js        # FRACTALITY_URL overrides the server
//
// Each conversation is one tenant; each turn one transaction with the tenant set inside it. The
// agent remembers, recalls (query vector + words), reinforces what it used, and logs each step
// as an experience event (write_events_json); then it reads the episode's return and samples a
// replay batch. Writing priorities back (update_priorities) waits for issue 17.
import { randomBytes, randomUUID } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { embed } from './embedding.js';
import { Memory, factKey, withTenant } from './memory.js';

export const DEFAULT_URL = 'postgresql://postgres@localhost:54330/fractality_demo';
const ANSWER_SIMILARITY = 0.3;
const INTENTS = ['remember', 'recall'];

export const CONVERSATIONS = {
  ada: [['tell', 'Paris is the capital of France'], ['tell', 'Ada drinks green tea in the morning'],
    ['tell', 'Paris is the capital of France'], ['ask', 'What is the capital of France?']],
  bob: [['tell', 'Bob has a cat called Miso'], ['ask', 'What is the name of the cat?'],
    ['ask', 'What is the capital of France?']],
};

const nowUs = () => BigInt(Date.now()) * 1000n + process.hrtime.bigint() % 1000n;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function event(episodeId, step, intent, state, rewards) {  // one row of experience_events, as JSON
  const e = { event_id: randomBytes(16).toString('hex'), timestamp: Number(nowUs()), episode_id: episodeId,
    step_number: step, event_type: INTENTS.indexOf(intent) + 1, flags: 0, adna_version_hash: 0,
    sequence_number: step, ...rewards, metadata: { intent_type: intent, executor_id: 'node-agent', parameters: {} } };
  for (let i = 0; i < 8; i++) {
    e[`state_l${i + 1}`] = state[i];
    e[`action_l${i + 1}`] = i === INTENTS.indexOf(intent) ? 1 : 0;
  }
  return e;
}

// `server`: a connection string or a node-postgres config object
export async function run(server, log = console.log) {
  const pool = new pg.Pool({ ...(typeof server === 'string' ? { connectionString: server } : server), max: 4 });
  const tenants = new Map();  // user id -> name: the listener prints only this session's changes
  const facts = new Map();  // node key -> what the agent was told
  const listener = await pool.connect();
  listener.on('notification', (msg) => {
    const u = JSON.parse(msg.payload);
    if (tenants.has(u.user_id)) {
      log(`    ~ live: ${u.action} ${JSON.stringify(facts.get(u.node_key) ?? u.node_key)} energy ${Number(u.atp).toFixed(2)}`);
    }
  });
  await listener.query('LISTEN consciousness_update');
  const started = nowUs();
  const results = {};
  try {
    let episodeId = Number(started);
    for (const [name, turns] of Object.entries(CONVERSATIONS)) {
      const userId = randomUUID();
      tenants.set(userId, name);
      log(`conversation ${name} (tenant ${userId})`);
      const answers = [];
      let step = 0;
      for (const [kind, text] of turns) {
        await withTenant(pool, userId, async (client) => {
          const memory = new Memory(client, embed);
          let e;
          if (kind === 'tell') {
            facts.set(factKey(text), text);
            const { created } = await memory.remember(text, { metadata: { source: name } });
            log(`  remember  ${JSON.stringify(text).padEnd(40)} ${created ? 'new' : 'again'}`);
            e = event(episodeId, step++, 'remember', embed(text), { reward_curiosity: created ? 1 : 0 });
          } else {
            const [best] = await memory.recall(text, { k: 3, words: text });
            const known = best && best.similarity >= ANSWER_SIMILARITY;
            if (known) await memory.reinforce([best.node_id]);
            answers.push([text, known ? best.content : null]);
            log(`  ask       ${JSON.stringify(text).padEnd(40)} -> ${known ? JSON.stringify(best.content) +
              ` (similarity ${best.similarity.toFixed(2)})` : "I don't know"}`);
            e = event(episodeId, step++, 'recall', embed(text), { reward_goal: known ? 1 : 0 });
          }
          await client.query('SELECT fractality.write_events_json($1::text)', [JSON.stringify([e])]);
        });
        await sleep(20);  // let the listener print this turn's live updates before the next turn
      }
      const { rows: [ret] } = await pool.query(
        'SELECT steps, total, discounted FROM fractality.episode_returns($1, $2, 0.9) WHERE episode_id = $3',
        [started.toString(), (nowUs() + 1n).toString(), episodeId]);
      log(`  episode   ${ret.steps} steps, return ${ret.total.toFixed(2)}, discounted (gamma 0.9) ${ret.discounted.toFixed(2)}`);
      results[name] = { userId, episodeId, answers, ...ret };
      episodeId += 1;
    }
    const { rows: batch } = await pool.query(
      'SELECT event_id, priority, weight FROM fractality.sample_experiences(4, 0.6, 0.4, 7) ORDER BY priority DESC, event_id');
    log(`replay batch (seed 7): ${batch.map((r) => `${r.event_id.toString('hex').slice(0, 8)}… p ${r.priority.toFixed(2)} w ${r.weight.toFixed(2)}`).join(', ')}`);
    results.replay = batch;
  } finally {
    await listener.query('UNLISTEN *');
    listener.release();
    await pool.end();
  }
  return results;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const url = process.env.FRACTALITY_URL ?? DEFAULT_URL;
  console.log(`fractality agent, Node.js, against ${url}`);
  run(url).catch((e) => { console.error(`error: ${e.message}`); process.exit(1); });
}
