//! Scenario `archive`: `archive_old_events(7)` over `--events` events spread over the last 30
//! days vs the seed's flag UPDATE on the seed-shaped table; cold-tier bytes per event and per
//! stream point vs the hot tier's; `query_events` over one day, hot and then archived.

use postgres::Client;

use crate::bench::{thousands, timed, Ctx, Figure, Row, Unit};
use crate::datagen::{self, Error};

const DAY_US: i64 = 86_400_000_000;

/// The seed's experience_events with its indexes and its archive_old_events (seeds/002),
/// verbatim but in schema bench_archive.
fn seed_ddl() -> String {
    include_str!("../sql/seed_experience_events.sql").replace("bench_seed", "bench_archive")
        + r#"
CREATE FUNCTION bench_archive.archive_old_events(days_threshold INTEGER)
RETURNS INTEGER AS $$
DECLARE
    archived_count INTEGER;
    cutoff_timestamp BIGINT;
BEGIN
    cutoff_timestamp := EXTRACT(EPOCH FROM (NOW() - INTERVAL '1 day' * days_threshold)) * 1000000;
    UPDATE bench_archive.experience_events
    SET archived = TRUE
    WHERE timestamp < cutoff_timestamp
      AND archived = FALSE;
    GET DIAGNOSTICS archived_count = ROW_COUNT;
    RETURN archived_count;
END;
$$ LANGUAGE plpgsql;
"#
}

/// Both tiers of fractality's events emptied, every partition dropped, the months of
/// [from_us, to_us] created again, the payload COPYed in; vacuumed, analysed, checkpointed.
fn reset_native(
    client: &mut Client,
    payload: &[u8],
    from_us: i64,
    to_us: i64,
) -> Result<(), Error> {
    client.batch_execute(
        "DO $$ DECLARE r record; BEGIN
             FOR r IN SELECT part FROM fractality._partition_bounds('fractality.experience_events_archive')
                       WHERE lo IS NOT NULL
                      UNION ALL
                      SELECT part FROM fractality._partition_bounds('fractality.experience_events')
                       WHERE lo IS NOT NULL LOOP
                 PERFORM fractality._drop_partition(r.part);
             END LOOP;
         END $$;
         TRUNCATE fractality.experience_events_archive, fractality.action_metadata_archive;
         TRUNCATE fractality.experience_events;",
    )?;
    datagen::ensure_months(client, "fractality.experience_events", from_us, to_us)?;
    copy_in(client, "fractality.experience_events", payload)?;
    client.batch_execute("VACUUM (ANALYZE) fractality.experience_events")?;
    client.batch_execute("CHECKPOINT")?;
    Ok(())
}

fn reset_seed(client: &mut Client, payload: &[u8]) -> Result<(), Error> {
    client.batch_execute("TRUNCATE bench_archive.experience_events")?;
    copy_in(client, "bench_archive.experience_events", payload)?;
    client.batch_execute("VACUUM (ANALYZE) bench_archive.experience_events")?;
    client.batch_execute("CHECKPOINT")?;
    Ok(())
}

fn copy_in(client: &mut Client, table: &str, payload: &[u8]) -> Result<u64, Error> {
    use std::io::Write as _;
    let mut w = client.copy_in(&format!(
        "COPY {table} ({}) FROM STDIN (FORMAT binary)",
        datagen::EVENT_COLUMNS
    ))?;
    for chunk in payload.chunks(1 << 20) {
        w.write_all(chunk)?;
    }
    Ok(w.finish()?)
}

fn count(client: &mut Client, sql: &str) -> Result<i64, Error> {
    Ok(client.query_one(sql, &[])?.get(0))
}

/// Bytes of a relation's leaf partitions (or itself), heap, TOAST and indexes.
fn total_bytes(client: &mut Client, table: &str) -> Result<i64, Error> {
    Ok(client
        .query_one(
            "SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint
               FROM (SELECT relid FROM pg_partition_tree($1::text::regclass) WHERE isleaf
                     UNION
                     SELECT c.oid FROM pg_class c
                      WHERE c.oid = $1::text::regclass AND c.relkind = 'r') t",
            &[&table],
        )?
        .get(0))
}

