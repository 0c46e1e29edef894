//! Deterministic benchmark data at a chosen scale, loaded with binary COPY.
//!
//! One seed gives the same data every time (given the same anchor time): tenants, a clustered
//! graph of nodes with 384-d embeddings (model 'default'), edges mostly within a tenant's
//! cluster, stream points, policies and RL experience events. Each table draws from its own
//! random stream, so that changing the number of events does not change the graph.
//!
//! Embeddings are clustered: K random unit centres (K = nodes / 100, at least 10), each node
//! `normalize(centre + noise)` with a noise of squared norm s² in [0.12, 0.32], so that two nodes of
//! a cluster have cosine 1 / sqrt((1 + s²a)(1 + s²b)), about 0.76–0.89, and nodes of different
//! clusters about 0 (random unit vectors in 384 dimensions are nearly orthogonal). Every cluster
//! is shared by several tenants, so cross-tenant consensus has material.
//!
//! The same generator, with its own streams, makes the tenants and embeddings of another model
//! (`bench_1536`: 20 tenants, 1536 dimensions): [`build_graph`] and [`edges_from`] take the
//! random stream and the shape.
//!
//! The encoders (`encode_*`) write PostgreSQL's binary COPY format to any `Write`, so they are
//! tested without a database; [`load`] streams them into the server. Embeddings are loaded the
//! documented way: the model's HNSW indexes dropped (`fractality.drop_model_index`), COPY, then
//! built on every partition (`fractality.build_model_index`, [`build_model_index`]), whose time
//! is reported in all and per partition.

use std::collections::HashMap;
use std::io::{self, Write};
use std::time::Instant;

use postgres::Client;
use rand::rngs::StdRng;
use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use uuid::Uuid;

pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Dimension of the embeddings of model 'default' (`fractality.embedding_models`).
pub const DIM: usize = 384;
/// The model of the generated graph's embeddings.
pub const MODEL: &str = "default";
const DAY_US: i64 = 86_400_000_000;
/// Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 UTC).
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// What to generate.
#[derive(Clone, Debug, PartialEq)]
pub struct Params {
    pub seed: u64,
    pub nodes: usize,
    pub events: usize,
    pub users: usize,
    /// "Now" for the data, µs since the Unix epoch: every timestamp is relative to it.
    pub anchor_us: i64,
}

impl Params {
    /// Number of embedding clusters: nodes / 100, at least 10.
    pub fn clusters(&self) -> usize {
        (self.nodes / 100).max(10)
    }
}

/// A random stream of its own for each table, derived from the seed and the stream's name.
pub fn rng(seed: u64, stream: &str) -> StdRng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for b in stream.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    StdRng::seed_from_u64(seed ^ h)
}

/// A version 4 uuid drawn from `rng` (not from the OS).
pub fn uuid(rng: &mut StdRng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random()).into_uuid()
}

// ---- vectors ---------------------------------------------------------------------------------

pub fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 {
        v.iter_mut().for_each(|x| *x /= norm);
    }
}

pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    dot / (na * nb)
}

/// A random unit vector of `DIM` dimensions.
pub fn random_unit(rng: &mut StdRng) -> Vec<f32> {
    random_unit_of(rng, DIM)
}

/// A random unit vector of `dims` dimensions.
pub fn random_unit_of(rng: &mut StdRng, dims: usize) -> Vec<f32> {
    let mut v: Vec<f32> = (0..dims).map(|_| rng.sample(StandardNormal)).collect();
    normalize(&mut v);
    v
}

/// `normalize(centre + noise)`, the noise's expected squared norm being `noise` (in the
/// centre's dimension).
pub fn clustered(centre: &[f32], noise: f32, rng: &mut StdRng) -> Vec<f32> {
    let sigma = (noise / centre.len() as f32).sqrt();
    let mut v: Vec<f32> = centre
        .iter()
        .map(|c| c + sigma * rng.sample::<f32, _>(StandardNormal))
        .collect();
    normalize(&mut v);
    v
}

// ---- the graph -------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub id: Uuid,
    /// Index into `Graph::users`.
    pub user: u32,
    pub cluster: u32,
    /// Squared norm of the embedding's noise around the cluster centre.
    pub noise: f32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub users: Vec<Uuid>,
    pub centres: Vec<Vec<f32>>,
    pub nodes: Vec<Node>,
}

/// Tenants sharing each cluster (fewer when there are fewer tenants).
const USERS_PER_CLUSTER: usize = 5;

/// Tenants, cluster centres and nodes: node i belongs to cluster i mod K and to one of the
/// tenants of that cluster.
pub fn graph(p: &Params) -> Graph {
    build_graph(
        &mut rng(p.seed, "graph"),
        p.users,
        p.nodes,
        p.clusters(),
        DIM,
    )
}

