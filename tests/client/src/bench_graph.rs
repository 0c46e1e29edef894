//! Benchmark scenario `graph`: `traverse` against the seed's recursive CTE on the same roots,
//! `consciousness_path` between random pairs of a tenant, and `upsert_node` one at a time and in
//! a batch against the seed's `INSERT ... ON CONFLICT` (saveNode).
//!
//! Then `traverse` against the same CTE on three graphs of other shapes (issue 19: no slower on
//! every shape), which the scenario builds in tenants of their own and removes when done: sparse
//! (one child a node), dense (20 children a node) and skewed (a few hubs with thousands of
//! children, most nodes with 0 to 2).

use postgres::{Client, Statement};
use rand::Rng;
use uuid::Uuid;

use crate::bench::{alternate, percentile, thousands, timed, Ctx, Figure, Row, Unit};
use crate::datagen::{self, Error};

/// The seed's traversal (seeds/000, "Recursive CTE for tree traversal"), rooted at an id instead
/// of a key, the depth a parameter: path array, cycle check, product of the weights.
const SEED_CTE: &str = "
WITH RECURSIVE consciousness_tree AS (
    SELECT n.id, n.node_key, n.label, 0 AS depth, ARRAY[n.id] AS path, 1.0::float8 AS accumulated_weight
      FROM fractality.nodes n
     WHERE n.id = $1
    UNION ALL
    SELECT n.id, n.node_key, n.label, ct.depth + 1, ct.path || n.id, ct.accumulated_weight * e.weight
      FROM consciousness_tree ct
      JOIN fractality.edges e ON ct.id = e.from_node
      JOIN fractality.nodes n ON e.to_node = n.id
     WHERE ct.depth < $2
       AND NOT n.id = ANY(ct.path)
       AND e.relationship_type = 'child')
SELECT id, node_key, depth, path, accumulated_weight FROM consciousness_tree
 ORDER BY depth, accumulated_weight DESC";

const NATIVE_TRAVERSE: &str =
    "SELECT node_id, node_key, depth, path, accumulated_weight FROM fractality.traverse($1, $2)";

fn ms(secs: f64) -> f64 {
    secs * 1e3
}

/// Runs both sides once from every root to `depth` (plans, and every page either side will
/// touch in shared buffers), so that neither side pays the first read of a root's neighbourhood
/// for the other.
fn warm(
    client: &mut Client,
    native: &Statement,
    cte: &Statement,
    roots: &[Uuid],
    depth: i32,
) -> Result<(), Error> {
    for r in roots {
        client.query(native, &[r, &depth])?;
        client.query(cte, &[r, &depth])?;
    }
    Ok(())
}

/// `traverse` and the CTE from the same roots, milliseconds per call, and the rows per call of
/// each.
struct Versus {
    native: Vec<f64>,
    cte: Vec<f64>,
    native_rows: f64,
    cte_rows: f64,
}

/// `traverse` and the CTE from each root to `depth` in turns, `passes` times over the roots.
fn versus(
    client: &mut Client,
    native: &Statement,
    cte: &Statement,
    roots: &[Uuid],
    depth: i32,
    passes: usize,
) -> Result<Versus, Error> {
    let calls = roots.len() * passes;
    let (mut n_rows, mut c_rows) = (0usize, 0usize);
    let mut i = 0usize;
    let mut j = 0usize;
    let (a, b) = alternate(
        client,
        calls,
        |c| {
            let root = roots[i % roots.len()];
            i += 1;
            let (got, secs) = timed(|| Ok(c.query(native, &[&root, &depth])?))?;
            n_rows += got.len();
            Ok(ms(secs))
        },
        |c| {
            let root = roots[j % roots.len()];
            j += 1;
            let (got, secs) = timed(|| Ok(c.query(cte, &[&root, &depth])?))?;
            c_rows += got.len();
            Ok(ms(secs))
        },
    )?;
    Ok(Versus {
        native: a,
        cte: b,
        native_rows: n_rows as f64 / calls as f64,
        cte_rows: c_rows as f64 / calls as f64,
    })
}