/// `query_events` over [from, to) with include_archived, `n` times; milliseconds each.
fn query_day(client: &mut Client, from: i64, to: i64, n: usize) -> Result<(i64, Vec<f64>), Error> {
    let mut secs = Vec::with_capacity(n);
    let mut rows = 0;
    for _ in 0..n {
        let (r, s) = timed(|| {
            Ok(client
                .query_one(
                    "SELECT count(*) FROM fractality.query_events($1, $2, 100000000, true, true)",
                    &[&from, &to],
                )?
                .get::<_, i64>(0))
        })?;
        rows = r;
        secs.push(s * 1000.0);
    }
    Ok((rows, secs))
}

pub fn archive(ctx: &mut Ctx<'_>) -> Result<Vec<Row>, Error> {
    let reps = ctx.reps(3);
    let client = &mut *ctx.client;
    let now_us: i64 = client
        .query_one("SELECT fractality.epoch_us(now())", &[])?
        .get(0);
    // the events of the run, anchored at now: archive_old_events counts from now()
    let mut p = ctx.params.clone();
    p.anchor_us = now_us;
    let events = datagen::events(&p, &datagen::policies(&p));
    let n = events.len() as i64;
    let mut payload = Vec::new();
    datagen::encode_events(&events, &mut payload)?;
    drop(events);
    let from_us = now_us - datagen::EVENT_DAYS * DAY_US;
    client.batch_execute(&seed_ddl())?;

    let day = (now_us - 10 * DAY_US, now_us - 9 * DAY_US);
    let (mut native, mut seed) = (Vec::new(), Vec::new());
    let (mut hot_q, mut cold_q) = (Vec::new(), Vec::new());
    let mut archived = 0i64;
    let (mut hot_bytes, mut cold_bytes, mut hot_rows, mut cold_rows) = (0i64, 0i64, 0i64, 0i64);
    let mut day_rows = (0i64, 0i64);
    for rep in 0..reps {
        eprintln!(
            "  archive: rep {}/{reps}: loading {} events into each table",
            rep + 1,
            thousands(n as u64)
        );
        reset_native(client, &payload, from_us, now_us)?;
        reset_seed(client, &payload)?;
        let (r, q) = query_day(client, day.0, day.1, 5)?;
        day_rows.0 = r;
        hot_q.extend(q);

        let (moved, s) = timed(|| {
            Ok(client
                .query_one("SELECT fractality.archive_old_events(7)", &[])?
                .get::<_, i64>(0))
        })?;
        native.push(s);
        let (flagged, s) = timed(|| {
            Ok(client
                .query_one("SELECT bench_archive.archive_old_events(7)", &[])?
                .get::<_, i32>(0))
        })?;
        seed.push(s);

        // nothing lost, nothing doubled; both archived the same events (give or take the ones
        // that aged past the cutoff between the two calls)
        let hot = count(client, "SELECT count(*) FROM fractality.experience_events")?;
        let cold = count(
            client,
            "SELECT count(*) FROM fractality.experience_events_archive",
        )?;
        let seed_rows = count(
            client,
            "SELECT count(*) FROM bench_archive.experience_events",
        )?;
        if hot + cold != n || seed_rows != n || cold != moved {
            return Err(format!(
                "counts changed: hot {hot} + cold {cold} (moved {moved}) vs {n}; seed {seed_rows}"
            )
            .into());
        }
        if (i64::from(flagged) - moved).abs() > n / 1000 {
            return Err(format!("archived {moved} but the seed flagged {flagged}").into());
        }
        archived = moved;

        let (r, q) = query_day(client, day.0, day.1, 5)?;
        day_rows.1 = r;
        cold_q.extend(q);

        client.batch_execute(
            "VACUUM (ANALYZE) fractality.experience_events, fractality.experience_events_archive",
        )?;
        hot_bytes = total_bytes(client, "fractality.experience_events")?;
        cold_bytes = total_bytes(client, "fractality.experience_events_archive")?;
        hot_rows = hot;
        cold_rows = cold;
    }
    if day_rows.0 != day_rows.1 {
        return Err(format!(
            "query_events found {} events hot, {} archived",
            day_rows.0, day_rows.1
        )
        .into());
    }

    let mut rows = vec![
        Row::new(
            format!(
                "archive_old_events(7): {} of {} events (baseline: the seed's UPDATE ... SET archived = TRUE)",
                thousands(archived as u64),
                thousands(n as u64)
            ),
            Some(Figure::from_samples(&native, Unit::Seconds)),
            Some(Figure::from_samples(&seed, Unit::Seconds)),
        )
        .target(">= 20x faster, hot + cold unchanged"),
        Row::new(
            format!(
                "query_events over one day ({} events): archived (fractality) vs hot (baseline)",
                thousands(day_rows.0 as u64)
            ),
            Some(Figure::from_samples(&cold_q, Unit::Millis)),
            Some(Figure::from_samples(&hot_q, Unit::Millis)),
        ),
        Row::new(
            "bytes/event incl. indexes: cold tier (fractality) vs hot tier (baseline)",
            Some(Figure::single(cold_bytes as f64 / cold_rows.max(1) as f64, Unit::BytesPerRow)),
            Some(Figure::single(hot_bytes as f64 / hot_rows.max(1) as f64, Unit::BytesPerRow)),
        ),
    ];
    rows.extend(stream_bytes(client)?);

    // leave the events as the loader left them (hot, at the loaded anchor) for later scenarios
    let events = datagen::events(ctx.params, &datagen::policies(ctx.params));
    let mut payload = Vec::new();
    datagen::encode_events(&events, &mut payload)?;
    let anchor = ctx.params.anchor_us;
    reset_native(
        client,
        &payload,
        anchor - datagen::EVENT_DAYS * DAY_US,
        anchor,
    )?;
    client.batch_execute("DROP SCHEMA bench_archive CASCADE")?;
    Ok(rows)
}

