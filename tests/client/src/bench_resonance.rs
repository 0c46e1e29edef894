//! Benchmark scenario `resonance`: calculate_resonance per pair against the seed's PL/pgSQL
//! version, resonance_score per row against the same SQL expression, and find_resonant's
//! recall@20 and latency against a bare pgvector kNN query.

use std::collections::HashSet;
use std::time::Instant;

use postgres::Client;
use uuid::Uuid;

use crate::bench::{alternate, thousands, timed, Ctx, Figure, Row, Unit};
use crate::datagen::Error;

/// The seed's schema for resonance (seeds/000): embedding on the node, ATP in jsonb, and its
/// PL/pgSQL calculate_resonance verbatim (three queries per call), schema-qualified.
const SEED_DDL: &str = "
    DROP SCHEMA IF EXISTS bench_seed_resonance CASCADE;
    CREATE SCHEMA bench_seed_resonance;
    CREATE TABLE bench_seed_resonance.nodes AS
        SELECT n.id, n.user_id, n.node_key, n.label, jsonb_build_object('ATP', n.atp) AS energy,
               e.embedding
          FROM fractality.nodes n LEFT JOIN fractality.node_embeddings e ON e.node_id = n.id;
    ALTER TABLE bench_seed_resonance.nodes ADD PRIMARY KEY (id);
    CREATE TABLE bench_seed_resonance.edges AS
        SELECT id, user_id, from_node, to_node, relationship_type, weight FROM fractality.edges;
    CREATE INDEX ON bench_seed_resonance.edges (from_node, to_node);
    CREATE INDEX ON bench_seed_resonance.edges (to_node);
    ANALYZE bench_seed_resonance.nodes, bench_seed_resonance.edges;
    CREATE FUNCTION bench_seed_resonance.calculate_resonance(node1_id UUID, node2_id UUID)
    RETURNS FLOAT AS $$
    DECLARE
        similarity FLOAT;
        energy_product FLOAT;
        edge_weight FLOAT;
    BEGIN
        SELECT 1 - (n1.embedding <=> n2.embedding) INTO similarity
          FROM bench_seed_resonance.nodes n1, bench_seed_resonance.nodes n2
         WHERE n1.id = node1_id AND n2.id = node2_id;
        SELECT (n1.energy->>'ATP')::float * (n2.energy->>'ATP')::float INTO energy_product
          FROM bench_seed_resonance.nodes n1, bench_seed_resonance.nodes n2
         WHERE n1.id = node1_id AND n2.id = node2_id;
        SELECT COALESCE(weight, 0) INTO edge_weight
          FROM bench_seed_resonance.edges
         WHERE (from_node = node1_id AND to_node = node2_id)
            OR (from_node = node2_id AND to_node = node1_id)
         LIMIT 1;
        RETURN (similarity * 0.5) + (energy_product * 0.3) + (edge_weight * 0.2);
    END;
    $$ LANGUAGE plpgsql;";

const PAIRS: i64 = 5_000;
const SCORE_ROWS: i64 = 1_000_000;
const SOURCES: i64 = 100;
/// The bare kNN query is compared at this recall@20 (as find_resonant's target).
const RECALL_TARGET: f64 = 0.95;
/// hnsw.ef_search values tried for the bare query, lowest first.
const BARE_EF_SEARCH: [i32; 9] = [40, 60, 80, 100, 150, 200, 300, 400, 800];

/// Times of find_resonant and of the bare query (ms), and the (hits, wanted) of each.
type InTurns = (Vec<f64>, Vec<f64>, [usize; 4]);

fn ms(secs: f64) -> f64 {
    secs * 1e3
}

