-- fractality: consciousness streams
-- Energy and attention of each node over time, range-partitioned by month (UTC) with a default
-- partition, and the packed cold tier they are archived into.

CREATE TABLE fractality.consciousness_streams (
    time             timestamptz NOT NULL,
    node_id          uuid        NOT NULL,
    user_id          uuid        NOT NULL DEFAULT fractality.current_user_id(),
    atp_level        float8      NOT NULL,
    attention_score  float8,
    resonance_vector real[],
    CONSTRAINT consciousness_streams_node FOREIGN KEY (node_id, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT consciousness_streams_time_finite CHECK (isfinite(time)),
    CONSTRAINT consciousness_streams_atp_range CHECK (atp_level >= 0 AND atp_level <= 1),
    CONSTRAINT consciousness_streams_attention_finite
        CHECK (attention_score > '-Infinity'::float8 AND attention_score < 'Infinity'::float8),
    -- a point's resonance vector is bounded, so that the archive's rows are (_pack_stream_points)
    CONSTRAINT consciousness_streams_vector_size CHECK (cardinality(resonance_vector) <= 1000000)
) PARTITION BY RANGE (time);

COMMENT ON TABLE fractality.consciousness_streams IS
    'Energy (atp_level) and attention of nodes over time; monthly partitions (UTC) plus a default.';

-- The partitions: a default one, made here, and one per month (UTC), made by
-- fractality.ensure_partitions (run_maintenance) as months come, never by the install script:
-- monthly partitions are ordinary tables, not members of the extension, so that pg_dump dumps
-- them (definition, rows, index) and a restore never meets a partition of the same name made by
-- CREATE EXTENSION. For the same reason the index is each partition's own, not one declared on
-- the parent (whose partitions' indexes pg_restore would create twice): a node's recent points,
-- newest first.
CREATE TABLE fractality.consciousness_streams_default
    PARTITION OF fractality.consciousness_streams DEFAULT;
SELECT fractality._protect_partition('fractality.consciousness_streams_default');
CREATE INDEX consciousness_streams_default_node_time
    ON fractality.consciousness_streams_default (node_id, time DESC);
-- no primary key: the whole row is its identity for logical replication (experience.sql)
ALTER TABLE fractality.consciousness_streams REPLICA IDENTITY FULL;
ALTER TABLE fractality.consciousness_streams_default REPLICA IDENTITY FULL;

-- The cold tier: many points of one node per row, column-wise, lossless.
-- times[i], atp_levels[i], attention_scores[i] and resonance_vectors[i] describe point i, in time
-- order. attention_scores (resonance_vectors) is NULL when every point's value was NULL.
-- resonance_vectors holds each real[] as its text form written with extra_float_digits = 3, which
-- reads back bit for bit (dimensions, bounds, NULL elements included); fractality.archive_streams
-- writes it and fractality.stream_history reads it.
CREATE TABLE fractality.consciousness_archive (
    id                bigint      GENERATED ALWAYS AS IDENTITY,
    node_id           uuid        NOT NULL,
    user_id           uuid        NOT NULL DEFAULT fractality.current_user_id(),
    time_from         timestamptz NOT NULL,
    time_to           timestamptz NOT NULL,
    points            integer     NOT NULL,
    times             timestamptz[] NOT NULL,
    atp_levels        float8[]    NOT NULL,
    attention_scores  float8[],
    resonance_vectors text[],
    archived_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT consciousness_archive_pkey PRIMARY KEY (id, user_id),
    CONSTRAINT consciousness_archive_node FOREIGN KEY (node_id, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT consciousness_archive_span CHECK (time_from <= time_to),
    CONSTRAINT consciousness_archive_points CHECK (
        points > 0
        AND cardinality(times) = points
        AND cardinality(atp_levels) = points
        AND (attention_scores IS NULL OR cardinality(attention_scores) = points)
        AND (resonance_vectors IS NULL OR cardinality(resonance_vectors) = points))
);

COMMENT ON TABLE fractality.consciousness_archive IS
    'Cold tier of consciousness_streams: points of one node packed column-wise, lossless.';

CREATE INDEX consciousness_archive_node_time ON fractality.consciousness_archive (node_id, time_from);
