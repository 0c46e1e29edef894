//! Upgrades: install each earlier version (0.1.0 to 0.4.0: their install scripts kept in
//! tests/upgrade/fractality--<version>.sql; scripts/test.sh puts them beside the current one), write
//! a row into every table, run ALTER EXTENSION fractality UPDATE, find every row unchanged and
//! every function working, and compare the upgraded schema with a fresh install of the current
//! version, object by object: a schema change that the upgrade script
//! (sql/fractality--A--B.sql) forgets fails this test, and the message lists what differs.

mod common;
mod reliability;

use postgres::Client;
use std::collections::{BTreeMap, BTreeSet};
use uuid::Uuid;

/// Every object of schema fractality as one line each: relations with their options, columns,
/// constraints, indexes, policies, triggers, views, functions and aggregates (full definition),
/// types, comments, privileges, and the extension's membership list.
const CATALOG: &str = r#"
WITH ns AS (SELECT 'fractality'::regnamespace AS oid),
ext AS (SELECT oid FROM pg_extension WHERE extname = 'fractality')
SELECT 'relation ' || c.relname || ' kind ' || c.relkind::text || ' options ' || coalesce(c.reloptions::text, '')
       -- (an ACL granted and revoked again holds the owner's default: the same as none)
       || ' rls ' || c.relrowsecurity || '/' || c.relforcerowsecurity || ' acl '
       || coalesce(nullif(c.relacl, acldefault(CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END::"char", c.relowner))::text, '')
       || ' partition ' || coalesce(pg_get_expr(c.relpartbound, c.oid), '') || ' identity ' || c.relreplident::text
       || ' key ' || CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) ELSE '' END
       || ' comment ' || coalesce(obj_description(c.oid, 'pg_class'), '')
  FROM pg_class c, ns WHERE c.relnamespace = ns.oid
UNION ALL
SELECT 'column ' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || ' notnull ' || a.attnotnull || ' default ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
       || ' generated ' || a.attgenerated::text || ' identity ' || a.attidentity::text
       -- the place among the live columns (a column an upgrade drops leaves a gap in attnum)
       || ' position ' || rank() OVER (PARTITION BY c.oid ORDER BY a.attnum)
       || ' comment ' || coalesce(col_description(c.oid, a.attnum), '')
  FROM pg_class c JOIN ns ON c.relnamespace = ns.oid
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
 WHERE c.relkind IN ('r', 'p', 'v', 'c', 'm', 'f')
UNION ALL
SELECT 'constraint ' || c.relname || '.' || k.conname || ' ' || pg_get_constraintdef(k.oid)
  FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN ns ON c.relnamespace = ns.oid
UNION ALL
SELECT 'index ' || pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN ns ON c.relnamespace = ns.oid
UNION ALL
SELECT 'policy ' || c.relname || '.' || p.polname || ' ' || p.polcmd::text || ' ' || p.polpermissive
       || ' roles ' || p.polroles::text || ' using ' || coalesce(pg_get_expr(p.polqual, p.polrelid), '')
       || ' check ' || coalesce(pg_get_expr(p.polwithcheck, p.polrelid), '')
  FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid JOIN ns ON c.relnamespace = ns.oid
UNION ALL
SELECT 'trigger ' || pg_get_triggerdef(t.oid) || ' enabled ' || t.tgenabled::text
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN ns ON c.relnamespace = ns.oid
 WHERE NOT t.tgisinternal
UNION ALL
SELECT 'view ' || c.relname || ' ' || pg_get_viewdef(c.oid)
  FROM pg_class c JOIN ns ON c.relnamespace = ns.oid WHERE c.relkind IN ('v', 'm')