/// Random roots that have at least one outgoing 'child' edge.
fn roots(client: &mut Client, n: usize, seed: u64) -> Result<Vec<Uuid>, Error> {
    client.execute("SELECT setseed($1)", &[&((seed % 1000) as f64 / 1000.0)])?;
    Ok(client
        .query(
            "SELECT DISTINCT e.from_node FROM fractality.edges e TABLESAMPLE BERNOULLI (5)
              WHERE e.relationship_type = 'child' LIMIT $1",
            &[&(n as i64)],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

pub fn graph(ctx: &mut Ctx<'_>) -> Result<Vec<Row>, Error> {
    let reps = ctx.reps(200);
    let seed = ctx.params.seed;
    let client = &mut *ctx.client;
    let mut rows = Vec::new();

    // ---- traverse vs the seed's CTE, depth 3 and 5, the same roots in turns
    let roots = roots(client, reps, seed)?;
    let native = client.prepare(NATIVE_TRAVERSE)?;
    let cte = client.prepare(SEED_CTE)?;
    warm(client, &native, &cte, &roots, 5)?;
    for depth in [3i32, 5] {
        let v = versus(client, &native, &cte, &roots, depth, 1)?;
        eprintln!(
            "  traverse depth {depth}: {} roots, {:.0} rows/root native (each node once), {:.0} rows/root CTE (every simple path)",
            roots.len(),
            v.native_rows,
            v.cte_rows
        );
        rows.push(
            Row::new(
                format!(
                    "traverse depth {depth}, {} roots ({:.0} nodes vs {:.0} CTE rows per root)",
                    roots.len(),
                    v.native_rows,
                    v.cte_rows
                ),
                Some(Figure::from_samples(&v.native, Unit::Millis)),
                Some(Figure::from_samples(&v.cte, Unit::Millis)),
            )
            .target(if depth == 5 {
                "no slower than the CTE; p50 <= 10 ms at 1M"
            } else {
                "no slower than the CTE"
            }),
        );
    }

    // ---- consciousness_path between random pairs of one tenant
    let pairs: Vec<(Uuid, Uuid)> = client
        .query(
            "WITH picked AS (
                 SELECT n.id, n.user_id, row_number() OVER (PARTITION BY n.user_id ORDER BY random()) AS k
                   FROM fractality.nodes n TABLESAMPLE BERNOULLI (10))
             SELECT a.id, b.id FROM picked a JOIN picked b
                 ON b.user_id = a.user_id AND b.k = a.k + 1
              WHERE a.k % 2 = 1
              LIMIT $1",
            &[&(reps as i64)],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let path = client.prepare("SELECT count(*) FROM fractality.consciousness_path($1, $2)")?;
    let mut samples = Vec::with_capacity(pairs.len());
    let mut found = 0usize;
    let mut hops = 0i64;
    for (a, b) in &pairs {
        let (steps, secs) = timed(|| Ok(client.query_one(&path, &[a, b])?.get::<_, i64>(0)))?;
        if steps > 0 {
            found += 1;
            hops += steps - 1;
        }
        samples.push(ms(secs));
    }
    eprintln!(
        "  consciousness_path: {} pairs, {found} connected, {:.1} hops on average; p50 {:.2} ms, p99 {:.2} ms",
        pairs.len(),
        hops as f64 / found.max(1) as f64,
        percentile(&samples, 0.5),
        percentile(&samples, 0.99)
    );
    rows.push(Row::new(
        format!(
            "consciousness_path, {} random pairs of one tenant ({found} connected, {:.1} hops avg)",
            pairs.len(),
            hops as f64 / found.max(1) as f64
        ),
        Some(Figure::from_samples(&samples, Unit::Millis)),
        None,
    ));

    // ---- upsert_node: one at a time, and a batch in one statement
    let tenant = datagen::uuid(&mut datagen::rng(seed, "bench-graph-upsert"));
    client.batch_execute("SET fractality.notify = off")?;
    let clean = |c: &mut Client| -> Result<(), Error> {
        c.execute(
            "DELETE FROM fractality.nodes WHERE user_id = $1",
            &[&tenant],
        )?;
        Ok(())
    };
    let single_native =
        client.prepare("SELECT fractality.upsert_node_for($1, $2, $3, $4::text::jsonb, $5)")?;
    let single_seed = client.prepare(
        "INSERT INTO fractality.nodes (user_id, node_key, label, metadata, atp) VALUES ($1, $2, $3, $4::text::jsonb, $5)
         ON CONFLICT (user_id, node_key) DO UPDATE SET
             label = EXCLUDED.label, metadata = EXCLUDED.metadata, atp = EXCLUDED.atp,
             updated_at = CURRENT_TIMESTAMP
         RETURNING id",
    )?;
    let singles = 2_000usize;
    let mut rng = datagen::rng(seed, "bench-graph-keys");
    let keys: Vec<(String, f64)> = (0..singles)
        .map(|i| (format!("bench-{i}"), rng.random::<f64>()))
        .collect();
    let meta = r#"{"description": "a benchmark node"}"#;
    let one_at_a_time = |c: &mut Client, stmt: &postgres::Statement| -> Result<f64, Error> {
        clean(c)?;
        let (_, secs) = timed(|| {
            for (k, atp) in &keys {
                c.query_one(stmt, &[&tenant, k, k, &meta, atp])?;
            }
            Ok(())
        })?;
        Ok(singles as f64 / secs)
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        a.push(one_at_a_time(client, &single_native)?);
        b.push(one_at_a_time(client, &single_seed)?);
    }
    rows.push(Row::new(
        format!("upsert_node one at a time ({singles} statements, autocommit)"),
        Some(Figure::from_samples(&a, Unit::RowsPerSec)),
        Some(Figure::from_samples(&b, Unit::RowsPerSec)),
    ));

    let batch = 50_000i32;
    let batch_native = "SELECT count(fractality.upsert_node_for($1, 'bench-' || i, 'label ' || i,
                                '{\"description\": \"a benchmark node\"}', (i % 100) / 100.0))
                          FROM generate_series(1, $2) i";
    let batch_seed = "INSERT INTO fractality.nodes (user_id, node_key, label, metadata, atp)
                      SELECT $1, 'bench-' || i, 'label ' || i,
                             '{\"description\": \"a benchmark node\"}', (i % 100) / 100.0
                        FROM generate_series(1, $2) i
                      ON CONFLICT (user_id, node_key) DO UPDATE SET
                          label = EXCLUDED.label, metadata = EXCLUDED.metadata, atp = EXCLUDED.atp,
                          updated_at = CURRENT_TIMESTAMP";
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        for (sql, out) in [(batch_native, &mut a), (batch_seed, &mut b)] {
            clean(client)?;
            client.batch_execute("CHECKPOINT")?;
            let (_, secs) = timed(|| Ok(client.execute(sql, &[&tenant, &batch])?))?;
            out.push(batch as f64 / secs);
        }
    }
    rows.push(Row::new(
        format!("upsert_node batch ({batch} rows in one statement, new keys)"),
        Some(Figure::from_samples(&a, Unit::RowsPerSec)),
        Some(Figure::from_samples(&b, Unit::RowsPerSec)),
    ));
    clean(client)?;
    client.batch_execute("RESET fractality.notify")?;

    // ---- traverse vs the seed's CTE on the sparse, dense and skewed graphs
    rows.extend(shapes(client, seed)?);
    Ok(rows)
}

