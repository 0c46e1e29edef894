//! Benchmark scenario `replay`: a prioritised replay buffer over every hot event of the loaded
//! store.
//! - sample 256 with weights (median ms) against weighted sampling in SQL over the buffer's items
//!   (Efraimidis-Spirakis, in logs so that small priorities do not underflow: ORDER BY
//!   ln(1 - random()) / p^alpha DESC LIMIT n) and the 0.4.0
//!   sample_experiences over the store;
//! - update_priorities of 256 sampled ids, over enough calls (64) that its folds (every
//!   fractality.replay_fold_after / 256 calls) are among them, with the mean; and of 256 ids the
//!   session did not draw (found through the event-id registry, or by the timestamps given);
//! - write_events of 5 000-event batches with the buffer against the same with the buffer's
//!   trigger disabled, in alternation, with consecutive and with random event ids;
//! - the sample's time over buffers of 100 000, 1 000 000 and 10 000 000 items (items written
//!   directly, the tree built once), which should barely move.
//!
//! The buffers and the events written are removed at the end, and the replay tables compacted
//! (at the start too).

use postgres::Client;
use rand::{Rng, SeedableRng};

use crate::bench::{alternate, thousands, timed, Ctx, Figure, Row, Unit};
use crate::datagen::Error;

const DRAWS: i32 = 256;
const WRITE_BATCH: usize = 5_000;
const WRITE_BATCHES: usize = 6;
const SCALES: [i64; 3] = [100_000, 1_000_000, 10_000_000];
/// After a bulk fill: the replay tables vacuumed and analyzed, then a checkpoint (one statement
/// at a time: VACUUM runs outside a transaction block).
fn settle(c: &mut Client) -> Result<(), Error> {
    c.batch_execute("VACUUM (ANALYZE) fractality.replay_blocks, fractality.replay_tree")?;
    c.batch_execute("CHECKPOINT")?;
    Ok(())
}
/// The replay tables rewritten without the dead rows of the buffers dropped before (the 10M-item
/// buffer of a run leaves dead blocks behind in `replay_blocks`): the next run's items are laid out
/// as in a fresh store, and the SQL baseline scans only live rows.
fn compact(c: &mut Client) -> Result<(), Error> {
    for t in ["replay_blocks", "replay_tree", "replay_pending"] {
        c.batch_execute(&format!("VACUUM (FULL, ANALYZE) fractality.{t}"))?;
    }
    Ok(())
}
/// Sample-and-update rounds of the learner's loop (at least): enough for two folds at the
/// default fractality.replay_fold_after (8192 slots, 32 calls of 256).
const LEARN_ROUNDS: usize = 64;

fn ms(secs: f64) -> f64 {
    secs * 1e3
}