UNION ALL
SELECT 'function ' || p.oid::regprocedure::text || ' kind ' || p.prokind::text || ' acl ' || coalesce(p.proacl::text, '')
       || ' comment ' || coalesce(obj_description(p.oid, 'pg_proc'), '') || ' '
       || CASE WHEN p.prokind = 'a' THEN
              (SELECT 'aggregate ' || a.aggtransfn::text || ' ' || a.aggfinalfn::text || ' '
                      || a.aggcombinefn::text || ' ' || a.aggserialfn::text || ' ' || a.aggdeserialfn::text
                      || ' ' || a.aggtranstype::regtype::text || ' ' || coalesce(a.agginitval, '')
                      || ' ' || a.aggkind::text || ' ' || a.aggfinalmodify::text
                 FROM pg_aggregate a WHERE a.aggfnoid = p.oid)
          ELSE pg_get_functiondef(p.oid) END
  FROM pg_proc p JOIN ns ON p.pronamespace = ns.oid
UNION ALL
SELECT 'type ' || t.typname || ' ' || t.typtype::text || ' ' || format_type(t.oid, NULL)
  FROM pg_type t JOIN ns ON t.typnamespace = ns.oid
UNION ALL
SELECT 'member ' || pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_depend d, ext WHERE d.refclassid = 'pg_extension'::regclass AND d.refobjid = ext.oid
   AND d.deptype = 'e'
UNION ALL
-- what pg_dump takes for the extension's own grants and leaves out of a dump
SELECT 'initial privileges ' || c.relname || ' ' || i.objsubid || ' ' || i.initprivs::text
  FROM pg_init_privs i JOIN pg_class c ON i.classoid = 'pg_class'::regclass AND c.oid = i.objoid
  JOIN ns ON c.relnamespace = ns.oid
UNION ALL
SELECT 'dumped ' || x.rel::regclass::text || ' ' || coalesce(x.cond, '')
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS x(rel, cond)
 WHERE e.extname = 'fractality'
"#;

fn catalog(c: &mut Client) -> BTreeSet<String> {
    c.query(CATALOG, &[])
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

/// Columns an upgrade from an earlier version drops on purpose (`table.column`): left out of the
/// digests. (Their data, where it moves elsewhere, is checked where it goes.)
const DROPPED: &[&str] = &[
    // the full text became an index expression (fractality.node_search)
    "nodes.search",
    // 0.5.0: the centroid moved into consensus_centroids (checked after the upgrade)
    "consensus_nodes.centroid",
    // 0.5.0: the key names the seed by a digest (checked after the upgrade)
    "consensus_nodes.node_key",
    // 0.5.0: a consensus publishes no label, and its links' similarity to one decimal (checked
    // after the upgrade)
    "consensus_nodes.label",
    "consensus_nodes.metadata",
    "consensus_nodes.resonance_score",
    "consensus_links.similarity",
];

/// The columns of every table of the extension.
fn columns(c: &mut Client) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in c
        .query(
            "SELECT c.relname::text, a.attname::text FROM pg_class c
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
              WHERE c.relnamespace = 'fractality'::regnamespace AND c.relkind IN ('r', 'p')",
            &[],
        )
        .unwrap()
    {
        out.entry(r.get(0)).or_default().push(r.get(1));
    }
    out
}

/// Row count and digest of every table of the extension (each row as jsonb of the columns in
/// `keep` when given, the columns the previous version had, without those in DROPPED).
fn contents(
    c: &mut Client,
    keep: Option<&BTreeMap<String, Vec<String>>>,
) -> BTreeMap<String, (i64, String)> {
    let mut out = BTreeMap::new();
    for t in reliability::tables(c) {
        let dropped: Vec<String> = DROPPED
            .iter()
            .filter_map(|d| d.strip_prefix(&format!("{t}.")).map(str::to_string))
            .collect();
        let cols: Option<Vec<String>> = keep.map(|k| k.get(&t).cloned().unwrap_or_default());
        let r = c
            .query_one(
                &format!(
                    "SELECT count(*), coalesce(md5(string_agg(j, '|' ORDER BY j)), '')
                       FROM (SELECT (SELECT coalesce(jsonb_object_agg(e.key, e.value), '{{}}')
                                       FROM jsonb_each(to_jsonb(x)) e
                                      WHERE NOT e.key = ANY ($1::text[])
                                        AND ($2::text[] IS NULL OR e.key = ANY ($2::text[])))::text AS j
                               FROM fractality.{t} x) r"
                ),
                &[&dropped, &cols],
            )
            .unwrap();
        out.insert(t, (r.get(0), r.get(1)));
    }
    out
}