/// `users` tenants, `k` cluster centres of `dims` dimensions and `nodes` nodes drawn from `rng`:
/// node i belongs to cluster i mod k and to one of the tenants of that cluster.
pub fn build_graph(rng: &mut StdRng, users: usize, nodes: usize, k: usize, dims: usize) -> Graph {
    let users: Vec<Uuid> = (0..users.max(1)).map(|_| uuid(rng)).collect();
    let centres: Vec<Vec<f32>> = (0..k).map(|_| random_unit_of(rng, dims)).collect();
    let per_cluster = USERS_PER_CLUSTER.min(users.len());
    let cluster_users: Vec<Vec<u32>> = (0..k)
        .map(|_| {
            index::sample(rng, users.len(), per_cluster)
                .into_iter()
                .map(|u| u as u32)
                .collect()
        })
        .collect();
    let nodes = (0..nodes)
        .map(|i| {
            let cluster = i % k;
            let owners = &cluster_users[cluster];
            Node {
                id: uuid(rng),
                user: owners[rng.random_range(0..owners.len())],
                cluster: cluster as u32,
                noise: rng.random_range(0.12..0.32),
            }
        })
        .collect();
    Graph {
        users,
        centres,
        nodes,
    }
}

const TOPICS: [&str; 20] = [
    "memory",
    "energy",
    "river",
    "market",
    "protein",
    "galaxy",
    "language",
    "music",
    "garden",
    "network",
    "climate",
    "ocean",
    "city",
    "dream",
    "algorithm",
    "forest",
    "harbor",
    "signal",
    "engine",
    "library",
];
const QUALIFIERS: [&str; 20] = [
    "quiet", "bright", "ancient", "rapid", "hidden", "shared", "fragile", "deep", "open",
    "distant", "warm", "silent", "golden", "broken", "living", "early", "northern", "strange",
    "simple", "layered",
];
const TYPES: [&str; 5] = ["concept", "memory", "entity", "event", "skill"];

fn topic(cluster: u32) -> (&'static str, &'static str) {
    let c = cluster as usize;
    (
        TOPICS[c % TOPICS.len()],
        QUALIFIERS[(c / TOPICS.len()) % QUALIFIERS.len()],
    )
}

/// COPY columns of `encode_nodes`.
pub const NODE_COLUMNS: &str = "id, user_id, node_key, label, type, metadata, atp, atp_at";

/// Nodes: key `node-<i>`, a label and a description naming the cluster's topic, metadata with the
/// cluster (ground truth for benchmarks), ATP uniform in [0, 1], `atp_at` within the last 3 days.
pub fn encode_nodes<W: Write>(g: &Graph, p: &Params, out: W) -> io::Result<u64> {
    encode_nodes_as(g, &mut rng(p.seed, "nodes"), "node-", p.anchor_us, out)
}

/// As [`encode_nodes`]: keys `<prefix><i>`, type, ATP and `atp_at` drawn from `rng`.
pub fn encode_nodes_as<W: Write>(
    g: &Graph,
    rng: &mut StdRng,
    prefix: &str,
    anchor_us: i64,
    out: W,
) -> io::Result<u64> {
    let mut enc = CopyEncoder::new(out);
    for (i, n) in g.nodes.iter().enumerate() {
        let (topic, qualifier) = topic(n.cluster);
        let metadata = serde_json::json!({
            "description": format!("Notes on the {qualifier} {topic}, observation {i}"),
            "cluster": n.cluster,
            "source": "fractality-bench",
        });
        enc.row(8)?
            .uuid(&n.id)
            .uuid(&g.users[n.user as usize])
            .text(&format!("{prefix}{i}"))
            .text(&format!("{qualifier} {topic} {i}"))
            .text(TYPES[rng.random_range(0..TYPES.len())])
            .jsonb(&metadata.to_string())
            .f64(rng.random())
            .timestamptz(anchor_us - rng.random_range(0..3 * DAY_US));
    }
    enc.finish()
}

/// COPY columns of `encode_embeddings` (node_embeddings' primary key first).
pub const EMBEDDING_COLUMNS: &str = "user_id, node_id, model, embedding, model_version";

/// The graph's embeddings, model 'default': each node `clustered` around its cluster's centre.
pub fn encode_embeddings<W: Write>(g: &Graph, p: &Params, out: W) -> io::Result<u64> {
    encode_model_embeddings(g, &mut rng(p.seed, "embeddings"), MODEL, out)
}

/// The embeddings of `g`'s nodes for `model` (of the centres' dimension), drawn from `rng`.
pub fn encode_model_embeddings<W: Write>(
    g: &Graph,
    rng: &mut StdRng,
    model: &str,
    out: W,
) -> io::Result<u64> {
    let mut enc = CopyEncoder::new(out);
    for n in &g.nodes {
        let v = clustered(&g.centres[n.cluster as usize], n.noise, rng);
        enc.row(5)?
            .uuid(&g.users[n.user as usize])
            .uuid(&n.id)
            .text(model)
            .vector(&v)
            .text("bench-clustered-v1");
    }
    enc.finish()
}

#[derive(Clone, Debug, PartialEq)]
pub struct Edge {
    pub id: Uuid,
    pub from: u32,
    pub to: u32,
    pub relationship: &'static str,
    pub weight: f64,
}

/// About 4 edges per node (3 to 5), all within the node's tenant: 85% to a node of the same
/// tenant and cluster, the rest to any node of the tenant. 80% 'child', 20% 'resonates_with';
/// weight in [0.05, 1] for 90%, in [-1, 0) for the rest. No self-loops, no duplicates.
pub fn edges(g: &Graph, p: &Params) -> Vec<Edge> {
    edges_from(g, &mut rng(p.seed, "edges"))
}

