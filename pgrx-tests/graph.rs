//! The graph API inside the server: upserts, links, traversal against the seed's recursive CTE,
//! cheapest paths against exhaustive search, thaw/freeze, search, bad input.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use approx::assert_relative_eq;
    use pgrx::prelude::*;

    const ALICE: &str = "aaaaaaaa-0000-4000-8000-00000000000a";

    fn as_alice() {
        Spi::run(&format!("SET fractality.user_id = '{ALICE}'")).unwrap();
    }

    fn one<T: IntoDatum + FromDatum>(sql: &str) -> Option<T> {
        Spi::get_one::<T>(sql).expect("query runs")
    }

    fn count(sql: &str) -> i64 {
        one::<i64>(sql).unwrap()
    }

    /// A random graph of `n` nodes g0..g{n-1} with about `per` 'child' edges each, weights in
    /// (0.05, 1], energies in [0.05, 1], reproducible.
    fn random_graph(n: i32, per: i32) {
        as_alice();
        Spi::run(&format!(
            "SELECT setseed(0.17);
             INSERT INTO fractality.nodes (user_id, node_key, atp)
             SELECT '{ALICE}', 'g' || i, 0.05 + 0.95 * random() FROM generate_series(0, {n} - 1) i;
             INSERT INTO fractality.edges (user_id, from_node, to_node, weight)
             SELECT DISTINCT ON (a.id, b.id) '{ALICE}', a.id, b.id, p.w
               FROM (SELECT i, floor(random() * {n})::int AS j, round((0.05 + 0.95 * random())::numeric, 3) AS w
                       FROM generate_series(0, {n} - 1) i, generate_series(1, {per}) k) p
               JOIN fractality.nodes a ON a.node_key = 'g' || p.i
               JOIN fractality.nodes b ON b.node_key = 'g' || p.j
              WHERE a.id <> b.id;"
        ))
        .unwrap();
    }

    #[pg_test]
    fn graph_upsert_node_inserts_then_updates() {
        as_alice();
        let id = one::<pgrx::Uuid>(
            "SELECT fractality.upsert_node('idea', 'An idea', '{\"description\": \"first\", \"x\": 1}', 0.4,
                                           array_fill(0.5::real, ARRAY[384])::vector, 'concept')",
        )
        .unwrap();
        // same key: same row; NULLs keep, metadata merges, atp and embedding are replaced
        let again = one::<pgrx::Uuid>(
            "SELECT fractality.upsert_node('idea', NULL, '{\"x\": 2}', 0.8,
                                           array_fill(0.25::real, ARRAY[384])::vector)",
        )
        .unwrap();
        assert_eq!(id, again);
        assert_eq!(
            count("SELECT count(*) FROM fractality.nodes WHERE node_key = 'idea'"),
            1
        );
        let (label, kind) = Spi::get_two::<String, String>(
            "SELECT label, type FROM fractality.nodes WHERE node_key = 'idea'",
        )
        .unwrap();
        assert_eq!(label.as_deref(), Some("An idea"));
        assert_eq!(kind.as_deref(), Some("concept"));
        assert_eq!(
            one::<String>("SELECT metadata::text FROM fractality.nodes WHERE node_key = 'idea'")
                .unwrap(),
            r#"{"x": 2, "description": "first"}"#
        );
        assert_relative_eq!(
            one::<f64>("SELECT atp FROM fractality.nodes WHERE node_key = 'idea'").unwrap(),
            0.8
        );
        assert_relative_eq!(
            one::<f64>(
                "SELECT (e.embedding::real[])[1]::float8 FROM fractality.node_embeddings e
                   JOIN fractality.nodes n ON n.id = e.node_id WHERE n.node_key = 'idea'"
            )
            .unwrap(),
            0.25
        );
        assert_eq!(count("SELECT count(*) FROM fractality.node_embeddings"), 1);
        // a new node gets energy 1.0 and the session's tenant
        Spi::run("SELECT fractality.upsert_node('other')").unwrap();
        assert_relative_eq!(
            one::<f64>("SELECT atp FROM fractality.nodes WHERE node_key = 'other'").unwrap(),
            1.0
        );
        assert_eq!(
            one::<String>("SELECT user_id::text FROM fractality.nodes WHERE node_key = 'other'")
                .unwrap(),
            ALICE
        );
        // the owner's overload writes for any tenant
        Spi::run(
            "SELECT fractality.upsert_node_for('bbbbbbbb-0000-4000-8000-00000000000b', 'idea', 'Bob''s idea', '{}')",
        )
        .unwrap();
        assert_eq!(
            count("SELECT count(*) FROM fractality.nodes WHERE node_key = 'idea'"),
            2
        );
    }

    #[pg_test]
    fn graph_link_upserts_on_the_triple_and_unlink_removes() {
        as_alice();
        Spi::run("SELECT fractality.upsert_node('p'), fractality.upsert_node('q')").unwrap();
        let a = one::<pgrx::Uuid>("SELECT fractality.link('p', 'q')").unwrap();
        let b = one::<pgrx::Uuid>("SELECT fractality.link('p', 'q', 'child', -0.5)").unwrap();
        assert_eq!(a, b);
        let c =
            one::<pgrx::Uuid>("SELECT fractality.link('p', 'q', 'resonates_with', 0.7)").unwrap();
        assert_ne!(a, c);
        assert_relative_eq!(
            one::<f64>(&format!(
                "SELECT weight FROM fractality.edges WHERE id = '{a}'"
            ))
            .unwrap(),
            -0.5
        );
        assert_eq!(count("SELECT count(*) FROM fractality.children('p')"), 1);
        assert_eq!(
            count("SELECT count(*) FROM fractality.children('p', 'resonates_with')"),
            1
        );
        assert_eq!(
            one::<String>("SELECT node_key FROM fractality.parents('q')").unwrap(),
            "p"
        );
        assert_eq!(count("SELECT count(*) FROM fractality.children('q')"), 0);
        assert_eq!(
            one::<bool>("SELECT fractality.unlink('p', 'q')"),
            Some(true)
        );
        assert_eq!(
            one::<bool>("SELECT fractality.unlink('p', 'q')"),
            Some(false)
        );
        assert_eq!(count("SELECT count(*) FROM fractality.edges"), 1);
    }

    /// The seed's recursive CTE (path array, cycle check) from the root g0 to `depth`.
    fn seed_cte(depth: i32) -> String {
        format!(
            "WITH RECURSIVE consciousness_tree AS (
                 SELECT n.id, n.node_key, 0 AS depth, ARRAY[n.id] AS path, 1.0::float8 AS accumulated_weight
                   FROM fractality.nodes n WHERE n.node_key = 'g0'
                 UNION ALL
                 SELECT n.id, n.node_key, ct.depth + 1, ct.path || n.id, ct.accumulated_weight * e.weight
                   FROM consciousness_tree ct
                   JOIN fractality.edges e ON ct.id = e.from_node
                   JOIN fractality.nodes n ON e.to_node = n.id
                  WHERE ct.depth < {depth} AND NOT n.id = ANY(ct.path) AND e.relationship_type = 'child')
             SELECT * FROM consciousness_tree"
        )
    }

    #[pg_test]
    fn graph_traverse_agrees_with_the_seed_cte() {
        random_graph(300, 3);
        let root = "(SELECT id FROM fractality.nodes WHERE node_key = 'g0')";
        // the walk reaches something: the root alone at depth 0, with its children at depth 1,
        // and further at each depth asked (3 edges a node)
        let children = count(&format!(
            "SELECT count(DISTINCT to_node) FROM fractality.edges
              WHERE from_node = {root} AND relationship_type = 'child'"
        ));
        assert!(children >= 1, "g0 has {children} children");
        let mut reached_before = 0;
        for depth in [0, 1, 3, 5] {
            let reached = count(&format!(
                "SELECT count(*) FROM fractality.traverse({root}, {depth})"
            ));
            match depth {
                0 => assert_eq!(reached, 1),
                1 => assert_eq!(reached, 1 + children),
                _ => assert!(
                    reached > reached_before,
                    "depth {depth}: {reached} nodes, {reached_before} before"
                ),
            }
            reached_before = reached;
            // the same nodes, each at the smallest depth the CTE finds it
            let mismatched = count(&format!(
                "WITH cte AS (SELECT id, min(depth) AS depth FROM ({}) t GROUP BY id),
                      nat AS (SELECT node_id AS id, depth FROM fractality.traverse({root}, {depth}))
                 SELECT count(*) FROM cte FULL JOIN nat USING (id)
                  WHERE cte.depth IS DISTINCT FROM nat.depth",
                seed_cte(depth)
            ));
            assert_eq!(mismatched, 0, "depth {depth}");
            // positive weights: the native path is the strongest among the shortest
            let worse = count(&format!(
                "WITH cte AS (SELECT id, depth, max(accumulated_weight) AS w FROM ({}) t GROUP BY id, depth),
                      nat AS (SELECT * FROM fractality.traverse({root}, {depth}))
                 SELECT count(*) FROM nat JOIN cte ON cte.id = nat.node_id AND cte.depth = nat.depth
                  WHERE abs(cte.w - nat.accumulated_weight) > 1e-9",
                seed_cte(depth)
            ));
            assert_eq!(worse, 0, "depth {depth}");
        }
        // paths are real: consecutive nodes are linked, they start at the root, no repeats
        let bad_paths = count(
            "SELECT count(*) FROM fractality.traverse((SELECT id FROM fractality.nodes WHERE node_key = 'g0'), 6) t
              WHERE t.path[1] <> (SELECT id FROM fractality.nodes WHERE node_key = 'g0')
                 OR cardinality(t.path) <> t.depth + 1
                 OR t.path[cardinality(t.path)] <> t.node_id
                 OR (SELECT count(DISTINCT x) FROM unnest(t.path) x) <> cardinality(t.path)
                 OR EXISTS (SELECT 1 FROM generate_series(1, cardinality(t.path) - 1) i
                             WHERE NOT EXISTS (SELECT 1 FROM fractality.edges e
                                                WHERE e.from_node = t.path[i] AND e.to_node = t.path[i + 1]
                                                  AND e.relationship_type = 'child'))",
        );
        assert_eq!(bad_paths, 0);
    }

    #[pg_test]
    fn graph_traverse_paths_are_ordinary_uuid_arrays() {
        as_alice();
        Spi::run(
            "SELECT fractality.upsert_node(k) FROM unnest(ARRAY['a0', 'a1', 'a2']) k;
             SELECT fractality.link('a0', 'a1'), fractality.link('a1', 'a2');",
        )
        .unwrap();
        // built in one piece natively: the same value, type, bounds and text as SQL's own array
        let wrong = count(
            "WITH ids AS (SELECT node_key, id FROM fractality.nodes WHERE node_key LIKE 'a_'),
                  t AS (SELECT * FROM fractality.traverse((SELECT id FROM ids WHERE node_key = 'a0'), 2))
             SELECT count(*) FROM t
              WHERE t.path IS DISTINCT FROM ARRAY(SELECT id FROM ids WHERE node_key <= t.node_key ORDER BY node_key)
                 OR pg_typeof(t.path) <> 'uuid[]'::regtype
                 OR array_ndims(t.path) <> 1 OR array_lower(t.path, 1) <> 1
                 OR t.path::text <> ARRAY(SELECT id FROM ids WHERE node_key <= t.node_key ORDER BY node_key)::text
                 OR t.path <> t.path::text::uuid[]
                 OR (t.path || t.node_id)[cardinality(t.path) + 1] IS DISTINCT FROM t.node_id",
        );
        assert_eq!(wrong, 0);
    }

    #[pg_test]
    fn graph_traverse_cuts_cycles_and_follows_one_relationship() {
        as_alice();
        Spi::run(
            "SELECT fractality.upsert_node(k) FROM unnest(ARRAY['r', 's', 't', 'u']) k;
             SELECT fractality.link('r', 's', 'child', 0.5), fractality.link('s', 't'),
                    fractality.link('t', 'r'), fractality.link('t', 'u', 'resonates_with');",
        )
        .unwrap();
        let root = "(SELECT id FROM fractality.nodes WHERE node_key = 'r')";
        assert_eq!(
            one::<String>(&format!(
                "SELECT string_agg(node_key || ':' || depth, ' ' ORDER BY depth)
                   FROM fractality.traverse({root}, 50)"
            ))
            .unwrap(),
            "r:0 s:1 t:2"
        );
        assert_eq!(
            one::<String>(&format!(
                "SELECT string_agg(node_key, ' ' ORDER BY depth) FROM fractality.traverse({root}, 5, 'resonates_with')"
            ))
            .unwrap(),
            "r"
        );
        assert_relative_eq!(
            one::<f64>(&format!(
                "SELECT accumulated_weight FROM fractality.traverse({root}) WHERE node_key = 't'"
            ))
            .unwrap(),
            0.5
        );
    }

    #[pg_test]
    fn graph_consciousness_path_is_the_cheapest() {
        random_graph(60, 3);
        // exhaustive: every simple path from g0 up to 8 edges, cost 1 / (atp_a * atp_b) per edge
        let (worse, optimal, reached) = Spi::get_three::<i64, i64, i64>(
            "WITH RECURSIVE walk AS (
                 SELECT n.id, ARRAY[n.id] AS path, 0::float8 AS cost
                   FROM fractality.nodes n WHERE n.node_key = 'g0'
                 UNION ALL
                 SELECT b.id, w.path || b.id, w.cost + 1 / (a.atp * b.atp)
                   FROM walk w JOIN fractality.edges e ON e.from_node = w.id
                   JOIN fractality.nodes a ON a.id = e.from_node
                   JOIN fractality.nodes b ON b.id = e.to_node
                  WHERE cardinality(w.path) <= 8 AND NOT b.id = ANY(w.path)),
             best AS (SELECT id, min(cost) AS cost FROM walk GROUP BY id),
             native AS (SELECT best.id, best.cost AS exhaustive,
                               (SELECT max(p.cost) FROM fractality.consciousness_path(
                                   (SELECT id FROM fractality.nodes WHERE node_key = 'g0'), best.id) p) AS cost
                          FROM best)
             SELECT count(*) FILTER (WHERE cost IS NULL OR cost > exhaustive + 1e-9),
                    count(*) FILTER (WHERE abs(cost - exhaustive) < 1e-9),
                    count(*)
               FROM native",
        )
        .unwrap();
        // never dearer than the best path of up to 8 edges (cheaper only through a longer one)
        assert_eq!(worse, Some(0));
        let (optimal, reached) = (optimal.unwrap(), reached.unwrap());
        assert!(reached > 20, "{reached} nodes reached");
        assert!(optimal * 10 >= reached * 9, "{optimal} of {reached}");
        // the costs grow step by step along the path of most steps: g0 has at most 3 children and
        // more than 20 nodes are reached, so its end is 2 edges away or more
        let path = |to: &str| {
            format!(
                "fractality.consciousness_path((SELECT id FROM fractality.nodes WHERE node_key = 'g0'),
                                               (SELECT id FROM fractality.nodes WHERE node_key = '{to}'))"
            )
        };
        let far = one::<String>(
            "SELECT n.node_key FROM fractality.nodes n WHERE n.node_key LIKE 'g%'
              ORDER BY (SELECT count(*) FROM fractality.consciousness_path(
                           (SELECT id FROM fractality.nodes WHERE node_key = 'g0'), n.id)) DESC,
                       n.node_key
              LIMIT 1",
        )
        .unwrap();
        let (steps, ends) = Spi::get_two::<i64, i64>(&format!(
            "SELECT count(*),
                    count(*) FILTER (WHERE (p.step = 0 AND p.node_id = (SELECT id FROM fractality.nodes WHERE node_key = 'g0'))
                                        OR (p.step = max_step AND p.node_id = (SELECT id FROM fractality.nodes WHERE node_key = '{far}')))
               FROM (SELECT *, max(step) OVER () AS max_step FROM {}) p",
            path(&far)
        ))
        .unwrap();
        let steps = steps.unwrap();
        assert!(steps >= 3, "{steps} steps from g0 to {far}");
        assert_eq!(
            ends,
            Some(2),
            "the path from g0 to {far} starts and ends there"
        );
        let steps_consistent = count(&format!(
            "SELECT count(*) FROM {} p
              WHERE p.step > 0 AND NOT EXISTS (
                 SELECT 1 FROM {} q WHERE q.step = p.step - 1 AND q.cost < p.cost)",
            path(&far),
            path(&far)
        ));
        assert_eq!(steps_consistent, 0);
    }

    #[pg_test]
    fn graph_consciousness_path_edge_cases() {
        as_alice();
        Spi::run(
            "SELECT fractality.upsert_node('x', atp => 0.5), fractality.upsert_node('y', atp => 0.5),
                    fractality.upsert_node('z', atp => 0.0), fractality.upsert_node('w');
             SELECT fractality.link('x', 'y'), fractality.link('x', 'z'), fractality.link('z', 'w');",
        )
        .unwrap();
        let id = |k: &str| format!("(SELECT id FROM fractality.nodes WHERE node_key = '{k}')");
        assert_relative_eq!(
            one::<f64>(&format!(
                "SELECT max(cost) FROM fractality.consciousness_path({}, {})",
                id("x"),
                id("y")
            ))
            .unwrap(),
            4.0
        );
        // no way back (directed), none through a node without energy, none within the budget
        for (a, b, budget) in [("y", "x", "NULL"), ("x", "w", "NULL"), ("x", "y", "3.9")] {
            assert_eq!(
                count(&format!(
                    "SELECT count(*) FROM fractality.consciousness_path({}, {}, {budget})",
                    id(a),
                    id(b)
                )),
                0,
                "{a} -> {b} within {budget}"
            );
        }
        assert_eq!(
            count(&format!(
                "SELECT count(*) FROM fractality.consciousness_path({}, {})",
                id("x"),
                id("x")
            )),
            1
        );
    }

    #[pg_test]
    fn graph_thaw_and_freeze_round_trip() {
        as_alice();
        Spi::run(
            "SELECT fractality.upsert_node('src', 'Source', '{\"description\": \"a thought\"}', 0.6,
                                           array_fill(0.1::real, ARRAY[384])::vector);
             SELECT fractality.upsert_node('dst');
             SELECT fractality.link('src', 'dst', 'child', 0.4);
             INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
             SELECT '2026-01-01'::timestamptz + i * interval '1 minute', n.id, n.user_id, i / 10.0
               FROM fractality.nodes n, generate_series(1, 5) i WHERE n.node_key = 'src';",
        )
        .unwrap();
        let doc = one::<pgrx::JsonB>("SELECT fractality.thaw('src', 3)")
            .unwrap()
            .0;
        assert_eq!(doc["label"], "Source");
        assert_eq!(doc["metadata"]["description"], "a thought");
        assert_relative_eq!(doc["atp"].as_f64().unwrap(), 0.6);
        assert_eq!(doc["embedding"].as_array().unwrap().len(), 384);
        assert_eq!(doc["edges"]["outgoing"][0]["to_key"], "dst");
        assert_eq!(doc["edges"]["incoming"].as_array().unwrap().len(), 0);
        let stream = doc["stream"].as_array().unwrap();
        assert_eq!(stream.len(), 3);
        assert_relative_eq!(stream[0]["atp_level"].as_f64().unwrap(), 0.5);
        // the incoming side of the edge
        let dst = one::<pgrx::JsonB>("SELECT fractality.thaw('dst')")
            .unwrap()
            .0;
        assert_eq!(dst["edges"]["incoming"][0]["from_key"], "src");

        // freeze under another key: a copy with the edges and the points
        Spi::run(
            "SELECT fractality.freeze(fractality.thaw('src') || '{\"node_key\": \"copy\"}'::jsonb)",
        )
        .unwrap();
        let copy = one::<pgrx::JsonB>("SELECT fractality.thaw('copy')")
            .unwrap()
            .0;
        assert_eq!(copy["label"], "Source");
        assert_eq!(copy["embedding"], doc["embedding"]);
        assert_eq!(copy["edges"]["outgoing"][0]["to_key"], "dst");
        assert_eq!(copy["stream"].as_array().unwrap().len(), 5);
        // freezing the same document again adds no points
        Spi::run(
            "SELECT fractality.freeze(fractality.thaw('src') || '{\"node_key\": \"copy\"}'::jsonb)",
        )
        .unwrap();
        assert_eq!(
            count(
                "SELECT count(*) FROM fractality.consciousness_streams s
                   JOIN fractality.nodes n ON n.id = s.node_id WHERE n.node_key = 'copy'"
            ),
            5
        );
        // buffered points from an application land on the node
        Spi::run(
            r#"SELECT fractality.freeze('{"node_key": "src", "atp": 0.9,
                   "stream": [{"time": "2026-02-01T00:00:00Z", "atp_level": 0.9, "attention_score": 0.5}]}')"#,
        )
        .unwrap();
        assert_eq!(
            count(
                "SELECT count(*) FROM fractality.consciousness_streams s
                   JOIN fractality.nodes n ON n.id = s.node_id WHERE n.node_key = 'src'"
            ),
            6
        );
    }

    #[pg_test]
    fn graph_search_nodes_ranks_matches() {
        as_alice();
        Spi::run(
            "SELECT fractality.upsert_node('q1', 'Quantum consciousness', '{\"description\": \"quantum minds and quantum fields\"}');
             SELECT fractality.upsert_node('q2', 'Gardens', '{\"description\": \"a quantum of rain\"}');
             SELECT fractality.upsert_node('q3', 'Rivers', '{\"description\": \"water\"}');",
        )
        .unwrap();
        assert_eq!(
            one::<String>("SELECT string_agg(node_key, ' ' ORDER BY rank DESC) FROM fractality.search_nodes('quantum')")
                .unwrap(),
            "q1 q2"
        );
        assert_eq!(
            count("SELECT count(*) FROM fractality.search_nodes('quantum', 1)"),
            1
        );
        assert_eq!(
            count("SELECT count(*) FROM fractality.search_nodes('quantum -rain')"),
            1
        );
        // another tenant's session does not find Alice's nodes
        Spi::run("SET fractality.user_id = 'bbbbbbbb-0000-4000-8000-00000000000b'").unwrap();
        assert_eq!(
            count("SELECT count(*) FROM fractality.search_nodes('quantum')"),
            0
        );
        // without a tenant, every node the caller may see (the owner: all of them)
        Spi::run("RESET fractality.user_id").unwrap();
        assert_eq!(
            one::<String>("SELECT string_agg(node_key, ' ' ORDER BY rank DESC) FROM fractality.search_nodes('quantum')")
                .unwrap(),
            "q1 q2"
        );
    }

    #[pg_test]
    fn graph_database_health_without_and_with_pg_stat_statements() {
        assert_eq!(
            count(
                "SELECT count(*) FROM fractality.database_health WHERE metric LIKE '%query_time%'"
            ),
            0
        );
        // installed but not preloaded: still no rows, and no error
        Spi::run("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").unwrap();
        assert!(count("SELECT count(*) FROM fractality.database_health") >= 2);
    }

    #[pg_test(error = "node 'nope' does not exist or is not visible")]
    fn graph_link_to_an_unknown_key_is_p0002() {
        as_alice();
        Spi::run("SELECT fractality.upsert_node('p1')").unwrap();
        Spi::run("SELECT fractality.link('p1', 'nope')").unwrap();
    }

    #[pg_test(error = "invalid value for link: 'p1' to itself")]
    fn graph_self_link_is_refused() {
        as_alice();
        Spi::run("SELECT fractality.upsert_node('p1'); SELECT fractality.link('p1', 'p1')")
            .unwrap();
    }

    #[pg_test(error = "invalid value for weight: 1.5")]
    fn graph_weight_outside_the_range_is_refused() {
        as_alice();
        Spi::run("SELECT fractality.upsert_node('p1'), fractality.upsert_node('p2')").unwrap();
        Spi::run("SELECT fractality.link('p1', 'p2', 'child', 1.5)").unwrap();
    }

    #[pg_test(error = "invalid value for weight: NaN")]
    fn graph_nan_weight_is_refused() {
        as_alice();
        Spi::run("SELECT fractality.link('p1', 'p2', 'child', 'NaN')").unwrap();
    }

    #[pg_test(error = "invalid value for atp: NaN")]
    fn graph_nan_atp_is_refused() {
        as_alice();
        Spi::run("SELECT fractality.upsert_node('p1', atp => 'NaN')").unwrap();
    }

    #[pg_test(error = "invalid value for max_depth: -1")]
    fn graph_negative_depth_is_refused() {
        as_alice();
        Spi::run("SELECT fractality.upsert_node('p1')").unwrap();
        Spi::run(
            "SELECT * FROM fractality.traverse((SELECT id FROM fractality.nodes WHERE node_key = 'p1'), -1)",
        )
        .unwrap();
    }

    #[pg_test(error = "invalid value for max_depth: 101")]
    fn graph_excessive_depth_is_refused() {
        as_alice();
        Spi::run("SELECT fractality.upsert_node('p1')").unwrap();
        Spi::run(
            "SELECT * FROM fractality.traverse((SELECT id FROM fractality.nodes WHERE node_key = 'p1'), 101)",
        )
        .unwrap();
    }

    #[pg_test(error = "node 00000000-0000-0000-0000-000000000000 does not exist or is not visible")]
    fn graph_traverse_from_an_unknown_root_is_p0002() {
        Spi::run("SELECT * FROM fractality.traverse('00000000-0000-0000-0000-000000000000')")
            .unwrap();
    }

    #[pg_test(error = "embedding of 3 dimensions for model 'default' of 384 dimensions")]
    fn graph_embedding_of_the_wrong_size_is_refused() {
        as_alice();
        Spi::run("SELECT fractality.upsert_node('p1', embedding => '[1,2,3]')").unwrap();
    }

    #[pg_test(error = "fractality.user_id is not set")]
    fn graph_upsert_without_a_tenant_is_refused() {
        Spi::run("RESET fractality.user_id; SELECT fractality.upsert_node('p1')").unwrap();
    }
}