/// A row in every table, written through the previous version's functions where it has them.
fn write_everything(c: &mut Client) -> (Uuid, Uuid) {
    let users = [
        Uuid::from_u128(0x0919_0000_0000_4000_8000_0000_0000_0001),
        Uuid::from_u128(0x0919_0000_0000_4000_8000_0000_0000_0002),
        Uuid::from_u128(0x0919_0000_0000_4000_8000_0000_0000_0003),
    ];
    let mut roots = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let root: Uuid = c
            .query_one(
                "SELECT fractality.upsert_node_for($1, 'root', 'Upgrade root', '{\"theme\": \"upgrade\"}', 0.9, $2::text::vector, 'idea')",
                &[u, &reliability::vector_text(3, i, 0.05)],
            )
            .unwrap()
            .get(0);
        c.execute(
            "SELECT fractality.upsert_node_for($1, 'child', 'Upgrade child', '{}', 0.7, $2::text::vector)",
            &[u, &reliability::vector_text(3, 10 + i, 0.05)],
        )
        .unwrap();
        c.batch_execute(&format!(
            "SET fractality.user_id = '{u}';
             SELECT fractality.link('root', 'child', 'child', 0.8);
             SELECT fractality.pulse('{root}', 0.05);
             INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
             VALUES ('2001-01-01', '{root}', '{u}', 0.5);
             INSERT INTO fractality.consciousness_archive (node_id, user_id, time_from, time_to, points, times, atp_levels)
             VALUES ('{root}', '{u}', '2000-01-01', '2000-01-01', 1, ARRAY['2000-01-01'::timestamptz], ARRAY[0.4]);"
        ))
        .unwrap();
        roots.push(root);
    }
    // consensus needs this library's schema: until the update it says so (55000), and the
    // collective layer is written as the previous version's function would have written it
    let e = c
        .query_one(
            "SELECT fractality.crystallize_consensus($1, 0.8, 3)",
            &[&roots[0]],
        )
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "55000", "{e}");
    // so does the full-text search, whose table came with this library's schema
    let e = c
        .query("SELECT * FROM fractality.search_nodes('upgrade')", &[])
        .unwrap_err();
    assert_eq!(common::sqlstate(&e), "55000", "{e}");
    c.execute(
        "WITH cn AS (
             INSERT INTO fractality.consensus_nodes (node_key, label, metadata, centroid, contributor_count, resonance_score)
             SELECT 'consensus-' || $1::uuid::text, 'Upgrade root', '{\"of\": \"a member\"}', fractality.normalize_vector(
                        (SELECT array_agg(x ORDER BY i) FROM unnest($2::text::vector::real[]) WITH ORDINALITY u(x, i))::vector),
                    3, 0.87
             RETURNING id)
         INSERT INTO fractality.consensus_links (consensus_id, node_id, user_id, similarity)
         SELECT cn.id, n.id, n.user_id, 0.95 FROM cn, fractality.nodes n WHERE n.node_key IN ('root', 'child')",
        &[&roots[0], &reliability::vector_text(3, 0, 0.05)],
    )
    .unwrap();
    let events = reliability::events_json(0x0919, 100, 1_000_000);
    c.execute("SELECT fractality.write_events($1::jsonb)", &[&events])
        .unwrap();
    // events of now, in the monthly partition the old install made (or its default one, at a
    // month's turn in another time zone): the upgrade takes those partitions out of the extension
    let now_us: i64 = c
        .query_one("SELECT (extract(epoch FROM now()) * 1000000)::bigint", &[])
        .unwrap()
        .get(0);
    let recent = reliability::events_json(0x0917, RECENT as usize, now_us);
    c.execute("SELECT fractality.write_events($1::jsonb)", &[&recent])
        .unwrap();
    c.batch_execute(
        "SELECT fractality.write_event_with_metadata(
             '{\"event_id\": \"0000000000000000000000000000ffff\", \"timestamp\": 2000000, \"episode_id\": 9, \"step_number\": 0, \"event_type\": 1, \"flags\": 0, \"state_l1\": 0, \"state_l2\": 0, \"state_l3\": 0, \"state_l4\": 0, \"state_l5\": 0, \"state_l6\": 0, \"state_l7\": 0, \"state_l8\": 0, \"action_l1\": 0, \"action_l2\": 0, \"action_l3\": 0, \"action_l4\": 0, \"action_l5\": 0, \"action_l6\": 0, \"action_l7\": 0, \"action_l8\": 0, \"adna_version_hash\": 7, \"sequence_number\": 0}',
             '{\"intent_type\": \"explore\", \"executor_id\": \"e1\", \"parameters\": {\"p\": 1}}');
         SELECT fractality.save_policy('upgrade-bin', 'rule-1', '{\"0\": 0.5}');
         SELECT fractality.save_policy('upgrade-bin', 'rule-2', '{\"0\": 0.7}');
         SELECT fractality.save_config('upgrade', 'key', '{\"v\": 1}');
         SELECT fractality.save_config('upgrade', 'key', '{\"v\": 2}');
         INSERT INTO fractality.learning_metrics (metric_type, metric_data) VALUES ('upgrade', '{\"x\": 1}');
         INSERT INTO fractality.retention_policies (relation, keep, action)
         VALUES ('fractality.consciousness_streams', '3 months', 'archive');",
    )
    .unwrap();
    // the cold tier (0.2.0 on): events older than the ones above, one with metadata, archived by
    // the version's own function, so that the upgrade moves archive partitions with rows in them
    if has_cold_tier(c) {
        let old_events = reliability::events_json(0x0918, ARCHIVED as usize - 1, 100_000);
        c.execute("SELECT fractality.write_events($1::jsonb)", &[&old_events])
            .unwrap();
        c.batch_execute(
            "SELECT fractality.write_event_with_metadata(
                 '{\"event_id\": \"0000000000000000000000000000fffe\", \"timestamp\": 500000, \"episode_id\": 8, \"step_number\": 0, \"event_type\": 1, \"flags\": 0, \"state_l1\": 0, \"state_l2\": 0, \"state_l3\": 0, \"state_l4\": 0, \"state_l5\": 0, \"state_l6\": 0, \"state_l7\": 0, \"state_l8\": 0, \"action_l1\": 0, \"action_l2\": 0, \"action_l3\": 0, \"action_l4\": 0, \"action_l5\": 0, \"action_l6\": 0, \"action_l7\": 0, \"action_l8\": 0, \"adna_version_hash\": 7, \"sequence_number\": 0}',
                 '{\"intent_type\": \"archived\", \"executor_id\": \"e0\", \"parameters\": {\"p\": 0}}');",
        )
        .unwrap();
        let moved: i64 = c
            .query_one("SELECT fractality.archive_events_before(1000000)", &[])
            .unwrap()
            .get(0);
        assert_eq!(
            moved, ARCHIVED,
            "the old events archived before the upgrade"
        );
    }
    (roots[0], users[0])
}

