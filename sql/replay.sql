-- fractality: prioritised experience replay
-- Named replay buffers over the experience store, as Schaul et al. (2016) define prioritised
-- replay and as Reverb and TorchRL implement it, but durable and transactional: events enter a
-- buffer when they are written, at the buffer's largest priority so far; a learner samples
-- (P(i) = p_i^alpha / sum_k p_k^alpha, importance weights (N P(i))^-beta divided by the largest
-- weight of the draw, not of the whole buffer as TorchRL divides), computes its TD errors and
-- writes them back as priorities (|delta| + epsilon; an id the buffer holds no item of is
-- skipped, as Reverb skips it). The sampling structure is a sum
-- tree kept in the database: replay_tree holds, per buffer, blocks of FANOUT (120) partial sums,
-- level 0 the items' p^alpha by slot, each level above the sums of the blocks below; a draw reads
-- one block per level (O(log N)). The items are kept in the same blocks of 120 slots
-- (replay_blocks, one row a block; the view replay_items shows one row an item). A learner's
-- update appends one row to replay_pending; the rows are folded into the items and the tree in
-- bulk (see replay_pending), and samplers see them meanwhile.
-- src/replay/ has the functions; this file the tables and the triggers that keep buffers in
-- step with the events (written, deleted, truncated; _archive_events_before and
-- _drop_events_before take archived and dropped events out explicitly).

CREATE TABLE fractality.replay_buffers (
    buffer_id      integer     GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name           text        NOT NULL,
    alpha          float8      NOT NULL DEFAULT 0.6,
    beta           float8      NOT NULL DEFAULT 0.4,
    epsilon        float8      NOT NULL DEFAULT 1e-6,
    capacity       bigint,
    event_type     smallint,
    policy_version integer,
    -- the largest priority the buffer has held: new events enter at it
    max_priority   float8      NOT NULL DEFAULT 1.0,
    -- items ever entered (the next slot is next_seq, or next_seq % capacity)
    next_seq       bigint      NOT NULL DEFAULT 0,
    size           bigint      NOT NULL DEFAULT 0,
    -- levels of the sum tree (the root is the one block of level levels - 1)
    levels         smallint    NOT NULL DEFAULT 1,
    -- priorities written back since the last fold (replay_pending; a slot counts once a call)
    pending        bigint      NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT replay_buffers_name UNIQUE (name),
    CONSTRAINT replay_buffers_name_length CHECK (char_length(name) BETWEEN 1 AND 63),
    CONSTRAINT replay_buffers_alpha CHECK (alpha >= 0 AND alpha <= 10),
    CONSTRAINT replay_buffers_beta CHECK (beta >= 0 AND beta <= 1),
    CONSTRAINT replay_buffers_epsilon CHECK (epsilon > 0 AND epsilon < 1),
    CONSTRAINT replay_buffers_capacity CHECK (capacity > 0),
    CONSTRAINT replay_buffers_max_priority CHECK (max_priority > 0 AND max_priority < 'Infinity'),
    CONSTRAINT replay_buffers_counts CHECK (next_seq >= 0 AND size >= 0 AND levels >= 1 AND pending >= 0)
);

COMMENT ON TABLE fractality.replay_buffers IS
    'Prioritised replay buffers over experience_events: alpha, beta, epsilon, an optional capacity (the oldest item goes first) and filter.';

