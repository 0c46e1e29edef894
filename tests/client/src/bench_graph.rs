//! Benchmark scenario `graph`: `traverse` against the seed's recursive CTE on the same roots,
//! `consciousness_path` between random pairs of a tenant, and `upsert_node` one at a time and in
//! a batch against the seed's `INSERT ... ON CONFLICT` (saveNode).

use postgres::Client;
use rand::Rng;
use uuid::Uuid;

use crate::bench::{alternate, percentile, timed, Ctx, Figure, Row, Unit};
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
    // warm both over every root (plans, and every page either side will touch in shared
    // buffers), so that neither side pays the first read of a root's neighbourhood for the other
    for r in &roots {
        client.query(&native, &[r, &5i32])?;
        client.query(&cte, &[r, &5i32])?;
    }
    for depth in [3i32, 5] {
        let (mut n_rows, mut c_rows) = (0usize, 0usize);
        let mut i = 0usize;
        let mut j = 0usize;
        let (a, b) = alternate(
            client,
            roots.len(),
            |c| {
                let root = roots[i];
                i += 1;
                let (got, secs) = timed(|| Ok(c.query(&native, &[&root, &depth])?))?;
                n_rows += got.len();
                Ok(ms(secs))
            },
            |c| {
                let root = roots[j];
                j += 1;
                let (got, secs) = timed(|| Ok(c.query(&cte, &[&root, &depth])?))?;
                c_rows += got.len();
                Ok(ms(secs))
            },
        )?;
        eprintln!(
            "  traverse depth {depth}: {} roots, {:.0} rows/root native (each node once), {:.0} rows/root CTE (every simple path)",
            roots.len(),
            n_rows as f64 / roots.len() as f64,
            c_rows as f64 / roots.len() as f64
        );
        rows.push(
            Row::new(
                format!(
                    "traverse depth {depth}, {} roots ({:.0} nodes vs {:.0} CTE rows per root)",
                    roots.len(),
                    n_rows as f64 / roots.len() as f64,
                    c_rows as f64 / roots.len() as f64
                ),
                Some(Figure::from_samples(&a, Unit::Millis)),
                Some(Figure::from_samples(&b, Unit::Millis)),
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
    Ok(rows)
}
