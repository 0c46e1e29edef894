//! Benchmark scenario `decay`: fractality's native decay against the seed's PL/pgSQL over
//! `energy->>'ATP'` in jsonb and against plain SQL, on the same nodes in the same run.
//!
//! - `apply_consciousness_decay` vs the seed's function, created in schema `bench_seed` over a
//!   copy of the nodes with the seed's layout (ATP inside `energy` jsonb, the seed's indexes,
//!   including its expression index on the ATP);
//! - `sum(current_atp(atp, atp_at))` over every node vs `sum(atp)` (the stored column);
//! - `materialize_decay()` vs the equivalent plain SQL UPDATE (the same curve in SQL arithmetic),
//!   each starting from the same stale state (every atp_at moved one hour back, then VACUUM);
//!   and vs the same UPDATE with materialize_decay's guarantee (SKIP LOCKED) in one statement.
//!
//! Both sides run with `fractality.notify = off` (a bulk writer's setting), so that the plain
//! UPDATE does not send one notification per row.

use postgres::Client;

use crate::bench::{alternate, timed, Ctx, Figure, Row, Unit};
use crate::datagen::Error;

const SEED_DDL: &str = r#"
CREATE SCHEMA IF NOT EXISTS bench_seed;
DROP TABLE IF EXISTS bench_seed.nodes CASCADE;
-- The seed's nodes table (week 1 and week 2 of the seed document): ATP lives in energy jsonb.
CREATE TABLE bench_seed.nodes (
    id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    node_key VARCHAR(255) NOT NULL,
    label TEXT,
    created_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMPTZ DEFAULT CURRENT_TIMESTAMP,
    metadata JSONB DEFAULT '{}',
    energy JSONB DEFAULT '{"ATP": 1.0, "network": "default"}'
);
-- The seed's consciousness decay function, verbatim but for the schema.
CREATE OR REPLACE FUNCTION bench_seed.apply_consciousness_decay(
    decay_rate FLOAT DEFAULT 0.95
)
RETURNS TABLE (
    node_id UUID,
    old_atp FLOAT,
    new_atp FLOAT
) AS $$
BEGIN
    RETURN QUERY
    UPDATE bench_seed.nodes
    SET
        energy = jsonb_set(
            energy,
            '{ATP}',
            to_jsonb(GREATEST(
                (energy->>'ATP')::float * decay_rate,
                0.1  -- Minimum ATP
            ))
        ),
        updated_at = CURRENT_TIMESTAMP
    WHERE (energy->>'ATP')::float > 0.1
    RETURNING
        id,
        (energy->>'ATP')::float / decay_rate as old_atp,
        (energy->>'ATP')::float as new_atp;
END;
$$ LANGUAGE plpgsql;
"#;

/// The seed's indexes on nodes, created after the copy (its expression index on the ATP written
/// as valid SQL: the seed's `(energy->>'ATP'::float)` does not parse).
const SEED_INDEXES: &str = "
CREATE INDEX idx_nodes_key ON bench_seed.nodes (node_key);
CREATE INDEX idx_nodes_metadata_gin ON bench_seed.nodes USING GIN (metadata);
CREATE INDEX idx_nodes_energy_atp ON bench_seed.nodes (((energy->>'ATP')::float));";

/// The plain SQL formulation of materialize_decay with the default settings (rate 0.95 per hour,
/// floor 0.1): one UPDATE over every stale row.
const PLAIN_MATERIALIZE: &str = "
UPDATE fractality.nodes
   SET atp = greatest(0.1, atp * 0.95 ^ (date_part('epoch', now() - atp_at) / 3600.0)),
       atp_at = now()
 WHERE atp > 0.1 AND atp_at < now()";

/// The same UPDATE with materialize_decay's guarantee (rows a writer holds are skipped, never
/// waited for), in one statement: the rows are locked with SKIP LOCKED first.
const PLAIN_MATERIALIZE_SKIP_LOCKED: &str = "
UPDATE fractality.nodes n
   SET atp = greatest(0.1, n.atp * 0.95 ^ (date_part('epoch', now() - n.atp_at) / 3600.0)),
       atp_at = now()
  FROM (SELECT ctid FROM fractality.nodes
         WHERE atp > 0.1 AND atp_at < now()
           FOR NO KEY UPDATE SKIP LOCKED) b
 WHERE n.ctid = b.ctid";

fn ms(client: &mut Client, sql: &str) -> Result<f64, Error> {
    let (_, secs) = timed(|| Ok(client.batch_execute(sql)?))?;
    Ok(secs * 1000.0)
}

fn count(client: &mut Client, sql: &str) -> Result<i64, Error> {
    Ok(client.query_one(sql, &[])?.get(0))
}