-- The items, FANOUT (120) slots to a row: block k of a buffer holds slots 120k .. 120k + 119,
-- entry j (from 1) of its arrays slot 120k + j - 1: the event's timestamp (-1: the slot is
-- empty), its id (16 bytes at offset 16 (j - 1) of event_ids; zeros where empty) and its priority
-- p as the tree holds it (p^alpha is in the tree; 0 where empty). No NULL in the arrays, so that
-- an entry is reached by offset. A batch of 5 000 events enters as 42 rows with 42 index entries
-- each, where one row and two B-tree entries an item took about three times as long (the write
-- target of issue 17: docs/BENCHMARKS.md). span is the range of the block's timestamps: the
-- items of a known event (removals, archiving, update_priorities given ids) are found through
-- it (SP-GiST: 8 us a probe among 7 800 blocks, GiST 14 us) or where it starts, then by
-- position in the block.
-- Why 120 slots and not 128: a slot is 32 bytes (timestamp, id, priority), so a row of 120 is
-- 3.9 KB and two versions of it fit in a page: a rewrite that changes only priorities (a fold)
-- is a HOT update, with no new index entries and no dead row left for the next reader to step
-- over. A row of 128 (4.2 KB) did not fit twice: every fold of 1M items left 7 800 dead rows
-- and a table twice its size until a vacuum, and a sample read past them (2.73 ms against 2.15
-- ms after a VACUUM, stock server).
-- buffer_id is the buffer's, without a foreign key: the functions that write items hold the
-- buffer's row lock (FOR UPDATE) while they do, and drop_replay_buffer deletes them with it.
CREATE TABLE fractality.replay_blocks (
    buffer_id  integer   NOT NULL,
    block      bigint    NOT NULL,
    timestamps bigint[]  NOT NULL,
    event_ids  bytea     NOT NULL,
    priorities float8[]  NOT NULL,
    -- how many of the slots hold an item
    filled     smallint  NOT NULL,
    span       int8range NOT NULL,
    CONSTRAINT replay_blocks_pkey PRIMARY KEY (buffer_id, block),
    CONSTRAINT replay_blocks_shape CHECK (
        cardinality(timestamps) = 120 AND cardinality(priorities) = 120
        AND octet_length(event_ids) = 1920 AND filled BETWEEN 1 AND 120),
    CONSTRAINT replay_blocks_priorities CHECK (
        0 <= ALL (priorities) AND 'Infinity' > ALL (priorities))
) WITH (fillfactor = 50, toast_tuple_target = 8160);   -- 3.9 KB rows kept whole, one a page, rewritten HOT

ALTER TABLE fractality.replay_blocks ALTER timestamps SET STORAGE MAIN,
    ALTER event_ids SET STORAGE MAIN, ALTER priorities SET STORAGE MAIN;

COMMENT ON TABLE fractality.replay_blocks IS
    'The events of each replay buffer, 120 slots a row: timestamps (-1: empty), ids (16 bytes each), priorities p as the sum tree holds them (p^alpha); the view replay_items shows one row an item.';

CREATE INDEX replay_blocks_span ON fractality.replay_blocks USING spgist (span);
-- Blocks by where they start: experience arrives in time order, so an event is nearly always in
-- the block that starts last at or before its timestamp (3 us a probe; replay_find_at.sql).
CREATE INDEX replay_blocks_start ON fractality.replay_blocks (buffer_id, lower(span));