/// As [`edges`], drawn from `rng`.
pub fn edges_from(g: &Graph, rng: &mut StdRng) -> Vec<Edge> {
    let mut by_group: HashMap<(u32, u32), Vec<u32>> = HashMap::new();
    let mut by_user: Vec<Vec<u32>> = vec![Vec::new(); g.users.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        by_group
            .entry((n.user, n.cluster))
            .or_default()
            .push(i as u32);
        by_user[n.user as usize].push(i as u32);
    }
    let mut edges = Vec::with_capacity(g.nodes.len() * 4);
    let mut mine: Vec<(u32, &'static str)> = Vec::with_capacity(8);
    for (i, n) in g.nodes.iter().enumerate() {
        let from = i as u32;
        let group = &by_group[&(n.user, n.cluster)];
        let tenant = &by_user[n.user as usize];
        let wanted = rng.random_range(3..=5);
        mine.clear();
        for _ in 0..wanted * 4 {
            if mine.len() == wanted {
                break;
            }
            let pool = if group.len() > 1 && rng.random_bool(0.85) {
                group
            } else {
                tenant
            };
            let to = pool[rng.random_range(0..pool.len())];
            let relationship = if rng.random_bool(0.8) {
                "child"
            } else {
                "resonates_with"
            };
            if to == from || mine.contains(&(to, relationship)) {
                continue;
            }
            mine.push((to, relationship));
            let weight = if rng.random_bool(0.9) {
                rng.random_range(0.05..=1.0)
            } else {
                rng.random_range(-1.0..0.0)
            };
            edges.push(Edge {
                id: uuid(rng),
                from,
                to,
                relationship,
                weight,
            });
        }
    }
    edges
}

pub const EDGE_COLUMNS: &str = "id, user_id, from_node, to_node, relationship_type, weight";

pub fn encode_edges<W: Write>(g: &Graph, edges: &[Edge], out: W) -> io::Result<u64> {
    let mut enc = CopyEncoder::new(out);
    for e in edges {
        let from = &g.nodes[e.from as usize];
        enc.row(6)?
            .uuid(&e.id)
            .uuid(&g.users[from.user as usize])
            .uuid(&from.id)
            .uuid(&g.nodes[e.to as usize].id)
            .text(e.relationship)
            .f64(e.weight);
    }
    enc.finish()
}

/// Stream points go back this far from the anchor.
pub const STREAM_DAYS: i64 = 7;
pub const STREAM_COLUMNS: &str =
    "time, node_id, user_id, atp_level, attention_score, resonance_vector";

/// 2 to 4 points per node within the last `STREAM_DAYS` days; a quarter carry a 4-element
/// resonance vector.
pub fn encode_streams<W: Write>(g: &Graph, p: &Params, out: W) -> io::Result<u64> {
    let mut rng = rng(p.seed, "streams");
    let mut enc = CopyEncoder::new(out);
    for n in &g.nodes {
        for _ in 0..rng.random_range(2..=4) {
            let time = p.anchor_us - rng.random_range(0..STREAM_DAYS * DAY_US);
            let resonance: Option<[f32; 4]> = rng.random_bool(0.25).then(|| rng.random());
            enc.row(6)?
                .timestamptz(time)
                .uuid(&n.id)
                .uuid(&g.users[n.user as usize])
                .f64(rng.random())
                .f64(rng.random())
                .real_array(resonance.as_ref().map(|r| &r[..]));
        }
    }
    enc.finish()
}

// ---- experience ------------------------------------------------------------------------------

/// Events go back this far from the anchor.
pub const EVENT_DAYS: i64 = 30;
const STATE_BINS: usize = 8;

#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    pub state_bin_id: String,
    pub rule_id: String,
    pub version: i32,
    pub version_hash: i32,
    /// Index into the policy list of the version this one replaced.
    pub parent: Option<usize>,
    pub is_active: bool,
}

/// Two versions per state bin: version 1 (inactive) and version 2 (active, child of 1).
pub fn policies(p: &Params) -> Vec<Policy> {
    let mut rng = rng(p.seed, "policies");
    let mut out = Vec::with_capacity(2 * STATE_BINS);
    for bin in 0..STATE_BINS {
        for version in 1..=2 {
            out.push(Policy {
                state_bin_id: format!("bin-{bin}"),
                rule_id: format!("rule-{bin}-v{version}"),
                version,
                version_hash: rng.random(),
                parent: (version == 2).then(|| out.len() - 1),
                is_active: version == 2,
            });
        }
    }
    out
}

#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub timestamp_us: i64,
    pub event_id: [u8; 16],
    pub episode_id: i64,
    pub step_number: i32,
    pub event_type: i16,
    pub flags: i16,
    pub state: [f32; 8],
    pub action: [f32; 8],
    /// homeostasis, curiosity, efficiency, goal.
    pub rewards: [f32; 4],
    pub adna_version_hash: i32,
    pub sequence_number: i32,
}

/// Flag bits of generated events.
pub const FLAG_TERMINAL: i16 = 1;
pub const FLAG_EXPLORATORY: i16 = 2;