pub fn decay(ctx: &mut Ctx<'_>) -> Result<Vec<Row>, Error> {
    let (few, many) = (ctx.reps(3), ctx.reps(11));
    let c = &mut *ctx.client;
    c.batch_execute(
        "SET fractality.notify = off;
         RESET fractality.decay_rate; RESET fractality.decay_tick; RESET fractality.atp_floor;",
    )?;
    let nodes = count(c, "SELECT count(*) FROM fractality.nodes")?;
    // every node's energy as of now, uniform in [0, 1) by its id (the generator's distribution,
    // the same whatever earlier runs on reused data did): the tick decays the energy of now, and
    // the seed's function, which has no lazy decay, the same values stored in its ATP
    eprintln!("  decay: every node's energy set as of now");
    c.batch_execute(
        "UPDATE fractality.nodes
            SET atp = (hashtextextended(id::text, 42) & 1048575) / 1048576.0, atp_at = now()",
    )?;
    eprintln!("  decay: copying {nodes} nodes into bench_seed.nodes (ATP in energy jsonb)");
    c.batch_execute(SEED_DDL)?;
    c.batch_execute(
        "INSERT INTO bench_seed.nodes (id, node_key, label, created_at, updated_at, metadata, energy)
         SELECT id, node_key, label, created_at, updated_at, metadata,
                energy || jsonb_build_object('ATP', atp)
           FROM fractality.nodes",
    )?;
    c.batch_execute(SEED_INDEXES)?;
    c.batch_execute("VACUUM (ANALYZE) bench_seed.nodes")?;
    c.batch_execute("VACUUM (ANALYZE) fractality.nodes")?;
    let above = count(c, "SELECT count(*) FROM fractality.nodes WHERE atp > 0.1")?;
    let mut rows = Vec::new();

    // 1. the explicit tick: native vs the seed's PL/pgSQL over jsonb. Both tables decay alike,
    //    so they stay equal; each run starts from a vacuumed table.
    let reps = few;
    eprintln!("  decay: apply_consciousness_decay x {reps} (native, seed)");
    let (native, seed) = alternate(
        c,
        reps,
        |c| {
            c.batch_execute("VACUUM fractality.nodes")?;
            ms(
                c,
                "SELECT count(*) FROM fractality.apply_consciousness_decay(0.95, 0.1)",
            )
        },
        |c| {
            c.batch_execute("VACUUM bench_seed.nodes")?;
            ms(
                c,
                "SELECT count(*) FROM bench_seed.apply_consciousness_decay(0.95)",
            )
        },
    )?;
    rows.push(
        Row::new(
            format!("apply_consciousness_decay, {nodes} nodes ({above} above the floor)"),
            Some(Figure::from_samples(&native, Unit::Millis)),
            Some(Figure::from_samples(&seed, Unit::Millis)),
        )
        .target(">= 5x faster than the seed's PL/pgSQL over jsonb"),
    );
    let (a, b) = (
        count(
            c,
            "SELECT count(*) FROM fractality.nodes f JOIN bench_seed.nodes s USING (id)
              WHERE f.atp = (s.energy->>'ATP')::float8",
        )?,
        nodes,
    );
    if a != b {
        eprintln!(
            "  decay: WARNING: native and seed disagree on {} of {b} nodes",
            b - a
        );
    }

    // 2. the lazy read over every node vs the stored column
    let reps = many;
    c.batch_execute("VACUUM (ANALYZE) fractality.nodes")?;
    eprintln!("  decay: current_atp read over every node x {reps}");
    let (native, stored) = alternate(
        c,
        reps,
        |c| {
            ms(
                c,
                "SELECT sum(fractality.current_atp(atp, atp_at)) FROM fractality.nodes",
            )
        },
        |c| ms(c, "SELECT sum(atp) FROM fractality.nodes"),
    )?;
    rows.push(
        Row::new(
            format!("read every node's energy: sum(current_atp(atp, atp_at)) vs sum(atp), {nodes} nodes"),
            Some(Figure::from_samples(&native, Unit::Millis)),
            Some(Figure::from_samples(&stored, Unit::Millis)),
        )
        .target("<= 1.3x the stored column (gain >= 0.77x)"),
    );

    // 3. write-back: materialize_decay vs one plain UPDATE, from the same stale state
    let reps = few;
    eprintln!("  decay: materialize_decay vs plain UPDATE x {reps}");
    let stale = |c: &mut Client| -> Result<(), Error> {
        c.batch_execute("UPDATE fractality.nodes SET atp_at = atp_at - interval '1 hour'")?;
        c.batch_execute("VACUUM fractality.nodes")?;
        Ok(())
    };
    let mut written = 0;
    let (native, plain) = alternate(
        c,
        reps,
        |c| {
            stale(c)?;
            let (n, secs) = timed(|| {
                Ok(c.query_one("SELECT fractality.materialize_decay()", &[])?
                    .get::<_, i64>(0))
            })?;
            written = n;
            Ok(secs * 1000.0)
        },
        |c| {
            stale(c)?;
            ms(c, PLAIN_MATERIALIZE)
        },
    )?;
    rows.push(
        Row::new(
            format!("materialize_decay() vs one plain SQL UPDATE, {written} stale rows"),
            Some(Figure::from_samples(&native, Unit::Millis)),
            Some(Figure::from_samples(&plain, Unit::Millis)),
        )
        .target("no slower (gain >= 1x)"),
    );
    let (native, plain) = alternate(
        c,
        reps,
        |c| {
            stale(c)?;
            ms(c, "SELECT fractality.materialize_decay()")
        },
        |c| {
            stale(c)?;
            ms(c, PLAIN_MATERIALIZE_SKIP_LOCKED)
        },
    )?;
    rows.push(Row::new(
        "- the same, vs one plain UPDATE that also skips locked rows (FOR NO KEY UPDATE SKIP LOCKED)",
        Some(Figure::from_samples(&native, Unit::Millis)),
        Some(Figure::from_samples(&plain, Unit::Millis)),
    ));
    c.batch_execute("RESET fractality.notify")?;
    Ok(rows)
}
