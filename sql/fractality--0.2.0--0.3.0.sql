-- fractality: upgrade from 0.2.0 to 0.3.0
-- Run by ALTER EXTENSION fractality UPDATE (TO '0.3.0'), after fractality--0.1.0--0.2.0.sql when
-- coming from 0.1.0. tests/client/tests/upgrade.rs updates 0.1.0 and 0.2.0 installs (their
-- scripts kept in tests/upgrade/) and compares each with a fresh install.
--
-- write_events_json: the batch of write_events as JSON text (`text` or `json`), read by serde
-- straight from the text (no jsonb conversion of the batch). Nothing else of the schema changes.

CREATE FUNCTION fractality.write_events_json(events text) RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'write_events_text_wrapper';

CREATE FUNCTION fractality.write_events_json(events json) RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'write_events_text_wrapper';