/// Exactly `p.events` events in episodes of 50 to 200 steps (the last one may be shorter), over
/// the last `EVENT_DAYS` days, in time order; `sequence_number` is the position in that order.
/// State walks randomly in [0, 1]; actions in [-1, 1]; rewards follow state and action, with a
/// goal reward at some episode ends. An episode runs the policy of one state bin: version 1 in
/// the older half of the window, version 2 in the newer.
pub fn events(p: &Params, policies: &[Policy]) -> Vec<Event> {
    let mut rng = rng(p.seed, "events");
    let window = EVENT_DAYS * DAY_US;
    let mut out = Vec::with_capacity(p.events);
    let mut episode_id = 0i64;
    while out.len() < p.events {
        episode_id += 1;
        let steps = rng.random_range(50..=200).min(p.events - out.len());
        let dt = rng.random_range(50_000..2_000_000i64); // 50 ms to 2 s a step
        let start = p.anchor_us - window + rng.random_range(0..window - 200 * 2_000_000);
        let bin = rng.random_range(0..STATE_BINS);
        let newer = start > p.anchor_us - window / 2;
        let policy = &policies[(2 * bin + usize::from(newer)).min(policies.len() - 1)];
        let mut state: [f32; 8] = rng.random();
        for step in 0..steps {
            for s in &mut state {
                *s = (*s + 0.05 * rng.sample::<f32, _>(StandardNormal)).clamp(0.0, 1.0);
            }
            let action: [f32; 8] = std::array::from_fn(|_| {
                (0.4 * rng.sample::<f32, _>(StandardNormal)).clamp(-1.0, 1.0)
            });
            let terminal = step + 1 == steps;
            let deviation = state.iter().map(|s| (s - 0.5).abs()).sum::<f32>() / 8.0;
            let effort = action.iter().map(|a| a.abs()).sum::<f32>() / 8.0;
            let goal = if terminal && rng.random_bool(0.3) {
                1.0
            } else {
                0.0
            };
            let event_type = match rng.random_range(0..100) {
                0..40 => 0,  // observation
                40..80 => 1, // action
                80..90 => 2, // reward
                90..95 => 3, // policy update
                _ => 4,      // error
            };
            let mut flags = 0;
            if terminal {
                flags |= FLAG_TERMINAL;
            }
            if rng.random_bool(0.2) {
                flags |= FLAG_EXPLORATORY;
            }
            out.push(Event {
                timestamp_us: start + step as i64 * dt + rng.random_range(0..dt / 4),
                event_id: rng.random(),
                episode_id,
                step_number: step as i32,
                event_type,
                flags,
                state,
                action,
                rewards: [1.0 - 2.0 * deviation, 0.5 * state[1], -0.1 * effort, goal],
                adna_version_hash: policy.version_hash,
                sequence_number: 0,
            });
        }
    }
    out.sort_unstable_by_key(|e| (e.timestamp_us, e.event_id));
    for (i, e) in out.iter_mut().enumerate() {
        e.sequence_number = (i % i32::MAX as usize) as i32;
    }
    out
}

/// COPY columns of `encode_events`: every column of the seed's experience_events except
/// `created_at` and `archived`, which take their defaults. Valid for fractality's table and for
/// the seed's.
pub const EVENT_COLUMNS: &str = "\"timestamp\", event_id, episode_id, step_number, event_type, \
    flags, state_l1, state_l2, state_l3, state_l4, state_l5, state_l6, state_l7, state_l8, \
    action_l1, action_l2, action_l3, action_l4, action_l5, action_l6, action_l7, action_l8, \
    reward_homeostasis, reward_curiosity, reward_efficiency, reward_goal, adna_version_hash, \
    sequence_number";

pub fn encode_events<W: Write>(events: &[Event], out: W) -> io::Result<u64> {
    let mut enc = CopyEncoder::new(out);
    for e in events {
        enc.row(28)?
            .i64(e.timestamp_us)
            .bytea(&e.event_id)
            .i64(e.episode_id)
            .i32(e.step_number)
            .i16(e.event_type)
            .i16(e.flags);
        for &x in e.state.iter().chain(&e.action).chain(&e.rewards) {
            enc.f32(x);
        }
        enc.i32(e.adna_version_hash).i32(e.sequence_number);
    }
    enc.finish()
}

// ---- binary COPY -----------------------------------------------------------------------------

/// Writes PostgreSQL's binary COPY format: a header, rows of length-prefixed big-endian fields,
/// a trailer. Buffers and hands the output over in 256 KiB pieces.
pub struct CopyEncoder<W: Write> {
    out: W,
    buf: Vec<u8>,
    rows: u64,
}

const FLUSH_AT: usize = 256 * 1024;

impl<W: Write> CopyEncoder<W> {
    pub fn new(out: W) -> Self {
        let mut buf = Vec::with_capacity(FLUSH_AT + 16 * 1024);
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        CopyEncoder { out, buf, rows: 0 }
    }