// ---- graph shapes ----------------------------------------------------------------------------

/// A graph the scenario builds in a tenant of its own: `nodes` nodes, and `draws` 'child' edges
/// drawn, edge g (from 0) leaving the node `source` for a random other node of the shape
/// (weight in [0.05, 1)); a pair drawn twice makes one edge.
struct Shape {
    name: &'static str,
    /// Fixed, not drawn from the seed: any run finds and removes what an earlier one left.
    tenant: Uuid,
    nodes: i64,
    draws: i64,
    /// SQL of g (bigint) and $2 (the nodes, bigint): the node edge g leaves.
    source: &'static str,
    /// The shape in a few words, for the report.
    about: &'static str,
    /// The depth `traverse` and the CTE walk to.
    depth: i32,
    /// Roots that are the nodes with the most children; the others are drawn from the nodes
    /// with at least one.
    hubs: i64,
}

const SHAPES: [Shape; 3] = [
    Shape {
        name: "sparse",
        tenant: Uuid::from_u128(0xbe7c_5a00_0000_4000_8000_0000_0000_0001),
        nodes: 100_000,
        draws: 100_000,
        source: "g",
        about: "one child a node",
        depth: 5,
        hubs: 0,
    },
    // depth 3 is about 8 400 simple paths from a root for the CTE; depth 4 would be 20 times more
    Shape {
        name: "dense",
        tenant: Uuid::from_u128(0xbe7c_5a00_0000_4000_8000_0000_0000_0002),
        nodes: 5_000,
        draws: 100_000,
        source: "g / 20",
        about: "20 children a node",
        depth: 3,
        hubs: 0,
    },
    // P(source < k) = (k / n)^(1/4): node 0 leaves about 8 400 of the edges, nodes 1 to 4 about
    // 700 to 1 600 each, a node past the first 10 000 about 2 or fewer
    Shape {
        name: "skewed",
        tenant: Uuid::from_u128(0xbe7c_5a00_0000_4000_8000_0000_0000_0003),
        nodes: 100_000,
        draws: 150_000,
        source: "floor($2::bigint * random() ^ 4)::bigint",
        about: "power-law children, a few hubs",
        depth: 4,
        hubs: 5,
    },
];

