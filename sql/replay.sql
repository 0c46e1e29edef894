-- fractality: prioritised experience replay
-- Named replay buffers over the experience store, as Schaul et al. (2016) define prioritised
-- replay and as Reverb and TorchRL implement it, but durable and transactional: events enter a
-- buffer when they are written, at the buffer's largest priority so far; a learner samples
-- (P(i) = p_i^alpha / sum_k p_k^alpha, importance weights (N P(i))^-beta / max), computes its TD
-- errors and writes them back as priorities (|delta| + epsilon). The sampling structure is a sum
-- tree kept in the database: replay_tree holds, per buffer, blocks of FANOUT (128) partial sums,
-- level 0 the items' p^alpha by slot, each level above the sums of the blocks below; a draw reads
-- one block per level (O(log N)). A learner's update appends one row to replay_pending; the rows
-- are folded into the items and the tree in bulk (see replay_pending), and samplers see them
-- meanwhile.
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

-- buffer_id is the buffer's, without a foreign key: the functions that write items hold the
-- buffer's row lock (FOR UPDATE) while they do, and drop_replay_buffer deletes them with it; a
-- foreign key's check per item cost write_events a quarter of its time with a buffer.
CREATE TABLE fractality.replay_items (
    buffer_id       integer NOT NULL,
    slot            bigint  NOT NULL,
    event_timestamp bigint  NOT NULL,
    event_id        bytea   NOT NULL,
    priority        float8  NOT NULL,
    CONSTRAINT replay_items_pkey PRIMARY KEY (buffer_id, slot),
    CONSTRAINT replay_items_priority CHECK (priority > 0 AND priority < 'Infinity')
) WITH (fillfactor = 80);   -- room on each page: a new priority is a HOT update (no index entry)

COMMENT ON TABLE fractality.replay_items IS
    'The events of each replay buffer by slot, with their priority p as the sum tree holds it (p^alpha); priorities written back and not yet folded are in replay_pending, and the view replay_priorities shows every item''s current one.';

-- Items by their event's timestamp: an event leaving (deleted: its id and timestamp are known)
-- and archiving (everything before a cutoff) find theirs through it, and update_priorities the
-- items of ids its session did not just sample (their timestamps from experience_event_ids).
-- Experience arrives roughly in time order, so new entries go to the index's right edge. No
-- index on the event id itself: its entries land at random places among every item's (5 000
-- events written touched ~3 900 of its leaf pages, each read and written whole to the WAL after
-- a checkpoint: write_events with a buffer took ~4x longer in this insert than without that
-- index, docs/BENCHMARKS.md).
CREATE INDEX replay_items_time ON fractality.replay_items (event_timestamp, buffer_id);

CREATE TABLE fractality.replay_tree (
    buffer_id integer  NOT NULL REFERENCES fractality.replay_buffers (buffer_id) ON DELETE CASCADE,
    level     smallint NOT NULL,
    block     bigint   NOT NULL,
    sums      float8[] NOT NULL,
    CONSTRAINT replay_tree_pkey PRIMARY KEY (buffer_id, level, block)
) WITH (fillfactor = 50);   -- blocks are rewritten in place: leave room for HOT updates

COMMENT ON TABLE fractality.replay_tree IS
    'The sum tree of each replay buffer: blocks of 128 partial sums per level (level 0: p^alpha by slot).';

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

-- Events written enter every buffer whose filter they pass, at the buffer's largest priority;
-- with a capacity the oldest items are overwritten. One buffer at a time, each locked for the
-- rest of the transaction (its writers are serialised; samplers read a consistent snapshot).
-- SECURITY DEFINER: a role that may write events keeps the buffers in step without privileges
-- of its own on them.
CREATE FUNCTION fractality._replay_enter() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    b record;
    k bigint;
    fresh bigint;
BEGIN
    FOR b IN SELECT * FROM fractality.replay_buffers ORDER BY buffer_id FOR UPDATE LOOP
        -- entry j of the batch takes sequence number next_seq + j; with a capacity, slot
        -- seq % capacity (the oldest item there goes), and only the batch's last `capacity`
        -- entries are written (the earlier ones would be overwritten by them at once); without
        -- one, every slot is new
        IF b.capacity IS NULL THEN
            INSERT INTO fractality.replay_items (buffer_id, slot, event_timestamp, event_id, priority)
            SELECT b.buffer_id, b.next_seq + row_number() OVER () - 1, n."timestamp", n.event_id,
                   b.max_priority
              FROM new_events n
             WHERE (b.event_type IS NULL OR n.event_type = b.event_type)
               AND (b.policy_version IS NULL OR n.adna_version_hash = b.policy_version);
            GET DIAGNOSTICS k = ROW_COUNT;
            IF k > 0 THEN
                PERFORM fractality._replay_entered(b.buffer_id, b.next_seq, k, k);
            END IF;
            CONTINUE;
        END IF;
        SELECT count(*) INTO k FROM new_events n
         WHERE (b.event_type IS NULL OR n.event_type = b.event_type)
           AND (b.policy_version IS NULL OR n.adna_version_hash = b.policy_version);
        CONTINUE WHEN k = 0;
        WITH written AS (
            INSERT INTO fractality.replay_items AS i (buffer_id, slot, event_timestamp, event_id, priority)
            SELECT b.buffer_id,
                   (b.next_seq + m.j) % b.capacity,
                   m."timestamp", m.event_id, b.max_priority
              FROM (SELECT row_number() OVER () - 1 AS j, n."timestamp", n.event_id
                      FROM new_events n
                     WHERE (b.event_type IS NULL OR n.event_type = b.event_type)
                       AND (b.policy_version IS NULL OR n.adna_version_hash = b.policy_version)) m
             WHERE m.j >= k - b.capacity
            ON CONFLICT ON CONSTRAINT replay_items_pkey DO UPDATE
               SET event_timestamp = EXCLUDED.event_timestamp, event_id = EXCLUDED.event_id,
                   priority = EXCLUDED.priority
            RETURNING i.xmax = 0 AS fresh)
        SELECT count(*) FILTER (WHERE w.fresh) INTO fresh FROM written w;
        -- the sum tree over the slots written, the buffer's counters
        PERFORM fractality._replay_entered(b.buffer_id, b.next_seq, k, fresh);
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
    DELETE FROM fractality.replay_items;
    DELETE FROM fractality.replay_tree;
    UPDATE fractality.replay_buffers SET size = 0, levels = 1, pending = 0;
    RETURN NULL;
END
$$;

CREATE TRIGGER experience_events_truncate_replay
    AFTER TRUNCATE ON fractality.experience_events
    FOR EACH STATEMENT EXECUTE FUNCTION fractality._replay_truncate();