    /// Starts a row of `fields` fields.
    pub fn row(&mut self, fields: i16) -> io::Result<&mut Self> {
        if self.buf.len() >= FLUSH_AT {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.buf.extend_from_slice(&fields.to_be_bytes());
        self.rows += 1;
        Ok(self)
    }

    fn field(&mut self, data: &[u8]) -> &mut Self {
        self.buf
            .extend_from_slice(&(data.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(data);
        self
    }

    pub fn null(&mut self) -> &mut Self {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }
    pub fn i16(&mut self, v: i16) -> &mut Self {
        self.field(&v.to_be_bytes())
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.field(&v.to_be_bytes())
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.field(&v.to_be_bytes())
    }
    pub fn f32(&mut self, v: f32) -> &mut Self {
        self.field(&v.to_be_bytes())
    }
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.field(&v.to_be_bytes())
    }
    pub fn text(&mut self, v: &str) -> &mut Self {
        self.field(v.as_bytes())
    }
    pub fn bytea(&mut self, v: &[u8]) -> &mut Self {
        self.field(v)
    }
    pub fn uuid(&mut self, v: &Uuid) -> &mut Self {
        self.field(v.as_bytes())
    }
    /// jsonb: a version byte (1), then the JSON text.
    pub fn jsonb(&mut self, json: &str) -> &mut Self {
        self.buf
            .extend_from_slice(&(json.len() as i32 + 1).to_be_bytes());
        self.buf.push(1);
        self.buf.extend_from_slice(json.as_bytes());
        self
    }
    /// timestamptz from µs since the Unix epoch.
    pub fn timestamptz(&mut self, unix_us: i64) -> &mut Self {
        self.i64(unix_us - PG_EPOCH_US)
    }
    /// pgvector's `vector`: int16 dimensions, int16 unused (0), float4 elements.
    pub fn vector(&mut self, v: &[f32]) -> &mut Self {
        self.buf
            .extend_from_slice(&(4 + 4 * v.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(&(v.len() as i16).to_be_bytes());
        self.buf.extend_from_slice(&0i16.to_be_bytes());
        for x in v {
            self.buf.extend_from_slice(&x.to_be_bytes());
        }
        self
    }
    /// A one-dimensional `real[]` without NULL elements, or NULL.
    pub fn real_array(&mut self, v: Option<&[f32]>) -> &mut Self {
        const FLOAT4_OID: u32 = 700;
        let Some(v) = v else { return self.null() };
        self.buf
            .extend_from_slice(&(20 + 8 * v.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(&1i32.to_be_bytes()); // dimensions
        self.buf.extend_from_slice(&0i32.to_be_bytes()); // no NULL elements
        self.buf.extend_from_slice(&FLOAT4_OID.to_be_bytes());
        self.buf.extend_from_slice(&(v.len() as i32).to_be_bytes());
        self.buf.extend_from_slice(&1i32.to_be_bytes()); // lower bound
        for x in v {
            self.field(&x.to_be_bytes());
        }
        self
    }

    /// Writes the trailer and the rest of the buffer; returns the number of rows.
    pub fn finish(mut self) -> io::Result<u64> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.out.write_all(&self.buf)?;
        self.out.flush()?;
        Ok(self.rows)
    }
}

// ---- loading ---------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct LoadStep {
    pub what: String,
    pub rows: u64,
    pub secs: f64,
}

/// COPY `sql` with what `encode` writes; returns (rows, seconds).
fn copy<F>(client: &mut Client, sql: &str, encode: F) -> Result<(u64, f64), Error>
where
    F: FnOnce(&mut postgres::CopyInWriter<'_>) -> io::Result<u64>,
{
    let started = Instant::now();
    let mut writer = client.copy_in(sql)?;
    let encoded = encode(&mut writer)?;
    let rows = writer.finish()?;
    if rows != encoded {
        return Err(format!("{sql}: wrote {encoded} rows, the server took {rows}").into());
    }
    Ok((rows, started.elapsed().as_secs_f64()))
}

/// Creates the monthly partitions of `parent` for every month from `from_us` to `to_us`.
pub fn ensure_months(
    client: &mut Client,
    parent: &str,
    from_us: i64,
    to_us: i64,
) -> Result<(), Error> {
    client.query(
        "SELECT fractality._create_month_partition($1::text::regclass, m.month)
           FROM (SELECT DISTINCT date_trunc('month', d)::date AS month
                   FROM (SELECT generate_series(lo, hi, interval '1 day') AS d
                           FROM (SELECT to_timestamp($2::float8) AT TIME ZONE 'UTC' AS lo,
                                        to_timestamp($3::float8) AT TIME ZONE 'UTC' AS hi) b
                         UNION ALL
                         SELECT to_timestamp($3::float8) AT TIME ZONE 'UTC') days) m",
        &[&parent, &(from_us as f64 / 1e6), &(to_us as f64 / 1e6)],
    )?;
    Ok(())
}

/// Inserts the policies; returns their policy_id in the same order.
pub fn insert_policies(client: &mut Client, policies: &[Policy]) -> Result<Vec<i32>, Error> {
    let mut ids: Vec<i32> = Vec::with_capacity(policies.len());
    for pol in policies {
        let parent: Option<i32> = pol.parent.map(|i| ids[i]);
        let weights = format!(
            "{{\"explore\": 0.2, \"exploit\": 0.8, \"version\": {}}}",
            pol.version
        );
        let row = client.query_one(
            "INSERT INTO fractality.adna_policies
                 (state_bin_id, rule_id, action_weights, version, version_hash, parent_policy_id, is_active)
             VALUES ($1, $2, $3::text::jsonb, $4, $5, $6, $7)
             RETURNING policy_id",
            &[&pol.state_bin_id, &pol.rule_id, &weights, &pol.version, &pol.version_hash, &parent, &pol.is_active],
        )?;
        ids.push(row.get(0));
    }
    Ok(ids)
}

/// One model's HNSW index built on every partition of node_embeddings by
/// `fractality.build_model_index`: the wall time of the call and each partition's build.
#[derive(Clone, Debug)]
pub struct IndexBuild {
    pub model: String,
    pub wall_secs: f64,
    /// Maintenance settings of the build, for the report.
    pub settings: String,
    pub partitions: Vec<PartitionBuild>,
}

#[derive(Clone, Debug)]
pub struct PartitionBuild {
    pub partition: String,
    /// Embeddings of the model in the partition.
    pub rows: i64,
    pub secs: f64,
}

impl IndexBuild {
    pub fn rows(&self) -> i64 {
        self.partitions.iter().map(|b| b.rows).sum()
    }

    /// The fastest, median and slowest partition builds (by seconds) among the partitions that
    /// hold rows of the model (all of them when none does).
    pub fn spread(&self) -> Option<[&PartitionBuild; 3]> {
        let mut v: Vec<&PartitionBuild> = self.partitions.iter().filter(|b| b.rows > 0).collect();
        if v.is_empty() {
            v = self.partitions.iter().collect();
        }
        v.sort_by(|a, b| a.secs.total_cmp(&b.secs));
        let n = v.len();
        (n > 0).then(|| [v[0], v[(n - 1) / 2], v[n - 1]])
    }

    /// Partitions holding rows of the model.
    pub fn used(&self) -> usize {
        self.partitions.iter().filter(|b| b.rows > 0).count()
    }

    /// The build as load steps: in all, then the fastest, median and slowest partition.
    pub fn steps(&self) -> Vec<LoadStep> {
        let mut out = vec![LoadStep {
            what: format!(
                "node_embeddings HNSW index of model '{}' on {} partitions ({} holding rows): build_model_index in all ({})",
                self.model,
                self.partitions.len(),
                self.used(),
                self.settings
            ),
            rows: self.rows() as u64,
            secs: self.wall_secs,
        }];
        if let Some(spread) = self.spread() {
            for (label, b) in ["fastest", "median", "slowest"].iter().zip(spread) {
                out.push(LoadStep {
                    what: format!("- {label} partition build ({})", b.partition),
                    rows: b.rows as u64,
                    secs: b.secs,
                });
            }
        }
        out
    }
}

/// `sql` (an index build of `model`, its one parameter) with 2 GB of maintenance_work_mem and as
/// many processes as cores (leader plus workers: the server runs on this machine); its rows,
/// wall seconds and the number of workers.
fn with_build_settings(
    client: &mut Client,
    sql: &str,
    model: &str,
) -> Result<(Vec<postgres::Row>, f64, usize), Error> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1));
    client.batch_execute(&format!(
        "SET maintenance_work_mem = '2GB'; SET max_parallel_maintenance_workers = {workers}"
    ))?;
    let started = Instant::now();
    let rows = client.query(sql, &[&model]);
    let secs = started.elapsed().as_secs_f64();
    client.batch_execute("RESET maintenance_work_mem; RESET max_parallel_maintenance_workers")?;
    Ok((rows?, secs, workers))
}

/// Where the last build of each model's index is kept, for the scenarios to report.
pub const INDEX_BUILDS: &str = "public.fractality_bench_index_builds";

/// Builds the HNSW index of `model` on every partition that lacks it (after a bulk load with
/// the index dropped), with 2 GB of maintenance_work_mem and as many processes as cores;
/// records the build in [`INDEX_BUILDS`].
pub fn build_model_index(client: &mut Client, model: &str) -> Result<IndexBuild, Error> {
    let (built, wall_secs, workers) = with_build_settings(
        client,
        "SELECT partition_name, seconds FROM fractality.build_model_index($1)",
        model,
    )?;
    let rows: HashMap<String, i64> = client
        .query(
            "SELECT c.relname::text, count(*)
               FROM fractality.node_embeddings e JOIN pg_class c ON c.oid = e.tableoid
              WHERE e.model = $1 GROUP BY 1",
            &[&model],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let partitions: Vec<PartitionBuild> = built
        .iter()
        .map(|r| {
            let partition: String = r.get(0);
            PartitionBuild {
                rows: rows.get(&partition).copied().unwrap_or(0),
                secs: r.get(1),
                partition,
            }
        })
        .collect();
    let b = IndexBuild {
        model: model.to_string(),
        wall_secs,
        settings: format!("maintenance_work_mem 2GB, {workers} parallel workers"),
        partitions,
    };
    client.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {INDEX_BUILDS} (model text, partition text, rows bigint,
             seconds float8, wall_seconds float8, settings text, built_at timestamptz DEFAULT now())"
    ))?;
    client.execute(
        &format!("DELETE FROM {INDEX_BUILDS} WHERE model = $1"),
        &[&model],
    )?;
    for pb in &b.partitions {
        client.execute(
            &format!(
                "INSERT INTO {INDEX_BUILDS} (model, partition, rows, seconds, wall_seconds, settings)
                 VALUES ($1, $2, $3, $4, $5, $6)"
            ),
            &[&model, &pb.partition, &pb.rows, &pb.secs, &b.wall_secs, &b.settings],
        )?;
    }
    Ok(b)
}

/// `fractality.build_tenant_graphs(model)` after a load (its default threshold), with the
/// settings of [`build_model_index`]: a graph of its own for every tenant of the model holding
/// at least 500 embeddings. Returns the step: tenants given a graph, their rows, wall time.
pub fn build_tenant_graphs(client: &mut Client, model: &str) -> Result<LoadStep, Error> {
    let (built, secs, _) = with_build_settings(
        client,
        "SELECT tenant_rows FROM fractality.build_tenant_graphs($1) WHERE action = 'built'",
        model,
    )?;
    let rows: i64 = built.iter().map(|r| r.get::<_, i64>(0)).sum();
    Ok(LoadStep {
        what: format!(
            "tenant graphs of model '{model}': build_tenant_graphs, {} tenants of at least 500 embeddings",
            built.len()
        ),
        rows: rows as u64,
        secs,
    })
}

/// The last build of `model`'s index recorded by [`build_model_index`], if any.
pub fn recorded_build(client: &mut Client, model: &str) -> Result<Option<IndexBuild>, Error> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&INDEX_BUILDS])?
        .get(0);
    if !exists {
        return Ok(None);
    }
    let rows = client.query(
        &format!(
            "SELECT partition, rows, seconds, wall_seconds, settings FROM {INDEX_BUILDS}
              WHERE model = $1 ORDER BY partition"
        ),
        &[&model],
    )?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    Ok(Some(IndexBuild {
        model: model.to_string(),
        wall_secs: first.get(3),
        settings: first.get(4),
        partitions: rows
            .iter()
            .map(|r| PartitionBuild {
                partition: r.get(0),
                rows: r.get(1),
                secs: r.get(2),
            })
            .collect(),
    }))
}