/// 1000 nodes x 300 points over the last 300 days in consciousness_streams (emptied for the
/// purpose, inside a transaction rolled back at the end): bytes per point hot, then packed by
/// archive_streams('0 seconds').
fn stream_bytes(client: &mut Client) -> Result<Vec<Row>, Error> {
    let mut tx = client.transaction()?;
    tx.batch_execute(
        "SET LOCAL fractality.notify = off;
         TRUNCATE fractality.consciousness_streams;
         INSERT INTO fractality.consciousness_streams
             (time, node_id, user_id, atp_level, attention_score, resonance_vector)
         SELECT now() - g * interval '1 day' + (i % 24) * interval '1 hour', n.id, n.user_id,
                ((g * 7919 + i) % 1000) / 1000.0, ((g * 104729 + i) % 997) / 997.0,
                CASE WHEN (g + i) % 4 = 0
                     THEN ARRAY[(g % 10) / 10.0, (i % 10) / 10.0, 0.25, 0.5]::real[] END
           FROM (SELECT id, user_id, row_number() OVER (ORDER BY id) AS i
                   FROM fractality.nodes ORDER BY id LIMIT 1000) n,
                generate_series(1, 300) g;",
    )?;
    let points: i64 = tx
        .query_one("SELECT count(*) FROM fractality.consciousness_streams", &[])?
        .get(0);
    let hot: i64 = total_bytes_tx(&mut tx, "fractality.consciousness_streams")?;
    let before: i64 = total_bytes_tx(&mut tx, "fractality.consciousness_archive")?;
    let (moved, secs) = {
        let started = std::time::Instant::now();
        let moved: i64 = tx
            .query_one("SELECT fractality.archive_streams('0 seconds')", &[])?
            .get(0);
        (moved, started.elapsed().as_secs_f64())
    };
    let cold = total_bytes_tx(&mut tx, "fractality.consciousness_archive")? - before;
    tx.rollback()?;
    if moved != points {
        return Err(format!("archive_streams moved {moved} of {points} points").into());
    }
    Ok(vec![
        Row::new(
            format!(
                "bytes/stream point incl. indexes ({} points, 1 000 nodes): packed cold tier (fractality) vs hot (baseline)",
                thousands(points as u64)
            ),
            Some(Figure::single(cold as f64 / points as f64, Unit::BytesPerRow)),
            Some(Figure::single(hot as f64 / points as f64, Unit::BytesPerRow)),
        ),
        Row::new(
            format!("archive_streams: {} points packed", thousands(points as u64)),
            Some(Figure::single(secs, Unit::Seconds)),
            None,
        ),
    ])
}

fn total_bytes_tx(tx: &mut postgres::Transaction<'_>, table: &str) -> Result<i64, Error> {
    Ok(tx
        .query_one(
            "SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint
               FROM (SELECT relid FROM pg_partition_tree($1::text::regclass) WHERE isleaf
                     UNION
                     SELECT c.oid FROM pg_class c
                      WHERE c.oid = $1::text::regclass AND c.relkind = 'r') t",
            &[&table],
        )?
        .get(0))
}