/// splitmix64: a well-mixed 64-bit value of `x`.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A batch of `n` events far in the future (so that nothing else reads them), in time order,
/// ids from `tag`: consecutive, or (`random`) spread over the whole id space as an agent's
/// random 128-bit ids are.
fn events(tag: u64, n: usize, random: bool) -> String {
    let ts0: i64 = 4_000_000_000_000_000 + (tag as i64) * 10_000_000;
    let items: Vec<String> = (0..n)
        .map(|i| {
            let (hi, lo) = if random {
                (mix(tag << 32 | i as u64), mix(!(tag << 32 | i as u64)))
            } else {
                (0xbe7c_0000_0000_0000u64 | tag, i as u64)
            };
            format!(
                "{{\"event_id\": \"{:016x}{:016x}\", \"timestamp\": {}, \"episode_id\": {}, \"step_number\": {}, \"event_type\": 1, \"flags\": 0, \
                 \"state_l1\": 0.5, \"state_l2\": 0.5, \"state_l3\": 0.5, \"state_l4\": 0.5, \"state_l5\": 0.5, \"state_l6\": 0.5, \"state_l7\": 0.5, \"state_l8\": 0.5, \
                 \"action_l1\": 1, \"action_l2\": 0, \"action_l3\": 0, \"action_l4\": 0, \"action_l5\": 0, \"action_l6\": 0, \"action_l7\": 0, \"action_l8\": 0, \
                 \"reward_goal\": {}, \"adna_version_hash\": 1, \"sequence_number\": {}}}",
                hi,
                lo,
                ts0 + i as i64,
                (tag as i64) * 1000 + (i / 10) as i64,
                i % 10,
                (i % 7) as f64 / 7.0,
                i
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

pub fn replay(ctx: &mut Ctx<'_>) -> Result<Vec<Row>, Error> {
    let reps = ctx.reps(20);
    let c = &mut *ctx.client;
    let mut rows = Vec::new();
    c.batch_execute(
        "SET max_parallel_workers_per_gather = 0;
         SELECT fractality.drop_replay_buffer(name) FROM fractality.replay_buffers WHERE name LIKE 'bench%';
         DELETE FROM fractality.experience_events WHERE \"timestamp\" >= 4000000000000000;",
    )?;
    compact(c)?;

    // ---- write_events with the buffer and without it, in alternation -----------------------------
    // the buffer over every hot event (its build timed)
    let hot: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.experience_events WHERE NOT archived",
            &[],
        )?
        .get(0);
    let (_, build) = timed(|| {
        Ok(c.query_one(
            "SELECT fractality.create_replay_buffer('bench', backfill => true)",
            &[],
        )?)
    })?;
    let (size, levels): (i64, i16) = {
        let r = c.query_one(
            "SELECT size, levels FROM fractality.replay_buffers WHERE name = 'bench'",
            &[],
        )?;
        (r.get(0), r.get(1))
    };
    eprintln!("  replay: buffer of {size} items ({levels} levels) built in {build:.1} s");
    // the buffer vacuumed and its pages written out before anything is timed (otherwise the
    // autovacuum and the checkpoints behind the backfill of 1M items run through the timed loop)
    settle(c)?;
    let write = |c: &mut Client, tag: u64, n: usize, random: bool| -> Result<f64, Error> {
        let batch = events(tag, n, random);
        let (_, t) =
            timed(|| Ok(c.query_one("SELECT fractality.write_events_json($1::text)", &[&batch])?))?;
        Ok(ms(t))
    };
    // without the buffer: its trigger disabled (which spares write_events even the look at
    // replay_buffers that no buffer at all costs). Each batch comes after a write of one event
    // (plans made again after the ALTER) and a checkpoint (both sides pay the full-page images
    // of the pages they touch first); with and without alternate, so that the machine's drift
    // falls on both.
    let toggle = |c: &mut Client, on: bool| {
        c.batch_execute(&format!(
            "ALTER TABLE fractality.experience_events {} TRIGGER experience_events_to_replay",
            if on { "ENABLE" } else { "DISABLE" }
        ))
    };
    let alternate_writes = |c: &mut Client| -> Result<[Vec<f64>; 4], Error> {
        let mut times: [Vec<f64>; 4] = Default::default();
        let mut warm = 600;
        for i in 0..WRITE_BATCHES as u64 {
            for (shape, random) in [false, true].into_iter().enumerate() {
                for (side, with) in [true, false].into_iter().enumerate() {
                    toggle(c, with)?;
                    write(c, warm, 1, random)?;
                    warm += 1;
                    c.batch_execute("CHECKPOINT")?;
                    let tag = 100 + 100 * (2 * shape + side) as u64 + i;
                    times[2 * shape + side].push(write(c, tag, WRITE_BATCH, random)?);
                }
            }
        }
        Ok(times)
    };
    let written = alternate_writes(c);
    toggle(c, true)?;
    let [with, without, with_random, without_random] = written?;
    rows.push(Row::new(
        format!(
            "create_replay_buffer with backfill over {} hot events (s, once)",
            thousands(hot as u64)
        ),
        Some(Figure::single(build, Unit::Seconds)),
        None,
    ));
    rows.push(
        Row::new(
            format!(
                "write_events_json of {} events (ms per batch), with the buffer against no buffer",
                thousands(WRITE_BATCH as u64)
            ),
            Some(Figure::from_samples(&with, Unit::Millis)),
            Some(Figure::from_samples(&without, Unit::Millis)),
        )
        .target("<= 1.3x the time without buffers"),
    );
    rows.push(
        Row::new(
            "- the same with random event ids",
            Some(Figure::from_samples(&with_random, Unit::Millis)),
            Some(Figure::from_samples(&without_random, Unit::Millis)),
        )
        .target("<= 1.3x the time without buffers"),
    );

    // ---- sample 256 against SQL, update_priorities ---------------------------------------------
    let sample = c.prepare(
        "SELECT event_id, weight FROM fractality.sample_experiences('bench', $1::integer)",
    )?;
    // over the items' current priorities (the view overlays those written back and not folded)
    let es = c.prepare(
        "SELECT i.event_id FROM fractality.replay_priorities i
          WHERE i.buffer_id = (SELECT buffer_id FROM fractality.replay_buffers WHERE name = 'bench')
          ORDER BY ln(1 - random()) / power(i.priority, 0.6) DESC LIMIT $1::integer",
    )?;
    let fold_after: String = c
        .query_one("SHOW fractality.replay_fold_after", &[])?
        .get(0);
    let update = c.prepare("SELECT fractality.update_priorities('bench', $1, $2)")?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(ctx.params.seed);
    let (mut native, mut sql, mut updates) = (Vec::new(), Vec::new(), Vec::new());
    // a learner's loop: sample, write back; the SQL baseline in the first `reps` rounds
    for round in 0..reps.max(LEARN_ROUNDS) {
        let (drawn, t) = timed(|| Ok(c.query(&sample, &[&DRAWS])?))?;
        native.push(ms(t));
        let ids: Vec<Vec<u8>> = drawn.iter().map(|r| r.get(0)).collect();
        let errors: Vec<f64> = ids.iter().map(|_| rng.random_range(0.0..3.0)).collect();
        let (_, t) = timed(|| Ok(c.query_one(&update, &[&ids, &errors])?))?;
        updates.push(ms(t));
        if round < reps {
            let (_, t) = timed(|| Ok(c.query(&es, &[&DRAWS])?))?;
            sql.push(ms(t));
        }
    }
    rows.push(
        Row::new(
            format!(
                "sample_experiences('bench', 256) with weights, buffer of {} items",
                thousands(size as u64)
            ),
            Some(Figure::from_samples(&native, Unit::Millis)),
            Some(Figure::from_samples(&sql, Unit::Millis)),
        )
        .target("<= 5 ms; >= 50x the weighted-sampling SQL"),
    );
    // every item's priority written back, each a different one (as once a learner has drawn
    // every item: until then most items share the priority they entered at, which the sampler
    // computes p^alpha of once a run), in blocks of 50 000 items with their timestamps
    c.batch_execute(
        "SELECT sum(fractality.update_priorities('bench', w.ids, w.ps, w.ts))
           FROM (SELECT array_agg(i.event_id) AS ids, array_agg(0.01 + 3 * random()) AS ps,
                        array_agg(i.event_timestamp) AS ts
                   FROM fractality.replay_items i
                  WHERE i.buffer_id = (SELECT buffer_id FROM fractality.replay_buffers WHERE name = 'bench')
                  GROUP BY i.slot / 50000) w",
    )?;
    // the same SQL over a plain table of the buffer's items and current priorities (what a user
    // keeping them in a table of their own would scan: the view above unnests the blocks), in
    // alternation with the sample
    c.batch_execute(
        "DROP TABLE IF EXISTS bench_plain_items;
         CREATE TABLE bench_plain_items AS
         SELECT i.event_id, i.priority FROM fractality.replay_priorities i
          WHERE i.buffer_id = (SELECT buffer_id FROM fractality.replay_buffers WHERE name = 'bench')",
    )?;
    c.batch_execute("VACUUM (ANALYZE) bench_plain_items")?;
    let es_plain = c.prepare(
        "SELECT event_id FROM bench_plain_items
          ORDER BY ln(1 - random()) / power(priority, 0.6) DESC LIMIT $1::integer",
    )?;
    let draws = |c: &mut Client, q: &postgres::Statement| -> Result<f64, Error> {
        Ok(ms(timed(|| Ok(c.query(q, &[&DRAWS])?))?.1))
    };
    let (native_plain, plain) = alternate(c, reps, |c| draws(c, &sample), |c| draws(c, &es_plain))?;
    c.batch_execute("DROP TABLE bench_plain_items")?;
    rows.push(
        Row::new(
            "- against the same SQL over a plain table of the buffer's (event_id, priority), in alternation, every priority written back (all distinct)",
            Some(Figure::from_samples(&native_plain, Unit::Millis)),
            Some(Figure::from_samples(&plain, Unit::Millis)),
        )
        .target(">= 50x"),
    );
    // the 0.4.0 form over the whole store, a few times
    let mut old = Vec::new();
    for _ in 0..3 {
        let (_, t) = timed(|| {
            Ok(c.query(
                "SELECT * FROM fractality.sample_experiences(256, 0.6, 0.4)",
                &[],
            )?)
        })?;
        old.push(ms(t));
    }
    rows.push(Row::new(
        "- against the 0.4.0 sample_experiences(256, alpha, beta) over every hot event",
        Some(Figure::from_samples(&native, Unit::Millis)),
        Some(Figure::from_samples(&old, Unit::Millis)),
    ));
    rows.push(
        Row::new(
            format!(
                "update_priorities of 256 sampled ids (ms), {} calls, fractality.replay_fold_after {fold_after}",
                updates.len()
            ),
            Some(Figure::from_samples(&updates, Unit::Millis)),
            None,
        )
        .target("<= 5 ms"),
    );
    rows.push(Row::new(
        "- the same calls' mean, their folds included (ms)",
        Some(Figure::single(
            updates.iter().sum::<f64>() / updates.len() as f64,
            Unit::Millis,
        )),
        None,
    ));
    // ids this session did not draw (a learner behind a connection pool writes back from another
    // session than the one it sampled in): found through the event-id registry
    let pick = c.prepare(
        "SELECT substring(b.event_ids FROM (s % 120)::integer * 16 + 1 FOR 16), b.timestamps[s % 120 + 1]
           FROM unnest($1::bigint[]) s
           JOIN fractality.replay_blocks b
             ON b.buffer_id = (SELECT buffer_id FROM fractality.replay_buffers WHERE name = 'bench')
            AND b.block = s / 120
          WHERE b.timestamps[s % 120 + 1] >= 0",
    )?;
    let update_at = c.prepare("SELECT fractality.update_priorities('bench', $1, $2, $3)")?;
    let (mut undrawn, mut undrawn_at) = (Vec::new(), Vec::new());
    for round in 0..2 * reps {
        let slots: Vec<i64> = (0..DRAWS).map(|_| rng.random_range(0..size)).collect();
        let picked = c.query(&pick, &[&slots])?;
        let ids: Vec<Vec<u8>> = picked.iter().map(|r| r.get(0)).collect();
        let stamps: Vec<i64> = picked.iter().map(|r| r.get(1)).collect();
        let errors: Vec<f64> = ids.iter().map(|_| rng.random_range(0.0..3.0)).collect();
        if round % 2 == 0 {
            let (_, t) = timed(|| Ok(c.query_one(&update, &[&ids, &errors])?))?;
            undrawn.push(ms(t));
        } else {
            let (_, t) = timed(|| Ok(c.query_one(&update_at, &[&ids, &errors, &stamps])?))?;
            undrawn_at.push(ms(t));
        }
    }
    rows.push(
        Row::new(
            format!(
                "- update_priorities of 256 ids the session did not draw (ms), {} calls",
                undrawn.len()
            ),
            Some(Figure::from_samples(&undrawn, Unit::Millis)),
            None,
        )
        .target("<= 5 ms"),
    );
    rows.push(
        Row::new(
            format!(
                "- the same with their timestamps (update_priorities(buffer, ids, priorities, timestamps)), {} calls",
                undrawn_at.len()
            ),
            Some(Figure::from_samples(&undrawn_at, Unit::Millis)),
            None,
        )
        .target("<= 5 ms"),
    );

    // ---- the sample's time as the buffer grows ---------------------------------------------------
    for n in SCALES {
        let name = format!("bench_scale_{n}");
        let id: i32 = c
            .query_one("SELECT fractality.create_replay_buffer($1)", &[&name])?
            .get(0);
        // the blocks written directly, 120 slots each (FANOUT, src/replay/tree.rs)
        let ((), fill) = timed(|| {
            c.execute(
                "INSERT INTO fractality.replay_blocks (buffer_id, block, timestamps, event_ids, priorities, filled, span)
                 SELECT $1, g / 120,
                        array_agg(g ORDER BY g) || array_fill(-1::bigint, ARRAY[120 - count(*)::integer]),
                        string_agg(int8send(0) || int8send(g), ''::bytea ORDER BY g)
                          || decode(repeat('00', 16 * (120 - count(*)::integer)), 'hex'),
                        array_agg(0.5 + (g % 97) / 10.0 ORDER BY g) || array_fill(0::float8, ARRAY[120 - count(*)::integer]),
                        count(*), int8range(min(g), max(g), '[]')
                   FROM generate_series(0, $2::bigint - 1) g GROUP BY g / 120",
                &[&id, &n],
            )?;
            c.query_one("SELECT fractality._replay_rebuild($1)", &[&id])?;
            Ok(())
        })?;
        settle(c)?;
        let stmt = c.prepare(&format!(
            "SELECT event_id, weight FROM fractality.sample_experiences('{name}', $1::integer)"
        ))?;
        let mut t_s = Vec::new();
        for _ in 0..reps {
            let (_, t) = timed(|| Ok(c.query(&stmt, &[&DRAWS])?))?;
            t_s.push(ms(t));
        }
        eprintln!("  replay: {n} items filled and built in {fill:.1} s");
        rows.push(Row::new(
            format!(
                "- sample 256 from a buffer of {} items (tree built in {fill:.1} s with the items)",
                thousands(n as u64)
            ),
            Some(Figure::from_samples(&t_s, Unit::Millis)),
            None,
        ));
        c.execute("SELECT fractality.drop_replay_buffer($1)", &[&name])?;
    }

    // the events and buffers of the scenario go again
    c.batch_execute(
        "DELETE FROM fractality.experience_events WHERE \"timestamp\" >= 4000000000000000;
         SELECT fractality.drop_replay_buffer('bench');
         RESET max_parallel_workers_per_gather;",
    )?;
    compact(c)?;
    Ok(rows)
}