pub fn resonance(ctx: &mut Ctx<'_>) -> Result<Vec<Row>, Error> {
    let reps = ctx.reps(5);
    let c = &mut *ctx.client;
    // pgvector's schema on the path for the seed's function and the bare queries
    let vs: String = c
        .query_one(
            "SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
              WHERE e.extname = 'vector'",
            &[],
        )?
        .get(0);
    // decay off in this session: fractality reads current (decayed) energy, the seed's copy the
    // stored one; with a rate of 1 the two are the same, so both sides compute the same numbers
    c.batch_execute(&format!(
        "SET search_path = public, \"{vs}\"; SET max_parallel_workers_per_gather = 0;
         SET fractality.decay_rate = 1"
    ))?;
    eprintln!("  resonance: seed schema copy");
    c.batch_execute(SEED_DDL)?;
    let mut rows = Vec::new();

    // ---- calculate_resonance per pair: half joined by an edge, half from the same cluster
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS bench_pairs;
         CREATE TABLE bench_pairs AS
           (SELECT from_node AS a, to_node AS b FROM fractality.edges ORDER BY id LIMIT {half})
           UNION ALL
           (SELECT a.node_id, b.node_id FROM
              (SELECT node_id, row_number() OVER (ORDER BY node_id) r FROM fractality.node_embeddings) a
              JOIN (SELECT node_id, row_number() OVER (ORDER BY node_id DESC) r FROM fractality.node_embeddings) b
                ON a.r = b.r
             LIMIT {half});
         ANALYZE bench_pairs;",
        half = PAIRS / 2
    ))?;
    let check: f64 = c
        .query_one(
            "SELECT max(abs(fractality.calculate_resonance(a, b)
                           - bench_seed_resonance.calculate_resonance(a, b)))
               FROM bench_pairs p
              WHERE NOT EXISTS (SELECT 1 FROM fractality.edges e
                                 WHERE (e.from_node, e.to_node) IN ((p.a, p.b), (p.b, p.a))
                                 GROUP BY 1 HAVING count(*) > 1)",
            &[],
        )?
        .get(0);
    if check > 1e-6 {
        return Err(format!("calculate_resonance differs from the seed's by {check}").into());
    }
    let run = |sql: &'static str| {
        move |c: &mut Client| -> Result<f64, Error> {
            let (_, s) = timed(|| Ok(c.query_one(sql, &[])?))?;
            Ok(ms(s))
        }
    };
    eprintln!("  resonance: calculate_resonance over {PAIRS} pairs x {reps}");
    let (n, b) = alternate(
        c,
        reps,
        run("SELECT sum(fractality.calculate_resonance(a, b)) FROM bench_pairs"),
        run("SELECT sum(bench_seed_resonance.calculate_resonance(a, b)) FROM bench_pairs"),
    )?;
    let per_pair = |v: &[f64]| {
        Figure::single(
            Figure::from_samples(v, Unit::Millis).median * 1e3 / PAIRS as f64,
            Unit::Millis,
        )
    };
    rows.push(
        Row::new(
            format!(
                "calculate_resonance, {} pairs (ms per batch)",
                thousands(PAIRS as u64)
            ),
            Some(Figure::from_samples(&n, Unit::Millis)),
            Some(Figure::from_samples(&b, Unit::Millis)),
        )
        .target(">= 10x faster"),
    );
    let (pn, pb) = (per_pair(&n), per_pair(&b));
    rows.push(Row::new(
        "- per pair (µs, shown as ms x 1000)",
        Some(pn),
        Some(pb),
    ));

    // ---- the same as an application role under row-level security: pairs of one tenant
    // (its edges, then pairs of its nodes), read by a role that is neither owner nor BYPASSRLS
    c.batch_execute(
        "DROP TABLE IF EXISTS bench_tenant_pairs;
         CREATE TABLE bench_tenant_pairs AS
           WITH t AS (SELECT user_id FROM fractality.nodes GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1),
                n AS (SELECT id, row_number() OVER (ORDER BY id) r, count(*) OVER () c
                        FROM fractality.nodes WHERE user_id = (SELECT user_id FROM t))
           (SELECT e.from_node AS a, e.to_node AS b FROM fractality.edges e
             WHERE e.user_id = (SELECT user_id FROM t) ORDER BY e.id LIMIT 2500)
           UNION ALL
           (SELECT x.id, y.id FROM n x JOIN n y ON y.r = (x.r * 7919) % x.c + 1 LIMIT 2500);
         ANALYZE bench_tenant_pairs;
         DO $$ BEGIN CREATE ROLE bench_tenant NOLOGIN NOSUPERUSER NOBYPASSRLS;
               EXCEPTION WHEN duplicate_object THEN NULL; END $$;
         GRANT USAGE ON SCHEMA fractality TO bench_tenant;
         GRANT SELECT ON fractality.nodes, fractality.node_embeddings, fractality.edges,
                         bench_tenant_pairs TO bench_tenant;",
    )?;
    let (tenant_pairs, tenant): (i64, String) = {
        let r = c.query_one(
            "SELECT count(*), min(n.user_id::text) FROM bench_tenant_pairs p
               JOIN fractality.nodes n ON n.id = p.a",
            &[],
        )?;
        (r.get(0), r.get(1))
    };
    eprintln!(
        "  resonance: calculate_resonance as a tenant under RLS, {tenant_pairs} pairs x {reps}"
    );
    let as_tenant = format!(
        "SET ROLE bench_tenant; SET fractality.user_id = '{tenant}';
         SELECT sum(fractality.calculate_resonance(a, b)) FROM bench_tenant_pairs;
         RESET ROLE; RESET fractality.user_id;"
    );
    let (n, b) = alternate(
        c,
        reps,
        |c: &mut Client| -> Result<f64, Error> {
            let ((), s) = timed(|| Ok(c.batch_execute(&as_tenant)?))?;
            Ok(ms(s))
        },
        run("SELECT sum(bench_seed_resonance.calculate_resonance(a, b)) FROM bench_tenant_pairs"),
    )?;
    let per_tenant_pair = |v: &[f64]| {
        Figure::single(
            Figure::from_samples(v, Unit::Millis).median * 1e3 / tenant_pairs as f64,
            Unit::Millis,
        )
    };
    rows.push(
        Row::new(
            format!(
                "calculate_resonance as an application role under row-level security, {} pairs of one tenant, per pair (µs, shown as ms x 1000); seed without RLS",
                thousands(tenant_pairs as u64)
            ),
            Some(per_tenant_pair(&n)),
            Some(per_tenant_pair(&b)),
        )
        .target(">= 10x faster"),
    );

    // ---- resonance_score per row
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS bench_scores;
         CREATE TABLE bench_scores AS
           SELECT (random() * 2 - 1) AS s, random() AS a, random() AS b, (random() * 2 - 1) AS w
             FROM generate_series(1, {SCORE_ROWS});"
    ))?;
    c.batch_execute("VACUUM ANALYZE bench_scores")?;
    eprintln!("  resonance: resonance_score over {SCORE_ROWS} rows x {reps}");
    let (n, b) = alternate(
        c,
        reps,
        run("SELECT sum(fractality.resonance_score(s, a, b, w)) FROM bench_scores"),
        run("SELECT sum(0.5 * s + 0.3 * a * b + 0.2 * w) FROM bench_scores"),
    )?;
    rows.push(
        Row::new(
            format!("resonance_score, {} rows", thousands(SCORE_ROWS as u64)),
            Some(Figure::from_samples(&n, Unit::Millis)),
            Some(Figure::from_samples(&b, Unit::Millis)),
        )
        .target("<= 1.5x the SQL expression"),
    );

    // ---- find_resonant vs exact, and a bare kNN query vs its exact answer
    let sources: Vec<Uuid> = c
        .query(
            &format!(
                "SELECT node_id FROM fractality.node_embeddings
                  ORDER BY hashtext(node_id::text) LIMIT {SOURCES}"
            ),
            &[],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let ids = |c: &mut Client, sql: &str, src: &Uuid| -> Result<(Vec<Uuid>, f64), Error> {
        let started = Instant::now();
        let r = c.query(sql, &[src])?;
        let secs = started.elapsed().as_secs_f64();
        Ok((r.iter().map(|r| r.get(0)).collect(), ms(secs)))
    };
    const NATIVE: &str = "SELECT node_id FROM fractality.find_resonant($1::uuid, 0.7, 20)";
    // the exact answer: every node of the tenant within the threshold (full scan), the top 20
    // by resonance
    const EXACT: &str = "
        SELECT e.node_id FROM fractality.node_embeddings e,
               (SELECT user_id, embedding FROM fractality.node_embeddings WHERE node_id = $1) s
         WHERE e.user_id = s.user_id AND e.node_id <> $1 AND 1 - (e.embedding <=> s.embedding) >= 0.7
         ORDER BY fractality.calculate_resonance($1, e.node_id) DESC LIMIT 20";
    const BARE: &str = "
        SELECT node_id FROM fractality.node_embeddings
         ORDER BY embedding <=> (SELECT embedding FROM fractality.node_embeddings WHERE node_id = $1)
         LIMIT 20";
    let recall = |got: &[Uuid], want: &[Uuid]| -> (usize, usize) {
        let g: HashSet<&Uuid> = got.iter().collect();
        (want.iter().filter(|w| g.contains(w)).count(), want.len())
    };
    let mut exact_bare = Vec::new();
    c.batch_execute("SET enable_indexscan = off")?;
    let mut exact_native = Vec::new();
    for s in &sources {
        exact_native.push(ids(c, EXACT, s)?.0);
        exact_bare.push(ids(c, BARE, s)?.0);
    }
    c.batch_execute("RESET enable_indexscan")?;
    // the bare query at the same recall: raise hnsw.ef_search until its recall@20 over the
    // sources reaches the target (pgvector's default is 40)
    let mut ef = 0;
    let mut bare_recall = 0.0;
    for candidate in BARE_EF_SEARCH {
        c.batch_execute(&format!("SET hnsw.ef_search = {candidate}"))?;
        let (mut h, mut w) = (0, 0);
        for (i, s) in sources.iter().enumerate() {
            let (got, _) = ids(c, BARE, s)?;
            let (hh, ww) = recall(&got, &exact_bare[i]);
            h += hh;
            w += ww;
        }
        ef = candidate;
        bare_recall = h as f64 / w.max(1) as f64;
        eprintln!("  resonance: bare kNN recall@20 {bare_recall:.3} at ef_search {candidate}");
        if bare_recall >= RECALL_TARGET {
            break;
        }
    }
    eprintln!(
        "  resonance: find_resonant vs bare kNN (ef_search {ef}), {} sources",
        sources.len()
    );
    // find_resonant and the bare query in turns, source by source (after a warm-up of both):
    // their times and their (hits, wanted) against each exact answer
    let in_turns = |c: &mut Client| -> Result<InTurns, Error> {
        for s in sources.iter().take(5) {
            ids(c, NATIVE, s)?;
            ids(c, BARE, s)?;
        }
        let (mut native, mut bare, mut counts) = (Vec::new(), Vec::new(), [0; 4]);
        for (i, s) in sources.iter().enumerate() {
            let (got, t) = ids(c, NATIVE, s)?;
            native.push(t);
            let (h, w) = recall(&got, &exact_native[i]);
            counts[0] += h;
            counts[1] += w;
            let (got, t) = ids(c, BARE, s)?;
            bare.push(t);
            let (h, w) = recall(&got, &exact_bare[i]);
            counts[2] += h;
            counts[3] += w;
        }
        Ok((native, bare, counts))
    };
    let (native_ms, bare_ms, [nh, nw, bh, bw]) = in_turns(c)?;
    let nr = nh as f64 / nw.max(1) as f64;
    let br = bh as f64 / bw.max(1) as f64;
    if br < RECALL_TARGET {
        eprintln!(
            "  resonance: the bare query's recall stayed at {bare_recall:.3} (timed: {br:.3}) up to ef_search {ef}"
        );
    }
    rows.push(
        Row::new(
            format!(
                "find_resonant k=20 vs bare kNN at ef_search {ef} (the lowest of {BARE_EF_SEARCH:?} reaching recall {RECALL_TARGET}), {} sources; recall@20 {nr:.3} vs {br:.3} ({nw} exact answers)",
                sources.len()
            ),
            Some(Figure::from_samples(&native_ms, Unit::Millis)),
            Some(Figure::from_samples(&bare_ms, Unit::Millis)),
        )
        .target("recall >= 0.95; <= 1.5x bare kNN at the same recall"),
    );
    // ---- each of find_resonant's two paths forced: the exact scan of the tenant, and the HNSW
    // scan (fractality.exact_scan_limit decides between them per call)
    for (setting, what) in [
        (
            "0",
            "the HNSW path forced (fractality.exact_scan_limit = 0)",
        ),
        (
            "2147483647",
            "the exact scan forced (fractality.exact_scan_limit = 2147483647)",
        ),
    ] {
        c.batch_execute(&format!("SET fractality.exact_scan_limit = {setting}"))?;
        let (times, bare, [h, w, _, _]) = in_turns(c)?;
        c.batch_execute("RESET fractality.exact_scan_limit")?;
        rows.push(
            Row::new(
                format!(
                    "find_resonant, {what}; recall@20 {:.3}; vs the bare kNN at ef_search {ef}",
                    h as f64 / w.max(1) as f64
                ),
                Some(Figure::from_samples(&times, Unit::Millis)),
                Some(Figure::from_samples(&bare, Unit::Millis)),
            )
            .target("recall >= 0.95; <= 1.5x bare kNN at the same recall"),
        );
    }
    // ---- find_resonant as the application role of one tenant (row-level security on): the
    // tenant's own nodes as sources
    let tenant_sources: Vec<Uuid> = c
        .query(
            "SELECT node_id FROM fractality.node_embeddings WHERE user_id = $1::text::uuid
              ORDER BY hashtext(node_id::text) LIMIT 50",
            &[&tenant],
        )?
        .iter()
        .map(|r| r.get(0))
        .collect();
    c.batch_execute(&format!(
        "SET ROLE bench_tenant; SET fractality.user_id = '{tenant}'"
    ))?;
    let mut tenant_ms = Vec::new();
    for s in tenant_sources.iter().take(5) {
        ids(c, NATIVE, s)?;
    }
    for s in &tenant_sources {
        tenant_ms.push(ids(c, NATIVE, s)?.1);
    }
    c.batch_execute("RESET ROLE; RESET fractality.user_id")?;
    rows.push(
        Row::new(
            format!(
                "find_resonant as an application role under row-level security, {} sources of one tenant; vs the bare kNN above",
                tenant_sources.len()
            ),
            Some(Figure::from_samples(&tenant_ms, Unit::Millis)),
            Some(Figure::from_samples(&bare_ms, Unit::Millis)),
        )
        .target("<= 1.5x bare kNN at the same recall"),
    );
    c.batch_execute(
        "RESET hnsw.ef_search; RESET search_path; RESET max_parallel_workers_per_gather;
         RESET fractality.decay_rate",
    )?;
    Ok(rows)
}