/// Roots a shape is walked from, each `SHAPE_PASSES` times.
const SHAPE_ROOTS: i64 = 50;
const SHAPE_PASSES: usize = 3;

/// Node i of a shape has the id md5('<tenant>/<i>') and the key '<shape>-<i>'.
const SHAPE_NODES: &str = "
INSERT INTO fractality.nodes (id, user_id, node_key)
SELECT md5(format('%s/%s', $1::uuid, i))::uuid, $1::uuid, $2::text || i
  FROM generate_series(0, $3::bigint - 1) i";

/// The edges of a shape, `{source}` the shape's; random() runs in the order of g (the subqueries
/// holding it are not flattened), so that one setseed gives the same edges.
const SHAPE_EDGES: &str = "
INSERT INTO fractality.edges (id, user_id, from_node, to_node, relationship_type, weight)
SELECT DISTINCT ON (src, dst)
       md5(format('%s/%s/%s', $1::uuid, src, dst))::uuid, $1::uuid,
       md5(format('%s/%s', $1::uuid, src))::uuid, md5(format('%s/%s', $1::uuid, dst))::uuid,
       'child', w
  FROM (SELECT src, (src + 1 + floor(random() * ($2::bigint - 1))::bigint) % $2::bigint AS dst,
               0.05 + 0.95 * random() AS w
          FROM (SELECT {source} AS src FROM generate_series(0, $3::bigint - 1) g) s) e
 ORDER BY src, dst, w";

/// A shape's roots, their children, and whether each is a hub: the `$2` nodes with the most
/// children, and `$4` others with at least one, picked in an order the seed (`$3`) sets.
const SHAPE_ROOTS_SQL: &str = "
WITH children AS (SELECT from_node, count(*) AS n FROM fractality.edges
                   WHERE user_id = $1 AND relationship_type = 'child' GROUP BY from_node),
     hubs AS (SELECT from_node, n FROM children ORDER BY n DESC, from_node LIMIT $2),
     others AS (SELECT from_node, n FROM children
                 WHERE from_node NOT IN (SELECT from_node FROM hubs)
                 ORDER BY md5(from_node::text || $3) LIMIT $4)
SELECT from_node, n, true FROM hubs
UNION ALL
SELECT from_node, n, false FROM others";

/// Removes every row of the shapes' tenants: their edges, then their nodes.
fn drop_shapes(client: &mut Client) -> Result<(), Error> {
    let tenants: Vec<Uuid> = SHAPES.iter().map(|s| s.tenant).collect();
    client.execute(
        "DELETE FROM fractality.edges WHERE user_id = ANY($1)",
        &[&tenants],
    )?;
    client.execute(
        "DELETE FROM fractality.nodes WHERE user_id = ANY($1)",
        &[&tenants],
    )?;
    Ok(())
}

/// Builds `s` (its tenant empty), its edges drawn from `seed`; returns the edges made and the
/// most children of a node.
fn build_shape(client: &mut Client, s: &Shape, seed: u64) -> Result<(i64, i64), Error> {
    client.execute(SHAPE_NODES, &[&s.tenant, &format!("{}-", s.name), &s.nodes])?;
    let setseed: f64 =
        datagen::rng(seed, &format!("bench-graph-{}", s.name)).random_range(-1.0..=1.0);
    client.execute("SELECT setseed($1)", &[&setseed])?;
    let edges = client.execute(
        &SHAPE_EDGES.replace("{source}", s.source),
        &[&s.tenant, &s.nodes, &s.draws],
    )?;
    let most: i64 = client
        .query_one(
            "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM fractality.edges
                                                WHERE user_id = $1 GROUP BY from_node) c",
            &[&s.tenant],
        )?
        .get(0);
    Ok((edges as i64, most))
}