/// Events in the cold tier before an upgrade from a version that has one.
const ARCHIVED: i64 = 21;

/// Events of the upgrade's own time, in the month partitions of the old install.
const RECENT: i64 = 10;

/// Whether the installed version has the cold tier of events (0.2.0 on; archived by
/// `archive_events_before` until 0.4.0).
fn has_cold_tier(c: &mut Client) -> bool {
    c.query_one(
        "SELECT to_regclass('fractality.experience_events_archive') IS NOT NULL",
        &[],
    )
    .unwrap()
    .get(0)
}

#[test]
fn upgrade_from_0_1_0_keeps_every_row_and_matches_a_fresh_install() {
    upgrade_from("0.1.0");
}

#[test]
fn upgrade_from_0_2_0_keeps_every_row_and_matches_a_fresh_install() {
    upgrade_from("0.2.0");
}

#[test]
fn upgrade_from_0_3_0_keeps_every_row_and_matches_a_fresh_install() {
    upgrade_from("0.3.0");
}

#[test]
fn upgrade_from_0_4_0_keeps_every_row_and_matches_a_fresh_install() {
    upgrade_from("0.4.0");
}

fn upgrade_from(previous: &str) {
    let tag = previous.replace('.', "_");
    let (old_db, new_db) = (
        format!("fractality_upgrade_old_{tag}"),
        format!("fractality_upgrade_new_{tag}"),
    );
    let mut old = common::fresh_db(
        &old_db,
        &format!("CREATE EXTENSION fractality VERSION '{previous}' CASCADE"),
    );
    let (root, user) = write_everything(&mut old);
    let cold = has_cold_tier(&mut old);
    let before = contents(&mut old, None);
    let old_columns = columns(&mut old);
    let centroids: Vec<String> = old
        .query(
            "SELECT centroid::text FROM fractality.consensus_nodes ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for (t, (n, _)) in &before {
        // the inbox is emptied when policies take their events in; every other table has rows
        assert!(
            *n > 0 || t == "policy_reward_inbox",
            "no row in {t} before the upgrade"
        );
    }
    if cold {
        assert_eq!(before["experience_events_archive"].0, ARCHIVED);
        assert_eq!(before["action_metadata_archive"].0, 1);
    }

    // an application role granted the tables as the README says, before the upgrade
    let app = format!("fractality_upgrade_app_{tag}");
    old.batch_execute(&format!(
        "DROP ROLE IF EXISTS {app}; CREATE ROLE {app};
         GRANT USAGE ON SCHEMA fractality TO {app};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA fractality TO {app};
         GRANT USAGE ON ALL SEQUENCES IN SCHEMA fractality TO {app};"
    ))
    .unwrap();
    // 0.5.0 requires btree_gin (node_text's GIN index leads with the tenant); an UPDATE does not
    // create what a new version requires
    old.batch_execute(
        "CREATE EXTENSION IF NOT EXISTS btree_gin; ALTER EXTENSION fractality UPDATE",
    )
    .unwrap();
    let version = common::extversion(&mut old);
    let current: String = old
        .query_one(
            "SELECT default_version FROM pg_available_extensions WHERE name = 'fractality'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(version, current);
    assert_ne!(version, previous);
    // the tables of the previous version keep their rows (tables the upgrade adds may be new,
    // columns it adds are left out)
    let mut after = contents(&mut old, Some(&old_columns));
    after.retain(|t, _| before.contains_key(t));
    assert_eq!(after, before, "rows changed in the upgrade");
    // 0.5.0 keeps the centroids apart
    let moved: Vec<String> = old
        .query(
            "SELECT centroid::text FROM fractality.consensus_centroids ORDER BY consensus_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(moved, centroids, "every centroid kept");
    assert!(!moved.is_empty());
    // and publishes what a crystallisation now writes: no label or metadata, its score and its
    // links to one decimal (the old consensus said 'Upgrade root' and a member's metadata, its
    // score 0.87, its links 0.95)
    let published: Vec<(Option<String>, String, f64, f64)> = old
        .query(
            "SELECT c.label, c.metadata::text, c.resonance_score, l.similarity
               FROM fractality.consensus_nodes c
               JOIN fractality.consensus_links l ON l.consensus_id = c.id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert!(!published.is_empty());
    for (label, metadata, score, similarity) in published {
        assert_eq!(label, None);
        assert_eq!(metadata, "{}");
        approx::assert_relative_eq!(score, 0.9);
        approx::assert_relative_eq!(similarity, 1.0);
    }

    // every function works on the upgraded schema and its data
    old.batch_execute(&format!("SET fractality.user_id = '{user}'"))
        .unwrap();
    let checks: &[(&str, i64)] = &[
        ("SELECT count(*) FROM fractality.traverse((SELECT id FROM fractality.nodes WHERE node_key = 'root' AND user_id = fractality.current_user_id()))", 2),
        ("SELECT count(*) FROM fractality.children('root')", 1),
        // the root's stream points in both tiers: two hot, one archived
        ("SELECT jsonb_array_length(fractality.thaw('root') -> 'stream')", 3),
        ("SELECT count(*) FROM fractality.find_resonant('root', 0.0, 10)", 1),
        ("SELECT count(*) FROM fractality.query_events(0, 10000000, 1000, true)", 101),
        ("SELECT (fractality.load_policy('upgrade-bin') ->> 'version')::bigint", 2),
        ("SELECT count(*) FROM fractality.config_history('upgrade', 'key')", 2),
        ("SELECT fractality.refresh_policy_rewards()", 0),
        ("SELECT count(*) FROM fractality.sample_experiences(5, 0.6, 0.4, 1)", 5),
        ("SELECT count(*) FROM fractality.episode_returns(0, 10000000)", 2),
        // as the owner: every tenant's root and child contributed
        ("SELECT count(*) FROM fractality.consensus_tree(0.0, 5) WHERE depth = 1", 6),
        ("SELECT count(*) FROM fractality.active_consciousness WHERE user_id = fractality.current_user_id()", 2),
        ("SELECT count(*) FROM fractality.apply_consciousness_decay(0.9, 0.1, fractality.current_user_id())", 2),
        ("SELECT sign(fractality.materialize_decay())::bigint", 1),
        ("SELECT count(*) FROM fractality.search_nodes('upgrade')", 2),
        ("SELECT (fractality.crystallize_consensus((SELECT id FROM fractality.nodes WHERE node_key = 'root' AND user_id = fractality.current_user_id()), 0.8, 3) IS NOT NULL)::int::bigint", 1),
        ("SELECT fractality.write_events('[]'::jsonb)", 0),
        ("SELECT fractality.write_events_json('[]'::json)", 0),
        ("SELECT fractality.write_events_json('[]')", 0),
    ];
    for (sql, expected) in checks {
        let got: i64 = old
            .query_one(&format!("SELECT ({sql})::bigint"), &[])
            .unwrap_or_else(|e| panic!("{sql}: {e:?}"))
            .get(0);
        assert_eq!(got, *expected, "{sql}");
    }
    // the consensus keyed by its seed's id is keyed by a digest of it: the seed's crystallisation
    // above updated that one, and made no second
    let keys: Vec<bool> = old
        .query(
            "SELECT node_key = 'consensus-' || md5($1::uuid::text) FROM fractality.consensus_nodes",
            &[&root],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(keys, [true], "one consensus, under the seed's digest");
    let recent: i64 = old
        .query_one(
            "SELECT count(*) FROM fractality.experience_events WHERE event_id >= '\\x0000000000000917'::bytea
                AND event_id < '\\x0000000000000918'::bytea",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(recent, RECENT, "this month's events kept");
    if cold {
        // the archived events came through: read from the cold tier with their metadata, and
        // their ids held by the registry (new in 0.5.0), so none is written again at another time
        let (n, intents): (i64, Vec<String>) = {
            let r = old
                .query_one(
                    "SELECT count(*), array_agg(intent_type) FILTER (WHERE intent_type IS NOT NULL)
                       FROM fractality.query_events(0, 999999, 1000, true, true) WHERE archived",
                    &[],
                )
                .unwrap();
            (r.get(0), r.get(1))
        };
        assert_eq!((n, intents), (ARCHIVED, vec!["archived".to_string()]));
        let again = reliability::events_json(0x0918, 1, 3_000_000);
        let e = old
            .execute("SELECT fractality.write_events($1::jsonb)", &[&again])
            .unwrap_err();
        assert_eq!(common::sqlstate(&e), "23505", "{e}");
    }
    let now: f64 = old
        .query_one(
            "SELECT atp FROM fractality.node_energy WHERE node_id = $1",
            &[&root],
        )
        .unwrap()
        .get(0);
    let atp: f64 = old
        .query_one("SELECT fractality.pulse($1, 0.01)", &[&root])
        .unwrap()
        .get(0);
    // the energy of now plus 0.01, at most 1 (the milliseconds between the two statements decay
    // it by less than the tolerance)
    approx::assert_abs_diff_eq!(atp, (now + 0.01).min(1.0), epsilon = 1e-6);

    // the role keeps writing nodes: their text goes into node_text (new in 0.5.0), which the
    // upgrade granted it as it had nodes
    old.batch_execute(&format!("SET ROLE {app}")).unwrap();
    old.batch_execute("SELECT fractality.upsert_node('granted', 'written after the upgrade')")
        .unwrap_or_else(|e| panic!("a granted role writing a node after the upgrade: {e:?}"));
    let found: i64 = old
        .query_one(
            "SELECT count(*) FROM fractality.search_nodes('written upgrade') WHERE node_key = 'granted'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(found, 1);
    // and embeddings (node_embeddings is made anew, with the models beside it), replay buffers
    // and the event-id registry (new): the role keeps what it held on the tables they replace or
    // sit beside, as the README's GRANT ... ON ALL TABLES would give it on a fresh install
    let v = "array_fill(0.5, ARRAY[384])::vector";
    for sql in [
        format!(
            "SELECT fractality.upsert_node('granted_v', 'with a vector', '{{}}', 0.5, {v})::text"
        ),
        "SELECT count(*)::text FROM fractality.find_resonant('granted_v', 0.0, 5)".to_string(),
        format!("SELECT count(*)::text FROM fractality.recall({v}, 3)"),
        "SELECT count(*)::text FROM fractality.replay_buffers".to_string(),
        "SELECT count(*)::text FROM fractality.replay_priorities".to_string(),
        "SELECT count(*)::text FROM fractality.experience_event_ids".to_string(),
        // both tiers of events: the cold tier came with 0.2.0, whose update granted nothing on
        // it (from 0.1.0 the role's query_events failed with 42501 on it, archived or not)
        "SELECT count(*)::text FROM fractality.query_events(0, 10000000, 1000, true, true)"
            .to_string(),
        "SELECT count(*)::text FROM fractality.query_events(0, 10000000)".to_string(),
    ] {
        old.query_one(&sql, &[])
            .unwrap_or_else(|e| panic!("a granted role after the upgrade: {sql}: {e:?}"));
    }
    // and the sequences the update adds, as GRANT ... ON ALL SEQUENCES gave it the old ones
    let granted: bool = old
        .query_one(
            "SELECT has_sequence_privilege('fractality.replay_buffers_buffer_id_seq', 'USAGE')
                AND has_sequence_privilege('fractality.replay_pending_seq_seq', 'USAGE')",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(granted, "the new sequences' USAGE for the granted role");
    old.batch_execute(&format!(
        "RESET ROLE; REVOKE ALL ON ALL TABLES IN SCHEMA fractality FROM {app};
         REVOKE ALL ON ALL SEQUENCES IN SCHEMA fractality FROM {app};
         REVOKE USAGE ON SCHEMA fractality FROM {app}; DROP ROLE {app};"
    ))
    .unwrap();

    // the upgraded schema is the fresh one, object for object; the monthly partitions the old
    // install script made (this month's and the next) are ordinary tables now, as
    // ensure_partitions makes them in a fresh install
    let mut new = common::fresh_db(
        &new_db,
        "CREATE EXTENSION fractality CASCADE; SELECT fractality.ensure_partitions(1);",
    );
    let (upgraded, fresh) = (catalog(&mut old), catalog(&mut new));
    let missing: Vec<&String> = fresh.difference(&upgraded).collect();
    let extra: Vec<&String> = upgraded.difference(&fresh).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the upgrade script does not produce the schema of a fresh install.\n\
         In a fresh install, not after the upgrade ({}):\n  {}\n\
         After the upgrade, not in a fresh install ({}):\n  {}",
        missing.len(),
        missing
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  "),
        extra.len(),
        extra
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n  ")
    );
    // archiving goes on after the upgrade, into the month the old version archived into
    let moved: i64 = old
        .query_one("SELECT fractality.archive_old_events(1)", &[])
        .unwrap()
        .get(0);
    assert_eq!(moved, 101, "the hot events archived after the upgrade");
    let (n, with_metadata): (i64, i64) = {
        let r = old
            .query_one(
                "SELECT count(*), count(intent_type)
                   FROM fractality.query_events(0, 10000000, 1000, true, true) WHERE archived",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    let archived_before = if cold { ARCHIVED } else { 0 };
    assert_eq!(
        (n, with_metadata),
        (101 + archived_before, 1 + i64::from(cold))
    );
    reliability::report(&format!(
        "upgrade {previous} -> {version}: {} tables, {} rows kept; {} catalog entries identical to a fresh install",
        before.len(),
        before.values().map(|v| v.0).sum::<i64>(),
        fresh.len()
    ));
    drop(old);
    drop(new);
    for db in [&old_db, &new_db] {
        common::drop_db(db);
    }
}

/// An event id 0.4.0 stored twice (it refused a duplicate only at the same timestamp) stops the
/// update with a message naming it, and the update changes nothing; once one copy is deleted it
/// runs, and the id is written once from then on.
#[test]
fn an_event_id_stored_twice_by_0_4_0_stops_the_update() {
    let db = "fractality_upgrade_duplicate_ids";
    let mut c = common::fresh_db(
        db,
        "CREATE EXTENSION fractality VERSION '0.4.0' CASCADE; CREATE EXTENSION IF NOT EXISTS btree_gin;",
    );
    let event = |ts: i64| {
        let mut e = serde_json::json!({
            "event_id": "000000000000000000000000000000aa", "timestamp": ts, "episode_id": 1,
            "step_number": 0, "event_type": 1, "flags": 0, "adna_version_hash": 7,
            "sequence_number": 0
        });
        for k in 1..=8 {
            e[format!("state_l{k}")] = serde_json::json!(0);
            e[format!("action_l{k}")] = serde_json::json!(0);
        }
        serde_json::Value::Array(vec![e])
    };
    for ts in [1000i64, 2000] {
        c.execute("SELECT fractality.write_events($1::jsonb)", &[&event(ts)])
            .unwrap();
    }
    let err = c
        .batch_execute("ALTER EXTENSION fractality UPDATE")
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "23505", "{err}");
    let message = err.as_db_error().unwrap().message().to_string();
    assert!(
        message.contains(
            "1 event ids are each stored more than once (such as 000000000000000000000000000000aa)"
        ),
        "{message}"
    );
    let version = common::extversion(&mut c);
    assert_eq!(version, "0.4.0");
    c.batch_execute(
        "DELETE FROM fractality.experience_events WHERE \"timestamp\" = 1000;
         ALTER EXTENSION fractality UPDATE;",
    )
    .unwrap();
    let registered: i64 = c
        .query_one(
            "SELECT count(*) FROM fractality.experience_event_ids WHERE \"timestamp\" = 2000",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(registered, 1);
    let err = c
        .execute("SELECT fractality.write_events($1::jsonb)", &[&event(3000)])
        .unwrap_err();
    assert_eq!(common::sqlstate(&err), "23505", "{err}");
    drop(c);
    common::drop_db(db);
}
