-- ---- functions: a model for every embedding function; resonance_with; the consensus split ---

DROP FUNCTION fractality.find_resonant(uuid, float8, integer);
DROP FUNCTION fractality.find_resonant(text, float8, integer);
DROP FUNCTION fractality.calculate_resonance(uuid, uuid);
DROP FUNCTION fractality.crystallize_consensus(uuid, float8, integer);
DROP FUNCTION fractality.upsert_node(text, text, jsonb, float8, vector, text);
DROP FUNCTION fractality.upsert_node_for(uuid, text, text, jsonb, float8, vector, text);
DROP FUNCTION fractality.thaw(text, integer);
DROP FUNCTION fractality.freeze(jsonb);
-- their parameter "r#type" becomes "type"
DROP FUNCTION fractality.link(text, text, text, float8);
DROP FUNCTION fractality.unlink(text, text, text);

--@ pgrx find_resonant_wrapper
--@ pgrx find_resonant_by_key_wrapper
--@ pgrx calculate_resonance_wrapper
--@ pgrx resonance_with_wrapper
--@ pgrx crystallize_consensus_wrapper
--@ pgrx _crystallize_consensus_wrapper
--@ pgrx upsert_node_wrapper
--@ pgrx upsert_node_for_wrapper
--@ pgrx thaw_wrapper
--@ pgrx freeze_wrapper
--@ pgrx link_wrapper
--@ pgrx unlink_wrapper

--@ file resonance.sql DO $$||-- The seed's traversal
-- consensus_tree refuses a NULL argument with 22004 since 0.5.0
--@ file! resonance.sql -- The seed's traversal||COMMENT ON FUNCTION fractality.consensus_tree

-- write_events and write_events_json are named in Rust as in SQL since 0.5.0: write_events(jsonb)
-- moves to its own C symbol, write_events_json(text, json) to the one write_events(jsonb) had
-- (which reads either; the old symbols stay in the library for the scripts of 0.1.0-0.4.0)
CREATE OR REPLACE FUNCTION fractality.write_events(events jsonb) RETURNS bigint
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c AS 'MODULE_PATHNAME', 'write_events_wrapper';
--@ file! experience_api.sql CREATE FUNCTION fractality.write_events_json(events text)||-- Events with "timestamp" in

-- write_event_with_metadata refuses a NULL (22004) since 0.5.0: STRICT, it returned void and
-- wrote nothing without a word
ALTER FUNCTION fractality.write_event_with_metadata(jsonb, jsonb) CALLED ON NULL INPUT;

-- save_policy keeps version_hash unique among the policies (a counter on a repeat)
--@ file! experience_api.sql -- Saves a new version of the policy of a state bin||-- The active policy of a state bin