/// Empties the tables the generator fills, then loads everything: nodes, embeddings (with the
/// model's HNSW indexes dropped, then built on every partition), edges, streams, policies,
/// events; then ANALYZE. Constraints and triggers stay on; only notifications are turned off.
pub fn load(client: &mut Client, p: &Params) -> Result<Vec<LoadStep>, Error> {
    let mut steps = Vec::new();
    let mut step = |what: &str, rows: u64, secs: f64| {
        eprintln!("  {what}: {rows} rows in {secs:.2} s");
        steps.push(LoadStep {
            what: what.to_string(),
            rows,
            secs,
        });
    };
    client.batch_execute(
        "SET fractality.notify = off;
         TRUNCATE fractality.nodes, fractality.experience_events, fractality.adna_policies
             RESTART IDENTITY CASCADE;",
    )?;
    client.query_one("SELECT fractality.drop_model_index($1)", &[&MODEL])?;

    let started = Instant::now();
    let g = graph(p);
    let edge_list = edges(&g, p);
    let policy_list = policies(p);
    let event_list = events(p, &policy_list);
    eprintln!(
        "  generated in memory in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let sql = format!("COPY fractality.nodes ({NODE_COLUMNS}) FROM STDIN (FORMAT binary)");
    let (rows, secs) = copy(client, &sql, |w| encode_nodes(&g, p, w))?;
    step("nodes", rows, secs);

    let sql =
        format!("COPY fractality.node_embeddings ({EMBEDDING_COLUMNS}) FROM STDIN (FORMAT binary)");
    let (rows, secs) = copy(client, &sql, |w| encode_embeddings(&g, p, w))?;
    step(
        &format!("node_embeddings (model '{MODEL}', {DIM} dimensions, HNSW index dropped)"),
        rows,
        secs,
    );
    for st in build_model_index(client, MODEL)?.steps() {
        step(&st.what, st.rows, st.secs);
    }
    let st = build_tenant_graphs(client, MODEL)?;
    step(&st.what, st.rows, st.secs);

    let sql = format!("COPY fractality.edges ({EDGE_COLUMNS}) FROM STDIN (FORMAT binary)");
    let (rows, secs) = copy(client, &sql, |w| encode_edges(&g, &edge_list, w))?;
    step("edges", rows, secs);

    let stream_from = p.anchor_us - STREAM_DAYS * DAY_US;
    ensure_months(
        client,
        "fractality.consciousness_streams",
        stream_from,
        p.anchor_us,
    )?;
    let sql = format!(
        "COPY fractality.consciousness_streams ({STREAM_COLUMNS}) FROM STDIN (FORMAT binary)"
    );
    let (rows, secs) = copy(client, &sql, |w| encode_streams(&g, p, w))?;
    step("consciousness_streams", rows, secs);

    insert_policies(client, &policy_list)?;
    let event_from = p.anchor_us - EVENT_DAYS * DAY_US;
    ensure_months(
        client,
        "fractality.experience_events",
        event_from,
        p.anchor_us,
    )?;
    let sql =
        format!("COPY fractality.experience_events ({EVENT_COLUMNS}) FROM STDIN (FORMAT binary)");
    let (rows, secs) = copy(client, &sql, |w| encode_events(&event_list, w))?;
    step("experience_events", rows, secs);

    let started = Instant::now();
    client.batch_execute("ANALYZE")?;
    step("ANALYZE", 0, started.elapsed().as_secs_f64());
    client.batch_execute("RESET fractality.notify")?;
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> Params {
        Params {
            seed,
            nodes: 2_000,
            events: 3_000,
            users: 20,
            anchor_us: 1_790_000_000_000_000,
        }
    }

    #[test]
    fn cosine_within_a_cluster_is_about_0_75_to_0_9_and_across_about_0() {
        let p = small(7);
        let g = graph(&p);
        let mut rng = rng(1, "test");
        let a: Vec<Vec<f32>> = (0..40)
            .map(|_| clustered(&g.centres[0], rng.random_range(0.12..0.32), &mut rng))
            .collect();
        let b: Vec<Vec<f32>> = (0..40)
            .map(|_| clustered(&g.centres[1], rng.random_range(0.12..0.32), &mut rng))
            .collect();
        let mut intra = Vec::new();
        for (i, x) in a.iter().enumerate() {
            for y in &a[i + 1..] {
                intra.push(cosine(x, y));
            }
            for y in &b {
                let c = cosine(x, y);
                assert!(c.abs() < 0.25, "cosine across clusters {c}");
            }
        }
        let mean = intra.iter().sum::<f32>() / intra.len() as f32;
        assert!(
            (0.78..0.88).contains(&mean),
            "mean intra-cluster cosine {mean}"
        );
        for c in intra {
            assert!((0.72..0.93).contains(&c), "intra-cluster cosine {c}");
        }
    }

    #[test]
    fn vectors_are_unit() {
        let mut rng = rng(3, "test");
        let v = random_unit(&mut rng);
        assert_eq!(v.len(), DIM);
        approx::assert_abs_diff_eq!(cosine(&v, &v), 1.0, epsilon = 1e-5);
        let n: f32 = v.iter().map(|x| x * x).sum();
        approx::assert_abs_diff_eq!(n, 1.0, epsilon = 1e-5);
    }

    fn payload(p: &Params) -> Vec<u8> {
        let g = graph(p);
        let mut out = Vec::new();
        encode_nodes(&g, p, &mut out).unwrap();
        encode_embeddings(&g, p, &mut out).unwrap();
        encode_edges(&g, &edges(&g, p), &mut out).unwrap();
        encode_streams(&g, p, &mut out).unwrap();
        encode_events(&events(p, &policies(p)), &mut out).unwrap();
        out
    }

    #[test]
    fn same_seed_same_data_other_seed_other_data() {
        let a = payload(&small(42));
        assert_eq!(a, payload(&small(42)));
        assert_ne!(a, payload(&small(43)));
    }

    #[test]
    fn clusters_span_several_tenants() {
        let g = graph(&small(5));
        for c in 0..10u32 {
            let mut owners: Vec<u32> = g
                .nodes
                .iter()
                .filter(|n| n.cluster == c)
                .map(|n| n.user)
                .collect();
            owners.sort_unstable();
            owners.dedup();
            assert!(owners.len() >= 3, "cluster {c} has tenants {owners:?}");
        }
    }

    #[test]
    fn edges_stay_in_the_tenant_without_loops_or_duplicates() {
        let p = small(9);
        let g = graph(&p);
        let e = edges(&g, &p);
        let per_node = e.len() as f64 / g.nodes.len() as f64;
        assert!((3.5..=4.5).contains(&per_node), "{per_node} edges per node");
        let mut seen = std::collections::HashSet::new();
        let mut same_cluster = 0;
        for x in &e {
            let (from, to) = (&g.nodes[x.from as usize], &g.nodes[x.to as usize]);
            assert_ne!(x.from, x.to);
            assert_eq!(from.user, to.user);
            assert!((-1.0..=1.0).contains(&x.weight));
            assert!(seen.insert((x.from, x.to, x.relationship)));
            same_cluster += usize::from(from.cluster == to.cluster);
        }
        assert!(same_cluster as f64 / e.len() as f64 > 0.7);
    }

    #[test]
    fn events_fill_the_window_in_time_order() {
        let p = small(11);
        let pol = policies(&p);
        let ev = events(&p, &pol);
        assert_eq!(ev.len(), p.events);
        let hashes: Vec<i32> = pol.iter().map(|x| x.version_hash).collect();
        for (i, e) in ev.iter().enumerate() {
            assert!(e.timestamp_us <= p.anchor_us);
            assert!(e.timestamp_us >= p.anchor_us - EVENT_DAYS * DAY_US);
            assert_eq!(e.sequence_number, i as i32);
            assert!(hashes.contains(&e.adna_version_hash));
            assert!(e.state.iter().all(|s| (0.0..=1.0).contains(s)));
            assert!(e.action.iter().all(|a| (-1.0..=1.0).contains(a)));
            if i > 0 {
                assert!(ev[i - 1].timestamp_us <= e.timestamp_us);
            }
        }
        let episodes = ev.iter().map(|e| e.episode_id).max().unwrap();
        assert!((15..=60).contains(&episodes), "{episodes} episodes");
    }

    #[test]
    fn binary_copy_framing() {
        let mut out = Vec::new();
        let mut enc = CopyEncoder::new(&mut out);
        enc.row(3)
            .unwrap()
            .timestamptz(PG_EPOCH_US)
            .real_array(None)
            .vector(&[1.0, 0.0]);
        assert_eq!(enc.finish().unwrap(), 1);
        let mut want = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0".to_vec();
        want.extend_from_slice(&[0, 3]); // fields
        want.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]); // 2000-01-01 = 0
        want.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // NULL
        want.extend_from_slice(&[0, 0, 0, 12, 0, 2, 0, 0, 0x3f, 0x80, 0, 0, 0, 0, 0, 0]);
        want.extend_from_slice(&[0xff, 0xff]); // trailer
        assert_eq!(out, want);
    }
}
