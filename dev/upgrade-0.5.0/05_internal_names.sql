-- ---- internal helpers: a leading underscore ----------------------------------------------------
-- The partition and archive steps (not for direct calls, not executable by PUBLIC) take a
-- leading underscore, as the other internal helpers have. They are renamed first, so that every
-- later section replaces (CREATE OR REPLACE) the renamed function, which keeps its privileges,
-- its comment and its membership of the extension. The bodies of 0.4.0 that name a renamed
-- helper and that no later section replaces are replaced here: _archive_partition_name,
-- archive_old_events, _archive_streams_before, archive_streams and _drop_streams_before. PUBLIC
-- loses EXECUTE on them (0.4.0 revoked nothing) by the internal helpers' REVOKE at the end
-- (security.sql).

ALTER FUNCTION fractality.protect_partition(regclass) RENAME TO _protect_partition;
ALTER FUNCTION fractality.create_month_partition(regclass, date) RENAME TO _create_month_partition;
ALTER FUNCTION fractality.us_to_timestamptz(bigint) RENAME TO _us_to_timestamptz;
ALTER FUNCTION fractality.partition_bounds(regclass) RENAME TO _partition_bounds;
ALTER FUNCTION fractality.drop_partition(regclass) RENAME TO _drop_partition;
ALTER FUNCTION fractality.archive_partition_name(bigint) RENAME TO _archive_partition_name;
ALTER FUNCTION fractality.new_event_table(text, bigint, bigint) RENAME TO _new_event_table;
ALTER FUNCTION fractality.set_event_bound(regclass, bigint, bigint) RENAME TO _set_event_bound;
ALTER FUNCTION fractality.attach_to_archive(regclass, bigint, bigint) RENAME TO _attach_to_archive;
ALTER FUNCTION fractality.event_table_as(text, regclass, bigint, bigint) RENAME TO _event_table_as;
ALTER FUNCTION fractality.archive_events_before(bigint) RENAME TO _archive_events_before;
ALTER FUNCTION fractality.drop_events_before(bigint) RENAME TO _drop_events_before;
ALTER FUNCTION fractality.pack_stream_points(text, timestamptz) RENAME TO _pack_stream_points;
ALTER FUNCTION fractality.archive_streams_before(timestamptz) RENAME TO _archive_streams_before;
ALTER FUNCTION fractality.drop_streams_before(timestamptz) RENAME TO _drop_streams_before;
ALTER FUNCTION fractality.ensure_month_partition(regclass, date) RENAME TO _ensure_month_partition;

--@ file! archive.sql -- Name of the archive partition starting at lo||-- A fresh table shaped like `parent`

--@ file! archive.sql -- The seed's function, done right||-- Deletes every event (and its metadata)

--@ file! archive.sql -- Moves every stream point with time < cutoff into consciousness_archive||-- A node's stream points in [from, to)
