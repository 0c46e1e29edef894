-- ---- prioritised replay: buffers, items, sum trees; archiving takes events out of them -----

--@ file replay.sql CREATE TABLE fractality.replay_buffers (||CREATE FUNCTION fractality._replay_enter() RETURNS trigger
--@ pgrx _replay_entered_wrapper
--@ pgrx _replay_remove_wrapper
--@ pgrx _replay_remove_before_wrapper
--@ pgrx _replay_rebuild_wrapper
--@ file replay.sql CREATE FUNCTION fractality._replay_enter() RETURNS trigger||
--@ pgrx create_replay_buffer_wrapper
--@ pgrx drop_replay_buffer_wrapper
--@ pgrx sample_experiences_from_wrapper
--@ pgrx update_priorities_wrapper
--@ pgrx update_priorities_at_wrapper
--@ pgrx fold_priorities_wrapper
--@ pgrx replay_batch_wrapper

--@ file! archive.sql -- Moves every event with "timestamp" < cutoff_us (and its action_metadata) into the cold tier;||-- The seed's function, done right
--@ file! archive.sql -- Deletes every event (and its metadata) with "timestamp" < cutoff_us from the hot tier; whole||-- ---- streams

REVOKE EXECUTE ON FUNCTION fractality._replay_enter() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_leave() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_truncate() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_entered(integer, bigint[], bytea[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_remove(bytea[], bigint[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_remove_before(bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION fractality._replay_rebuild(integer) FROM PUBLIC;