/// `traverse` against the seed's CTE on each shape: the shapes are built (any rows an earlier
/// run left removed first), vacuumed, timed from their roots, then removed, whatever the timing
/// gave.
fn shapes(client: &mut Client, seed: u64) -> Result<Vec<Row>, Error> {
    client.batch_execute("SET fractality.notify = off")?;
    drop_shapes(client)?;
    let measured = build_and_time(client, seed);
    drop_shapes(client)?;
    // the dead rows go now rather than to an autovacuum during a later scenario
    client.batch_execute("VACUUM (ANALYZE) fractality.nodes, fractality.edges")?;
    client.batch_execute("RESET fractality.notify")?;
    measured
}

/// Builds every shape, then times `traverse` and the CTE on each.
fn build_and_time(client: &mut Client, seed: u64) -> Result<Vec<Row>, Error> {
    let mut built = Vec::with_capacity(SHAPES.len());
    for s in &SHAPES {
        let ((edges, most), secs) = timed(|| build_shape(client, s, seed))?;
        eprintln!(
            "  graph shape {}: {} nodes, {} 'child' edges ({}; at most {} children a node), built in {secs:.1} s",
            s.name,
            thousands(s.nodes as u64),
            thousands(edges as u64),
            s.about,
            thousands(most as u64)
        );
        built.push(edges);
    }
    // the visibility map set (traverse reads edges by index-only scans) and statistics taken,
    // as an autovacuum would leave them, before either side is timed
    client.batch_execute("VACUUM (ANALYZE) fractality.nodes, fractality.edges")?;

    let native = client.prepare(NATIVE_TRAVERSE)?;
    let cte = client.prepare(SEED_CTE)?;
    let mut rows = Vec::with_capacity(SHAPES.len());
    for (s, edges) in SHAPES.iter().zip(built) {
        let picked = client.query(
            SHAPE_ROOTS_SQL,
            &[
                &s.tenant,
                &s.hubs,
                &seed.to_string(),
                &(SHAPE_ROOTS - s.hubs),
            ],
        )?;
        let roots: Vec<Uuid> = picked.iter().map(|r| r.get(0)).collect();
        let mut hubs: Vec<i64> = picked
            .iter()
            .filter(|r| r.get::<_, bool>(2))
            .map(|r| r.get(1))
            .collect();
        hubs.sort_unstable_by(|a, b| b.cmp(a));
        let hubs: Vec<String> = hubs.iter().map(|&n| thousands(n as u64)).collect();
        let of_roots = if hubs.is_empty() {
            format!("{} roots", roots.len())
        } else {
            format!(
                "{} roots, the {} largest hubs among them ({} children)",
                roots.len(),
                hubs.len(),
                hubs.join(", ")
            )
        };
        warm(client, &native, &cte, &roots, s.depth)?;
        let v = versus(client, &native, &cte, &roots, s.depth, SHAPE_PASSES)?;
        eprintln!(
            "  traverse {} depth {}: {of_roots} x {SHAPE_PASSES}, {:.0} rows/root native (each node once), {:.0} rows/root CTE (every simple path); p50 {:.2} ms vs {:.2} ms CTE",
            s.name,
            s.depth,
            v.native_rows,
            v.cte_rows,
            percentile(&v.native, 0.5),
            percentile(&v.cte, 0.5)
        );
        rows.push(
            Row::new(
                format!(
                    "traverse depth {}, {} graph ({} nodes, {} edges: {}), {of_roots}, each {SHAPE_PASSES} times ({:.0} nodes vs {:.0} CTE rows per root)",
                    s.depth,
                    s.name,
                    thousands(s.nodes as u64),
                    thousands(edges as u64),
                    s.about,
                    v.native_rows,
                    v.cte_rows
                ),
                Some(Figure::from_samples(&v.native, Unit::Millis)),
                Some(Figure::from_samples(&v.cte, Unit::Millis)),
            )
            .target("no slower than the CTE"),
        );
    }
    Ok(rows)
}