-- One row an item, as the blocks hold them (priorities written back and not yet folded are in
-- replay_pending: the view replay_priorities shows every item's current one).
CREATE VIEW fractality.replay_items WITH (security_invoker = true) AS
SELECT b.buffer_id, b.block * 120 + u.k - 1 AS slot, u.ts AS event_timestamp,
       substring(b.event_ids FROM (u.k::integer - 1) * 16 + 1 FOR 16) AS event_id, u.p AS priority
  FROM fractality.replay_blocks b,
       unnest(b.timestamps, b.priorities) WITH ORDINALITY u(ts, p, k)
 WHERE u.ts >= 0;

COMMENT ON VIEW fractality.replay_items IS
    'The items of every replay buffer, one row each (slot, event, the priority p the sum tree holds), read from replay_blocks.';

CREATE TABLE fractality.replay_tree (
    buffer_id integer  NOT NULL REFERENCES fractality.replay_buffers (buffer_id) ON DELETE CASCADE,
    level     smallint NOT NULL,
    block     bigint   NOT NULL,
    sums      float8[] NOT NULL,
    CONSTRAINT replay_tree_pkey PRIMARY KEY (buffer_id, level, block)
) WITH (fillfactor = 50);   -- blocks are rewritten in place: leave room for HOT updates

COMMENT ON TABLE fractality.replay_tree IS
    'The sum tree of each replay buffer: blocks of 120 partial sums per level (level 0: p^alpha by slot).';

-- Priorities written back by update_priorities and not yet folded into replay_items and
-- replay_tree: one row per call (the slots, the priority the tree holds for each, the new one),
-- folded once fractality.replay_fold_after priorities were written to a buffer since its last
-- fold (its column pending), before any other change of its tree (events entering a full
-- buffer, leaving, a rebuild), and by fold_priorities and run_maintenance. A sample reads them
-- with the tree in one snapshot and draws with the current priorities. Rows stay inline up to
-- ~8 KB (about 340 slots a call).
CREATE TABLE fractality.replay_pending (
    buffer_id  integer  NOT NULL REFERENCES fractality.replay_buffers (buffer_id) ON DELETE CASCADE,
    seq        bigint   GENERATED ALWAYS AS IDENTITY,
    slots      bigint[] NOT NULL,
    olds       float8[] NOT NULL,
    priorities float8[] NOT NULL,
    CONSTRAINT replay_pending_pkey PRIMARY KEY (buffer_id, seq),
    CONSTRAINT replay_pending_lengths CHECK (
        cardinality(olds) = cardinality(slots) AND cardinality(priorities) = cardinality(slots))
) WITH (toast_tuple_target = 8160);

COMMENT ON TABLE fractality.replay_pending IS
    'Priorities written back by update_priorities and not yet folded into replay_items and replay_tree (samplers see them).';

-- Every item of every buffer with its current priority (a pending one where there is one).
CREATE VIEW fractality.replay_priorities WITH (security_invoker = true) AS
SELECT i.buffer_id, i.slot, i.event_timestamp, i.event_id, coalesce(p.priority, i.priority) AS priority
  FROM fractality.replay_items i
  LEFT JOIN (SELECT DISTINCT ON (w.buffer_id, u.slot) w.buffer_id, u.slot, u.priority
               FROM fractality.replay_pending w, unnest(w.slots, w.priorities) u(slot, priority)
              ORDER BY w.buffer_id, u.slot, w.seq DESC) p
    ON p.buffer_id = i.buffer_id AND p.slot = i.slot;

COMMENT ON VIEW fractality.replay_priorities IS
    'Every item of every replay buffer with its current priority, pending or folded.';

-- Events written enter every buffer whose filter they pass, at the buffer's largest priority
-- (entry j of the batch takes sequence number next_seq + j, slot seq or, with a capacity,
-- seq % capacity, where the oldest item goes: src/replay/upkeep.rs, entered). One buffer at a
-- time, each locked for the rest of the transaction (its writers are serialised; samplers read a
-- consistent snapshot). Every buffer, in the order of their ids, even one none of the events
-- enters: a transaction's first batch then takes every lock it will ever take here, so two
-- transactions writing batches of other buffers in other orders (or a writer and lock_all's
-- archiving) never wait for each other in a circle. The price: a writer waits for a learner
-- holding any buffer (update_priorities in an open transaction).
-- SECURITY DEFINER: a role that may write events keeps the buffers in step without privileges
-- of its own on them.
CREATE FUNCTION fractality._replay_enter() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b record;
    ts bigint[];
    ids bytea[];
BEGIN
    FOR b IN SELECT * FROM fractality.replay_buffers ORDER BY buffer_id FOR UPDATE LOOP
        SELECT array_agg(n."timestamp"), array_agg(n.event_id) INTO ts, ids
          FROM new_events n
         WHERE (b.event_type IS NULL OR n.event_type = b.event_type)
           AND (b.policy_version IS NULL OR n.adna_version_hash = b.policy_version);
        -- the items' blocks, the sum tree over the slots written, the buffer's counters
        IF ts IS NOT NULL THEN
            PERFORM fractality._replay_entered(b.buffer_id, ts, ids);
        END IF;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER experience_events_to_replay
    AFTER INSERT ON fractality.experience_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION fractality._replay_enter();

-- Events deleted leave every buffer (archiving and dropping take theirs out in
-- _archive_events_before and _drop_events_before, which move or drop whole partitions).
CREATE FUNCTION fractality._replay_leave() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM fractality.replay_buffers) THEN
        PERFORM fractality._replay_remove(
            ARRAY(SELECT o.event_id FROM old_events o),
            ARRAY(SELECT o."timestamp" FROM old_events o));
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER experience_events_from_replay
    AFTER DELETE ON fractality.experience_events
    REFERENCING OLD TABLE AS old_events
    FOR EACH STATEMENT EXECUTE FUNCTION fractality._replay_leave();

CREATE FUNCTION fractality._replay_truncate() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    DELETE FROM fractality.replay_pending;
    DELETE FROM fractality.replay_blocks;
    DELETE FROM fractality.replay_tree;
    UPDATE fractality.replay_buffers SET size = 0, levels = 1, pending = 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER experience_events_truncate_replay
    AFTER TRUNCATE ON fractality.experience_events
    FOR EACH STATEMENT EXECUTE FUNCTION fractality._replay_truncate();
