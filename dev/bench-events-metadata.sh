#!/usr/bin/env bash
# Times write_events_json (text), write_events (jsonb) and remember_many (jsonb) on batches whose
# elements carry metadata with float numbers: 5 000 events, 1 000 memories, five runs each in
# turn. Each event batch is committed (its time includes the commit, where action metadata's
# reference to its event is checked, row by row) and truncated after; each remember_many is
# rolled back. For comparing two builds by hand (install one, run, install the other, run); the
# harness's ingest scenario writes events without metadata.
#   bash dev/bench-events-metadata.sh [conninfo of a database where fractality may be created]
set -euo pipefail
url=${1:-"host=localhost port=54331 user=postgres dbname=postgres"}
db=fractality_bench_metadata
PGOPTIONS="-c client_min_messages=warning" psql "$url" -qX -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null
target="$url dbname=$db"
PGOPTIONS="-c client_min_messages=warning" psql "$target" -qX >/dev/null <<'SQL'
CREATE EXTENSION fractality CASCADE;
SELECT fractality.ensure_partitions(1);
CREATE TABLE batch AS
SELECT json_agg(json_build_object(
  'event_id', lpad(to_hex(i), 32, '0'), 'timestamp', (extract(epoch from now()) * 1e6)::bigint + i,
  'episode_id', i / 100, 'step_number', i % 100, 'event_type', 1, 'flags', 0,
  'state_l1', random(), 'state_l2', random(), 'state_l3', random(), 'state_l4', random(),
  'state_l5', random(), 'state_l6', random(), 'state_l7', random(), 'state_l8', random(),
  'action_l1', random(), 'action_l2', random(), 'action_l3', random(), 'action_l4', random(),
  'action_l5', random(), 'action_l6', random(), 'action_l7', random(), 'action_l8', random(),
  'reward_goal', random(), 'reward_curiosity', random(), 'adna_version_hash', 7, 'sequence_number', i,
  'metadata', json_build_object('intent_type', 'x', 'executor_id', 'e',
                                'parameters', json_build_object('p', random(), 'q', random()))))::text AS t
  FROM generate_series(1, 5000) i;
CREATE TABLE mems AS
SELECT jsonb_agg(jsonb_build_object('node_key', 'k' || i, 'content', 'memory ' || i,
  'embedding', (SELECT array_agg(random()) FROM generate_series(1, 384) WHERE i > 0),
  'metadata', jsonb_build_object('a', random(), 'b', i))) AS m FROM generate_series(1, 1000) i;
SQL
run=$(mktemp)
{
  echo "SET fractality.user_id = '00000000-0000-4000-8000-0000000000aa';"
  echo '\timing on'
  for _ in 1 2 3 4 5; do
    echo "SELECT fractality.write_events_json((SELECT t FROM batch)) \\g /dev/null"
    echo "TRUNCATE fractality.experience_events, fractality.action_metadata;"
    echo "SELECT fractality.write_events((SELECT t FROM batch)::jsonb) \\g /dev/null"
    echo "TRUNCATE fractality.experience_events, fractality.action_metadata;"
    echo "BEGIN; SELECT count(*) FROM fractality.remember_many((SELECT m FROM mems)) \\g /dev/null"
    echo "ROLLBACK;"
  done
} > "$run"
psql "$target" -qX -f "$run" | awk '/^Time/ { t[n++] = $2 }
  END { split("write_events_json (text)|write_events (jsonb)|remember_many (jsonb)", name, "|")
        split("0 2 5", at, " ")
        for (k = 0; k < 3; k++) { printf "%s ms:", name[k + 1]
          for (i = 0; i < n; i++) if (i % 7 == at[k + 1]) printf " %s", t[i]; print "" } }'
rm -f "$run"
psql "$url" -qX -c "DROP DATABASE $db" >/dev/null
