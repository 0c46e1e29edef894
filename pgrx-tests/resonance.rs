//! Resonance and consensus: the score, calculate_resonance and resonance_with against the seed's
//! formula and under row-level security, find_resonant's recall against an exact full scan on
//! clustered data (both paths, a crowded partition, a second model), consensus with 2 vs 3 users
//! and its guard, the consensus tree.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use approx::assert_relative_eq;
    use pgrx::prelude::*;

    fn f64_of(sql: &str) -> Option<f64> {
        Spi::get_one::<f64>(sql).expect("query runs")
    }

    /// `users` tenants x `clusters` clusters x `per` nodes: node `u<u>-c<c>-<i>`, embedding
    /// normalize(centre_c + noise), cosine about 0.8 within a cluster and about 0 across.
    fn clustered(users: i32, clusters: i32, per: i32) {
        Spi::run(&format!(
            "SELECT setseed(0.17);
             CREATE TEMP TABLE centres AS
               SELECT c, array_agg(random() * 2 - 1 ORDER BY d) AS v
                 FROM generate_series(1, {clusters}) c, generate_series(1, 384) d GROUP BY c;
             INSERT INTO fractality.nodes (id, user_id, node_key, label, atp)
             SELECT gen_random_uuid(), ('00000000-0000-0000-0000-' || lpad(u::text, 12, '0'))::uuid,
                    format('u%s-c%s-%s', u, c, i), format('cluster %s', c), 0.2 + 0.8 * random()
               FROM generate_series(1, {users}) u, generate_series(1, {clusters}) c,
                    generate_series(1, {per}) i;
             INSERT INTO fractality.node_embeddings (node_id, user_id, embedding)
             SELECT n.id, n.user_id, fractality.normalize_vector(
                      (SELECT array_agg((ce.v[d] + (random() * 2 - 1) * 0.5)::real ORDER BY d)
                         FROM generate_series(1, 384) d)::vector)
               FROM fractality.nodes n
               JOIN centres ce ON 'c' || ce.c = split_part(n.node_key, '-', 2);"
        ))
        .unwrap();
    }

    fn node_id(key: &str, user: i32) -> String {
        Spi::get_one::<pgrx::Uuid>(&format!(
            "SELECT id FROM fractality.nodes WHERE node_key = '{key}'
                AND user_id = ('00000000-0000-0000-0000-' || lpad('{user}', 12, '0'))::uuid"
        ))
        .unwrap()
        .expect("node exists")
        .to_string()
    }

    #[pg_test]
    fn resonance_score_is_the_weighted_sum() {
        assert_relative_eq!(
            f64_of("SELECT fractality.resonance_score(0.8, 0.5, 0.6, 1.0)").unwrap(),
            0.5 * 0.8 + 0.3 * 0.3 + 0.2
        );
        assert_relative_eq!(
            f64_of("SELECT fractality.resonance_score(0.8, 0.5, 0.6, 1.0, 1, 0, 0)").unwrap(),
            0.8
        );
        assert_eq!(
            f64_of("SELECT fractality.resonance_score(NULL, 0.5, 0.6, 1.0)"),
            None
        );
    }

    #[pg_test(error = "invalid value for atp_b: 1.5")]
    fn resonance_score_refuses_out_of_range() {
        f64_of("SELECT fractality.resonance_score(0.8, 0.5, 1.5, 0)");
    }

    #[pg_test(error = "invalid value for w_edge: NaN")]
    fn resonance_score_refuses_nan_weight() {
        f64_of("SELECT fractality.resonance_score(0.8, 0.5, 0.5, 0, 0.5, 0.3, 'NaN')");
    }

    #[pg_test]
    fn calculate_resonance_matches_the_seed_formula_both_directions() {
        clustered(1, 2, 3);
        let (a, b, c) = (
            node_id("u1-c1-1", 1),
            node_id("u1-c1-2", 1),
            node_id("u1-c2-1", 1),
        );
        Spi::run(&format!(
            "INSERT INTO fractality.edges (user_id, from_node, to_node, weight)
             SELECT user_id, '{b}', '{a}', 0.4 FROM fractality.nodes WHERE id = '{a}'"
        ))
        .unwrap();
        let seed = |x: &str, y: &str, w: f64| {
            f64_of(&format!(
                "SELECT 0.5 * (1 - (ea.embedding <=> eb.embedding)) + 0.3 * a.atp * b.atp + 0.2 * {w}
                   FROM fractality.nodes a JOIN fractality.node_embeddings ea ON ea.node_id = a.id,
                        fractality.nodes b JOIN fractality.node_embeddings eb ON eb.node_id = b.id
                  WHERE a.id = '{x}' AND b.id = '{y}'"
            ))
            .unwrap()
        };
        let native = |x: &str, y: &str| {
            f64_of(&format!(
                "SELECT fractality.calculate_resonance('{x}', '{y}')"
            ))
            .unwrap()
        };
        // the edge b -> a counts for (a, b) and (b, a)
        assert_relative_eq!(native(&a, &b), seed(&a, &b, 0.4), epsilon = 1e-6);
        assert_relative_eq!(native(&b, &a), seed(&a, &b, 0.4), epsilon = 1e-6);
        assert_relative_eq!(native(&a, &c), seed(&a, &c, 0.0), epsilon = 1e-6);
        assert!(native(&a, &b) > native(&a, &c));
        // no embedding: NULL
        Spi::run(&format!(
            "DELETE FROM fractality.node_embeddings WHERE node_id = '{c}'"
        ))
        .unwrap();
        assert_eq!(
            f64_of(&format!(
                "SELECT fractality.calculate_resonance('{a}', '{c}')"
            )),
            None
        );
    }

    /// resonance_with against many nodes reads the source's own edges (two range scans), against
    /// a few, or from a hub, probes an index per node: the edges, and so the scores, are the same
    /// as calculate_resonance's (one node, probed) either way.
    #[pg_test]
    fn resonance_with_many_nodes_reads_the_same_edges_as_a_probe() {
        clustered(1, 2, 20);
        let src = node_id("u1-c1-1", 1);
        // edges both ways, several between one pair (the strongest |weight| counts), some to
        // nodes not asked about
        Spi::run(&format!(
            "INSERT INTO fractality.edges (user_id, from_node, to_node, relationship_type, weight)
             SELECT user_id, '{src}', id, 'a', -0.95 + 0.05 * split_part(node_key, '-', 3)::int
               FROM fractality.nodes WHERE node_key LIKE 'u1-c2-%' AND split_part(node_key, '-', 3)::int % 3 = 0;
             INSERT INTO fractality.edges (user_id, from_node, to_node, relationship_type, weight)
             SELECT user_id, id, '{src}', 'b', 0.05 * split_part(node_key, '-', 3)::int
               FROM fractality.nodes WHERE node_key LIKE 'u1-c%-%' AND split_part(node_key, '-', 3)::int % 4 = 1
                AND id <> '{src}';
             INSERT INTO fractality.edges (user_id, from_node, to_node, relationship_type, weight)
             SELECT user_id, '{src}', id, 'c', 0.95
               FROM fractality.nodes WHERE node_key = 'u1-c2-6';"
        ))
        .unwrap();
        let differing = |filter: &str| -> i64 {
            Spi::get_one::<i64>(&format!(
                "WITH others AS (SELECT array_agg(id ORDER BY node_key) AS ids FROM fractality.nodes
                                  WHERE {filter}),
                      r AS (SELECT r.* FROM others, fractality.resonance_with('{src}', others.ids) r)
                 SELECT count(*) FROM r, LATERAL fractality.resonance_with('{src}', ARRAY[r.node_id]) p
                  WHERE r.edge_weight <> p.edge_weight OR r.resonance IS DISTINCT FROM p.resonance"
            ))
            .unwrap()
            .unwrap()
        };
        let edged = |filter: &str| -> i64 {
            Spi::get_one::<i64>(&format!(
                "SELECT count(*) FROM fractality.resonance_with('{src}',
                        (SELECT array_agg(id) FROM fractality.nodes WHERE {filter})) WHERE edge_weight <> 0"
            ))
            .unwrap()
            .unwrap()
        };
        // 34 others: the source's own edges
        let many =
            "node_key NOT IN ('u1-c1-2', 'u1-c2-3', 'u1-c1-5', 'u1-c2-9', 'u1-c1-13', 'u1-c2-17')";
        assert_eq!(differing(many), 0);
        assert_eq!(edged(many), 9);
        // 8 others: a probe each
        let few = "split_part(node_key, '-', 3)::int <= 4";
        assert_eq!(differing(few), 0);
        // a hub: more edges than 4 per node asked about, so probed after all
        Spi::run(&format!(
            "INSERT INTO fractality.edges (user_id, from_node, to_node, relationship_type, weight)
             SELECT n.user_id, '{src}', n.id, 'hub-' || t, 0.01 * t
               FROM fractality.nodes n, generate_series(1, 5) t WHERE n.id <> '{src}'"
        ))
        .unwrap();
        assert_eq!(differing(many), 0);
        assert_eq!(edged(many), 33);
    }

    #[pg_test(error = "node 00000000-0000-0000-0000-00000000dead does not exist or is not visible")]
    fn calculate_resonance_missing_node_is_p0002() {
        clustered(1, 1, 2);
        let a = node_id("u1-c1-1", 1);
        f64_of(&format!(
            "SELECT fractality.calculate_resonance('{a}', '00000000-0000-0000-0000-00000000dead')"
        ));
    }

    fn res(a: &str, b: &str) -> String {
        Spi::get_one::<String>(&format!("SELECT pg_temp.res('{a}', '{b}')"))
            .unwrap()
            .unwrap()
    }

    /// Every ordered pair of the test's nodes (and a missing id) where calculate_resonance and
    /// the seed's formula written in plain SQL (as the same role) disagree: value (within 1e-6:
    /// pgvector's distance is computed in single precision), NULL, or P0002.
    fn disagreements() -> i64 {
        Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_temp.ids a, pg_temp.ids b
              WHERE NOT pg_temp.same(pg_temp.res(a.id, b.id), pg_temp.plain(a.id, b.id))",
        )
        .unwrap()
        .unwrap()
    }

    #[pg_test]
    fn calculate_resonance_equals_plain_sql_under_row_level_security() {
        clustered(2, 2, 4);
        Spi::run(
            "SELECT setseed(0.42);
             -- edges within each tenant, both directions for some pairs, random weights
             INSERT INTO fractality.edges (user_id, from_node, to_node, relationship_type, weight)
             SELECT a.user_id, a.id, b.id, t, round((random() * 2 - 1)::numeric, 3)
               FROM fractality.nodes a JOIN fractality.nodes b ON a.user_id = b.user_id AND a.id <> b.id,
                    unnest(ARRAY['child', 'echo']) t
              WHERE random() < 0.4;
             DELETE FROM fractality.node_embeddings
              WHERE node_id = (SELECT id FROM fractality.nodes WHERE node_key = 'u1-c2-4');
             CREATE TEMP TABLE ids AS SELECT id FROM fractality.nodes
               UNION ALL SELECT '00000000-0000-0000-0000-00000000dead'::uuid;
             CREATE FUNCTION pg_temp.res(a uuid, b uuid) RETURNS text
             LANGUAGE plpgsql AS $$
             BEGIN
                 RETURN coalesce(fractality.calculate_resonance(a, b)::text, 'null');
             EXCEPTION WHEN OTHERS THEN
                 RETURN 'error ' || SQLSTATE;
             END $$;
             -- the seed's formula over what the role sees: P0002 where either node is hidden
             CREATE FUNCTION pg_temp.plain(a uuid, b uuid) RETURNS text
             LANGUAGE sql AS $$
             SELECT CASE WHEN na.node_id IS NULL OR nb.node_id IS NULL THEN 'error P0002'
                         ELSE coalesce((0.5 * (1 - (ea.embedding <=> eb.embedding)) + 0.3 * na.atp * nb.atp
                                 + 0.2 * coalesce((SELECT w FROM (SELECT e.weight AS w FROM fractality.edges e
                                                                   WHERE (e.from_node, e.to_node) IN ((a, b), (b, a))) x
                                                   ORDER BY abs(w) DESC, w DESC LIMIT 1), 0))::text,
                                       'null') END
               FROM (SELECT) one
               LEFT JOIN fractality.node_energy na ON na.node_id = a
               LEFT JOIN fractality.node_energy nb ON nb.node_id = b
               LEFT JOIN fractality.node_embeddings ea ON ea.node_id = a AND ea.model = 'default'
               LEFT JOIN fractality.node_embeddings eb ON eb.node_id = b AND eb.model = 'default' $$;
             CREATE FUNCTION pg_temp.same(x text, y text) RETURNS boolean
             LANGUAGE sql AS $$
             SELECT CASE WHEN x ~ '^-?[0-9.e-]+$' AND y ~ '^-?[0-9.e-]+$'
                         THEN abs(x::float8 - y::float8) < 1e-6 ELSE x = y END $$;
             CREATE ROLE fractality_test_rls NOLOGIN NOSUPERUSER NOBYPASSRLS;
             GRANT USAGE ON SCHEMA fractality TO fractality_test_rls;
             GRANT SELECT ON fractality.nodes, fractality.node_embeddings, fractality.edges,
                             fractality.embedding_models, fractality.node_energy
                TO fractality_test_rls;
             GRANT SELECT ON pg_temp.ids TO fractality_test_rls;",
        )
        .unwrap();
        let (a1, b1, a2) = (
            node_id("u1-c1-1", 1),
            node_id("u1-c1-2", 1),
            node_id("u2-c1-1", 2),
        );

        // owner / superuser: no policy applies
        assert_eq!(disagreements(), 0);
        assert!(
            res(&a1, &a2).parse::<f64>().is_ok(),
            "the superuser sees both tenants"
        );

        // tenant 1 under row-level security
        Spi::run(
            "SET LOCAL ROLE fractality_test_rls;
             SET LOCAL fractality.user_id = '00000000-0000-0000-0000-000000000001'",
        )
        .unwrap();
        assert_eq!(disagreements(), 0);
        assert!(res(&a1, &b1).parse::<f64>().is_ok());
        assert_eq!(
            res(&a1, &a2),
            "error P0002",
            "tenant 1 cannot read tenant 2's node"
        );
        assert_eq!(res(&a2, &a1), "error P0002");

        // no tenant set: nothing visible
        Spi::run("SET LOCAL fractality.user_id = ''").unwrap();
        assert_eq!(res(&a1, &b1), "error P0002");
        assert_eq!(disagreements(), 0);

        Spi::run("RESET ROLE").unwrap();
    }

    #[pg_test]
    fn resonance_with_is_calculate_resonance_for_a_set() {
        clustered(1, 2, 6);
        let src = node_id("u1-c1-1", 1);
        Spi::run(&format!(
            "INSERT INTO fractality.edges (user_id, from_node, to_node, weight)
             SELECT user_id, '{src}', id, -0.6 FROM fractality.nodes WHERE node_key = 'u1-c2-3';
             DELETE FROM fractality.node_embeddings
              WHERE node_id = (SELECT id FROM fractality.nodes WHERE node_key = 'u1-c1-6');"
        ))
        .unwrap();
        // every node once, one of them twice, in a given order
        let differing = Spi::get_one::<i64>(&format!(
            "WITH others AS (SELECT array_agg(id ORDER BY node_key DESC) || array_agg(id ORDER BY node_key) FILTER (WHERE node_key = 'u1-c2-3') AS ids
                               FROM fractality.nodes),
                  r AS (SELECT row_number() OVER () AS i, r.* FROM others, fractality.resonance_with('{src}', others.ids) r)
             SELECT count(*) FROM r, others
              WHERE r.node_id <> others.ids[r.i]
                 OR r.resonance IS DISTINCT FROM fractality.calculate_resonance('{src}', r.node_id)
                 OR r.edge_weight <> CASE WHEN r.node_id = (SELECT id FROM fractality.nodes WHERE node_key = 'u1-c2-3') THEN -0.6 ELSE 0 END
                 OR r.atp IS DISTINCT FROM (SELECT atp FROM fractality.node_energy WHERE node_id = r.node_id)
                 OR (r.similarity IS NULL) <> (r.node_id = (SELECT id FROM fractality.nodes WHERE node_key = 'u1-c1-6'))"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(differing, 0);
        let rows = Spi::get_one::<i64>(&format!(
            "SELECT count(*) FROM fractality.resonance_with('{src}',
                    (SELECT array_agg(id) FROM fractality.nodes) || '{{}}'::uuid[])"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(rows, 12);
        // the source with itself: similarity 1
        assert_relative_eq!(
            f64_of(&format!(
                "SELECT similarity FROM fractality.resonance_with('{src}', ARRAY['{src}'::uuid])"
            ))
            .unwrap(),
            1.0,
            epsilon = 1e-9
        );
    }

    /// Rows of resonance_with(`src`, `others`) that differ from the node's one-pair call (read
    /// by probes) in order, similarity, energy, edge or resonance; and how many rows there are.
    fn differing_from_pairs(src: &str, others: &str) -> (i64, i64) {
        let row = Spi::get_two::<i64, i64>(&format!(
            "WITH o AS (SELECT {others} AS ids),
                  r AS (SELECT row_number() OVER () AS i, r.* FROM o, fractality.resonance_with('{src}', o.ids) r)
             SELECT count(*) FILTER (
                      WHERE r.node_id <> o.ids[r.i]
                         OR r.similarity IS DISTINCT FROM p.similarity
                         OR r.atp IS DISTINCT FROM p.atp
                         OR r.edge_weight <> p.edge_weight
                         OR r.resonance IS DISTINCT FROM p.resonance),
                    count(*)
               FROM o, r, LATERAL fractality.resonance_with('{src}', ARRAY[r.node_id]) p"
        ))
        .unwrap();
        (row.0.unwrap(), row.1.unwrap())
    }

    /// From 64 others on, where they are most of the source's tenant, resonance_with reads the
    /// tenant's nodes and embeddings in one pass each instead of probing for every node: the same
    /// rows as the probes give, nodes of other tenants (probed) among them, a node without an
    /// embedding, and as the tenant under row-level security: what it may not see is P0002.
    #[pg_test]
    fn resonance_with_most_of_a_tenant_reads_it_whole_with_the_same_rows() {
        clustered(2, 2, 40);
        let src = node_id("u1-c1-1", 1);
        Spi::run(&format!(
            "INSERT INTO fractality.edges (user_id, from_node, to_node, weight)
             SELECT user_id, '{src}', id, 0.3 FROM fractality.nodes
              WHERE user_id = '00000000-0000-0000-0000-000000000001' AND node_key LIKE 'u1-c2-%';
             DELETE FROM fractality.node_embeddings
              WHERE node_id = (SELECT id FROM fractality.nodes WHERE node_key = 'u1-c1-7');
             CREATE ROLE fractality_test_rls NOLOGIN NOSUPERUSER NOBYPASSRLS;
             GRANT USAGE ON SCHEMA fractality TO fractality_test_rls;
             GRANT SELECT ON fractality.nodes, fractality.node_embeddings, fractality.edges,
                             fractality.embedding_models, fractality.node_energy
                TO fractality_test_rls;"
        ))
        .unwrap();
        let tenant = |u: i32, extra: &str| {
            format!(
                "(SELECT array_agg(id ORDER BY node_key DESC) FROM fractality.nodes
                   WHERE user_id = '00000000-0000-0000-0000-00000000000{u}') {extra}"
            )
        };
        // the whole tenant (80 nodes, the source among them), and three of the other tenant's
        let mixed = tenant(
            1,
            "|| (SELECT array_agg(id ORDER BY node_key) FROM (SELECT id, node_key FROM fractality.nodes
                  WHERE user_id = '00000000-0000-0000-0000-000000000002' ORDER BY node_key LIMIT 3) t)",
        );
        assert_eq!(differing_from_pairs(&src, &mixed), (0, 83));
        let nulls = Spi::get_one::<i64>(&format!(
            "SELECT count(*) FROM fractality.resonance_with('{src}', {}) WHERE similarity IS NULL",
            tenant(1, "")
        ))
        .unwrap()
        .unwrap();
        assert_eq!(nulls, 1, "u1-c1-7 has no embedding");
        let edged = Spi::get_one::<i64>(&format!(
            "SELECT count(*) FROM fractality.resonance_with('{src}', {}) WHERE edge_weight = 0.3",
            tenant(1, "")
        ))
        .unwrap()
        .unwrap();
        assert_eq!(edged, 40);

        // as tenant 1: its own nodes as before; one of tenant 2's is not visible
        let hidden = node_id("u2-c1-1", 2);
        Spi::run(&format!(
            "CREATE FUNCTION pg_temp.error_of(others uuid[]) RETURNS text
             LANGUAGE plpgsql AS $$
             BEGIN
                 PERFORM count(*) FROM fractality.resonance_with('{src}', others);
                 RETURN 'none';
             EXCEPTION WHEN OTHERS THEN
                 RETURN SQLSTATE || ' ' || SQLERRM;
             END $$;
             SET LOCAL ROLE fractality_test_rls;
             SET LOCAL fractality.user_id = '00000000-0000-0000-0000-000000000001'"
        ))
        .unwrap();
        assert_eq!(differing_from_pairs(&src, &tenant(1, "")), (0, 80));
        let error = |others: String| {
            Spi::get_one::<String>(&format!("SELECT pg_temp.error_of({others})"))
                .unwrap()
                .unwrap()
        };
        assert_eq!(error(tenant(1, "")), "none");
        assert_eq!(
            error(tenant(1, &format!("|| '{hidden}'::uuid"))),
            format!("P0002 node {hidden} does not exist or is not visible")
        );
        Spi::run("RESET ROLE").unwrap();
    }

    #[pg_test(error = "node 00000000-0000-0000-0000-00000000dead does not exist or is not visible")]
    fn resonance_with_an_unknown_node_is_p0002() {
        clustered(1, 1, 2);
        let a = node_id("u1-c1-1", 1);
        Spi::run(&format!(
            "SELECT * FROM fractality.resonance_with('{a}', ARRAY['{a}', '00000000-0000-0000-0000-00000000dead']::uuid[])"
        ))
        .unwrap();
    }

    #[pg_test(error = "an element of others must not be NULL")]
    fn resonance_with_refuses_null_elements() {
        clustered(1, 1, 2);
        let a = node_id("u1-c1-1", 1);
        Spi::run(&format!(
            "SELECT * FROM fractality.resonance_with('{a}', ARRAY['{a}', NULL]::uuid[])"
        ))
        .unwrap();
    }

    #[pg_test(error = "unknown embedding model 'nomodel'")]
    fn resonance_with_an_unknown_model_is_22023() {
        clustered(1, 1, 2);
        let a = node_id("u1-c1-1", 1);
        Spi::run(&format!(
            "SELECT * FROM fractality.resonance_with('{a}', ARRAY['{a}']::uuid[], 'nomodel')"
        ))
        .unwrap();
    }

    #[pg_test]
    fn find_resonant_recall_against_an_exact_scan() {
        clustered(3, 12, 12);
        Spi::run("ANALYZE fractality.node_embeddings").unwrap();
        // both paths: the exact scan of the tenant (144 embeddings, under the default limit)
        // and the HNSW scan (limit 0)
        for limit in ["2000", "0"] {
            Spi::run(&format!("SET LOCAL fractality.exact_scan_limit = {limit}")).unwrap();
            recall_against_an_exact_scan(limit);
        }
    }

    fn recall_against_an_exact_scan(limit: &str) {
        let mut hits = 0i64;
        let mut wanted = 0i64;
        for (u, c) in [(1, 1), (2, 5), (3, 9), (1, 12)] {
            let src = node_id(&format!("u{u}-c{c}-1"), u);
            let exact = format!(
                "SELECT e.node_id FROM fractality.node_embeddings e, fractality.node_embeddings s
                  WHERE s.node_id = '{src}' AND e.user_id = s.user_id AND e.node_id <> s.node_id
                    AND 1 - (e.embedding <=> s.embedding) >= 0.7"
            );
            wanted += Spi::get_one::<i64>(&format!("SELECT count(*) FROM ({exact}) x"))
                .unwrap()
                .unwrap();
            hits += Spi::get_one::<i64>(&format!(
                "SELECT count(*) FROM fractality.find_resonant('{src}'::uuid, 0.7, 20) r
                  WHERE r.node_id IN ({exact})"
            ))
            .unwrap()
            .unwrap();
            // never the source, never another tenant, never below the threshold, ordered
            let bad = Spi::get_one::<i64>(&format!(
                "SELECT count(*) FROM fractality.find_resonant('{src}'::uuid, 0.7, 20) r
                   JOIN fractality.nodes n ON n.id = r.node_id
                  WHERE r.node_id = '{src}' OR n.user_id <> (SELECT user_id FROM fractality.nodes WHERE id = '{src}')
                     OR r.similarity < 0.7"
            ))
            .unwrap()
            .unwrap();
            assert_eq!(bad, 0);
            let ordered = Spi::get_one::<bool>(&format!(
                "SELECT coalesce(bool_and(resonance <= prev), true) FROM (
                   SELECT resonance, lag(resonance, 1, 2.0) OVER () AS prev
                     FROM fractality.find_resonant('{src}'::uuid)) x"
            ))
            .unwrap()
            .unwrap();
            assert!(ordered);
        }
        assert!(wanted >= 40, "{wanted} exact answers");
        let recall = hits as f64 / wanted as f64;
        assert!(
            recall >= 0.95,
            "recall {recall} with exact_scan_limit {limit}"
        );
        if limit != "0" {
            assert_eq!(hits, wanted, "the exact scan misses nothing");
        }
    }

    /// A tenant id whose node_embeddings partition is tenant 1's (another tenant of the same
    /// HNSW index).
    fn partition_mate() -> String {
        Spi::get_one::<pgrx::Uuid>(
            "WITH p AS (SELECT count(*)::int AS n FROM pg_inherits
                         WHERE inhparent = 'fractality.node_embeddings'::regclass),
                  r AS (SELECT g AS rem FROM p, generate_series(0, p.n - 1) g
                         WHERE satisfies_hash_partition('fractality.node_embeddings'::regclass, p.n, g,
                                                        '00000000-0000-0000-0000-000000000001'::uuid))
             SELECT c.u FROM p, r, (SELECT ('00000000-0000-0000-0000-' || lpad(i::text, 12, '0'))::uuid AS u
                                      FROM generate_series(2, 999) i) c
              WHERE satisfies_hash_partition('fractality.node_embeddings'::regclass, p.n, r.rem, c.u)
              ORDER BY c.u LIMIT 1",
        )
        .unwrap()
        .expect("a tenant of the same partition")
        .to_string()
    }

    #[pg_test]
    fn find_resonant_finds_its_tenant_in_a_crowded_partition() {
        // tenant 1 holds five vectors around a centre, another tenant of the same partition
        // 2 100 much nearer to it: the tenant-filtered index scan skips them all
        let mate = partition_mate();
        Spi::run(&format!(
            "SELECT setseed(0.29);
             CREATE TEMP TABLE centre AS
               SELECT array_agg(random() * 2 - 1 ORDER BY d) AS v FROM generate_series(1, 384) d;
             INSERT INTO fractality.nodes (id, user_id, node_key, label, atp)
             SELECT gen_random_uuid(), t.u, format('crowd-%s', i), 'crowd', 0.5
               FROM (VALUES ('00000000-0000-0000-0000-000000000001'::uuid, 5), ('{mate}'::uuid, 2100)) t(u, n),
                    generate_series(1, t.n) i;
             INSERT INTO fractality.node_embeddings (node_id, user_id, embedding)
             SELECT n.id, n.user_id, fractality.normalize_vector(
                      (SELECT array_agg((c.v[d] + (random() * 2 - 1)
                                 * CASE WHEN n.user_id = '00000000-0000-0000-0000-000000000001'
                                        THEN 0.3 ELSE 0.02 END)::real ORDER BY d)
                         FROM generate_series(1, 384) d)::vector)
               FROM fractality.nodes n, centre c WHERE n.label = 'crowd';"
        ))
        .unwrap();
        assert_eq!(
            Spi::get_one::<i64>(
                "SELECT count(DISTINCT tableoid) FROM fractality.node_embeddings
                  WHERE node_id IN (SELECT id FROM fractality.nodes WHERE label = 'crowd')"
            )
            .unwrap(),
            Some(1),
            "both tenants in one partition"
        );
        // the index path (the tenant is small enough for the exact scan, checked at the end)
        Spi::run("SET LOCAL fractality.exact_scan_limit = 0").unwrap();
        let src = node_id("crowd-1", 1);
        let nearer = Spi::get_one::<i64>(&format!(
            "SELECT count(*) FROM fractality.node_embeddings e, fractality.node_embeddings s
              WHERE s.node_id = '{src}' AND e.user_id <> s.user_id
                AND e.embedding <=> s.embedding < (SELECT min(o.embedding <=> s.embedding)
                                                      FROM fractality.node_embeddings o
                                                     WHERE o.user_id = s.user_id AND o.node_id <> s.node_id)"
        ))
        .unwrap()
        .unwrap();
        assert!(
            nearer >= 2000,
            "{nearer} of the other tenant's nodes come first"
        );
        let found = Spi::get_one::<i64>(&format!(
            "SELECT count(*) FROM fractality.find_resonant('{src}'::uuid, 0.7, 20) r
               JOIN fractality.nodes n ON n.id = r.node_id
              WHERE n.user_id = '00000000-0000-0000-0000-000000000001' AND n.label = 'crowd'"
        ))
        .unwrap()
        .unwrap();
        let total = Spi::get_one::<i64>(&format!(
            "SELECT count(*) FROM fractality.find_resonant('{src}'::uuid, 0.7, 20)"
        ))
        .unwrap()
        .unwrap();
        assert_eq!((found, total), (4, 4));
        Spi::run("RESET fractality.exact_scan_limit").unwrap();
        let exact = Spi::get_one::<i64>(&format!(
            "SELECT count(*) FROM fractality.find_resonant('{src}'::uuid, 0.7, 20)"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(exact, 4);
    }

    // Models side by side (register_model, find_resonant, thaw and freeze per model) are in
    // the pg_regress suite (tests/pg_regress/sql/models.sql): registering a model builds indexes
    // on the shared partitions, DDL that would deadlock the parallel #[pg_test]s.

    /// The SQLSTATE and message a statement fails with ("ok" when it does not); its effects are undone.
    fn failure(sql: &str) -> String {
        Spi::run(
            "CREATE OR REPLACE FUNCTION pg_temp.failure(q text) RETURNS text LANGUAGE plpgsql AS $$
             BEGIN EXECUTE q; RETURN 'ok';
             EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ' ' || SQLERRM; END $$",
        )
        .unwrap();
        Spi::get_one_with_args::<String>("SELECT pg_temp.failure($1)", &[sql.into()])
            .unwrap()
            .unwrap()
    }

    /// A model above 2 000 dimensions is indexed over halfvec: an element beyond its range is
    /// refused when written (22023), by every writer, and a staged row never fails the index later.
    #[pg_test]
    fn halfvec_models_refuse_elements_beyond_its_range() {
        Spi::run(
            "SET LOCAL fractality.user_id = '00000000-0000-0000-0000-000000000002';
             SELECT fractality.register_model('wide', 2001);
             CREATE TEMP TABLE wide_v AS
               SELECT jsonb_agg(CASE WHEN d = 3 THEN 100000 ELSE 0.01 END ORDER BY d) AS bad,
                      jsonb_agg(0.01 ORDER BY d) AS good
                 FROM generate_series(1, 2001) d;",
        )
        .unwrap();
        // (remember_many names the memory of its batch)
        for (sql, place) in [
            ("SELECT count(*) FROM wide_v, fractality.remember_many(jsonb_build_array(jsonb_build_object('content', 'far', 'embedding', bad)), 'wide')", "memory 1: "),
            ("SELECT count(*) FROM wide_v, fractality.remember(NULL, 'far', bad::text::vector, model => 'wide')", ""),
            ("SELECT fractality.upsert_node('far', embedding => bad::text::vector, model => 'wide') FROM wide_v", ""),
        ] {
            assert_eq!(
                failure(sql),
                format!("22023 {place}invalid value for embedding: element 3 is 100000"),
                "{sql}"
            );
        }
        // a query vector is named as the argument it is
        assert_eq!(
            failure("SELECT count(*) FROM wide_v, fractality.recall(bad::text::vector, 5, model => 'wide')"),
            "22023 invalid value for query: element 3 is 100000"
        );
        let held = Spi::get_one::<i64>(
            "SELECT count(*) FROM fractality.node_embeddings WHERE model = 'wide'",
        );
        assert_eq!(held, Ok(Some(0)));
        Spi::run(
            "SELECT count(*) FROM wide_v, fractality.remember_many(jsonb_build_array(jsonb_build_object('content', 'near', 'embedding', good)), 'wide')",
        )
        .unwrap();
        let indexed = Spi::get_one::<i64>("SELECT fractality.index_staged_embeddings()");
        assert_eq!(indexed, Ok(Some(1)));
    }

    /// 'default' keeps the 384 dimensions the install gives it, even while it holds no embedding:
    /// a dump leaves its row out, so a restore would bring it back at 384.
    #[pg_test]
    fn the_default_model_keeps_its_dimension() {
        Spi::run("DELETE FROM fractality.node_embeddings WHERE model = 'default'").unwrap();
        assert_eq!(
            failure("SELECT fractality.register_model('default', 1536)"),
            "22023 model 'default' has 384 dimensions, fixed at install: it cannot change to 1536"
        );
        Spi::run("SELECT fractality.register_model('default', 384)").unwrap();
        let dims = Spi::get_one::<i32>(
            "SELECT dims FROM fractality.embedding_models WHERE model = 'default'",
        );
        assert_eq!(dims, Ok(Some(384)));
    }

    /// An error repeats at most the first 197 characters of a caller's value, and its length: a
    /// message goes to the server's log too, where a caller's whole metadata or a key of
    /// megabytes had been written.
    #[pg_test]
    fn errors_repeat_a_long_value_cut() {
        Spi::run("SET LOCAL fractality.user_id = '00000000-0000-0000-0000-000000000001'").unwrap();
        let key = failure(
            "SELECT * FROM fractality.remember(repeat('K', 20000), 'x', array_fill(0.5, ARRAY[384])::vector)",
        );
        assert_eq!(
            key,
            format!(
                "22023 invalid value for node_key: '{}...' (20000 characters)",
                "K".repeat(197)
            )
        );
        let metadata = failure(
            "SELECT * FROM fractality.remember('k', 'x', array_fill(0.5, ARRAY[384])::vector,
                                               jsonb_build_array('SECRET', repeat('x', 5000)))",
        );
        assert!(
            metadata.starts_with("22023 invalid value for metadata: [\"SECRET\",\"xxx"),
            "{metadata}"
        );
        assert!(metadata.ends_with("... (5013 characters)"), "{metadata}");
        assert!(metadata.len() < 260, "{metadata}");
        // the fields of a batch's element too: a field name and a value of 100 000 characters
        let field = failure(
            "SELECT fractality.write_events(jsonb_build_array(jsonb_build_object(repeat('f', 100000), 1)))",
        );
        assert!(field.len() < 600, "{}", &field[..300]);
        let id = failure(
            "SELECT fractality.write_events(jsonb_build_array(jsonb_build_object('event_id', repeat('a', 100000))))",
        );
        assert!(id.len() < 600, "{}", &id[..300]);
        // a key past 255 characters is a bad value, as it is to every function that takes one
        assert_eq!(
            failure("SELECT * FROM fractality.find_resonant(repeat('k', 300))"),
            format!(
                "22023 invalid value for node_key: '{}...' (300 characters)",
                "k".repeat(197)
            )
        );
        // a key of 250 characters that names no node: P0002, the key cut alike
        assert_eq!(
            failure("SELECT * FROM fractality.find_resonant(repeat('k', 250))"),
            format!(
                "P0002 node '{}...' (250 characters) does not exist or is not visible",
                "k".repeat(197)
            )
        );
        // and the functions written in SQL: each names the argument and cuts the value alike
        let cut = |what: &str, c: char, n: usize| {
            format!(
                "22023 invalid value for {what}: '{}...' ({n} characters)",
                c.to_string().repeat(197)
            )
        };
        for (sql, expected) in [
            (
                "SELECT fractality.save_policy(repeat('s', 300000), 'r', '{\"a\": 1}')",
                cut("state_bin_id", 's', 300000),
            ),
            (
                "SELECT fractality.save_policy('s', repeat('r', 300), '{\"a\": 1}')",
                cut("rule_id", 'r', 300),
            ),
            (
                "SELECT fractality.save_config(repeat('c', 300000), 'k', '1')",
                cut("component", 'c', 300000),
            ),
            (
                "SELECT fractality.save_config('c', repeat('k', 256), '1')",
                cut("key", 'k', 256),
            ),
            (
                "SELECT fractality.register_model(repeat('m', 300000), 8)",
                cut("model", 'm', 300000),
            ),
            (
                "SELECT fractality.add_retention_policy('fractality.experience_events', '30 days', repeat('a', 300000))",
                cut("action", 'a', 300000),
            ),
            (
                "SELECT fractality.drop_model_index(repeat('m', 300000))",
                format!(
                    "22023 unknown embedding model '{}...' (300000 characters)",
                    "m".repeat(197)
                ),
            ),
            (
                "SELECT fractality.save_policy('s', 'r', jsonb_build_object(repeat('k', 100000), 'x'))",
                format!(
                    "22023 invalid value for action_weights: key '{}...' (100000 characters) is not a number",
                    "k".repeat(197)
                ),
            ),
        ] {
            assert_eq!(failure(sql), expected, "{sql}");
        }
        for sql in [
            "SELECT fractality.save_policy('s', 'r', ('[' || repeat('1,', 100000) || '1]')::jsonb)",
            "SELECT fractality.save_policy('s', 'r', '{\"a\": 1}', ('[' || repeat('1,', 100000) || '1]')::jsonb)",
        ] {
            let e = failure(sql);
            assert!(e.starts_with("22023 invalid value for "), "{e:.300}");
            assert!(e.ends_with(" characters)") && e.contains("... ("), "{e:.300}");
            assert!(e.len() < 300, "{e:.300}");
        }
    }

    /// A key names a node of the session's tenant: without one, `find_resonant` by key is 22004,
    /// as every call by key is; by id it reads what the caller sees (the owner: every tenant).
    #[pg_test]
    fn find_resonant_by_key_needs_a_tenant() {
        Spi::run(
            "SET LOCAL fractality.user_id = '00000000-0000-0000-0000-000000000001';
             SELECT fractality.upsert_node('held', embedding => array_fill(0.5, ARRAY[384])::vector);
             SET LOCAL fractality.user_id = '';",
        )
        .unwrap();
        assert_eq!(
            failure("SELECT count(*) FROM fractality.find_resonant('held')"),
            "22004 fractality.user_id is not set"
        );
        let by_id = Spi::get_one::<i64>(
            "SELECT count(*) FROM fractality.nodes n, fractality.find_resonant(n.id) r WHERE n.node_key = 'held'",
        );
        assert_eq!(by_id, Ok(Some(0)));
    }

    #[pg_test]
    fn models_refuse_bad_input_and_write_nothing() {
        Spi::run(
            "SET LOCAL fractality.user_id = '00000000-0000-0000-0000-000000000001';
             SELECT fractality.upsert_node('held', embedding => array_fill(0.5, ARRAY[384])::vector);",
        )
        .unwrap();
        let before = Spi::get_one::<i64>(
            "SELECT (SELECT count(*) FROM fractality.nodes) * 1000 + (SELECT count(*) FROM fractality.node_embeddings)
                    + (SELECT count(*) FROM fractality.embedding_models) * 1000000",
        )
        .unwrap()
        .unwrap();
        for (sql, expected) in [
            ("SELECT fractality.register_model('default', 9)", "22023 model 'default' has 384 dimensions and holds embeddings: it cannot change to 9"),
            ("SELECT fractality.register_model('Bad-Name', 9)", "22023 invalid value for model: 'Bad-Name'"),
            // the name of another model's index on partition p00
            ("SELECT fractality.register_model('p00_x', 9)", "22023 invalid value for model: 'p00_x'"),
            ("SELECT fractality.register_model('big', 4001)", "22023 invalid value for dims: 4001"),
            ("SELECT fractality.register_model('small', 0)", "22023 invalid value for dims: 0"),
            ("SELECT fractality.register_model(NULL, 3)", "22004 register_model: model must not be NULL"),
            ("SELECT fractality.upsert_node('x', embedding => '[1,2,3]')",
             "22000 embedding of 3 dimensions for model 'default' of 384 dimensions"),
            ("SELECT fractality.upsert_node('x', embedding => '[1,2,3]', model => 'nomodel')",
             "22023 unknown embedding model 'nomodel'"),
            ("SELECT fractality.upsert_node('x', embedding => '[1,2,3]', model => 'no model')",
             "22023 invalid value for model: 'no model'"),
            ("INSERT INTO fractality.node_embeddings (node_id, user_id, model, embedding)
              SELECT id, user_id, 'default', '[1,2]' FROM fractality.nodes WHERE node_key = 'held'",
             "22000 embedding of 2 dimensions for model 'default' of 384 dimensions"),
            ("INSERT INTO fractality.node_embeddings (node_id, user_id, model, embedding)
              SELECT id, user_id, 'nomodel', '[1,2]' FROM fractality.nodes WHERE node_key = 'held'",
             "22023 unknown embedding model 'nomodel'"),
            ("SELECT * FROM fractality.find_resonant('held', 0.5, 5, 'nomodel')",
             "22023 unknown embedding model 'nomodel'"),
            ("SELECT * FROM fractality.find_resonant('held', 0.5, 5, 'Default')",
             "22023 invalid value for model: 'Default'"),
            ("SELECT fractality.thaw('held', 1, 'x y')", "22023 invalid value for model: 'x y'"),
            ("SELECT fractality.thaw('held', 1, 'nomodel')", "22023 unknown embedding model 'nomodel'"),
            ("SELECT fractality.calculate_resonance(id, id, 'nomodel') FROM fractality.nodes WHERE node_key = 'held'",
             "22023 unknown embedding model 'nomodel'"),
            ("SELECT count(*) FROM fractality.nodes n, fractality.find_resonant(n.id, 0.5, 5, 'nomodel') WHERE n.node_key = 'held'",
             "22023 unknown embedding model 'nomodel'"),
        ] {
            assert_eq!(failure(sql), expected, "{sql}");
        }
        let after = Spi::get_one::<i64>(
            "SELECT (SELECT count(*) FROM fractality.nodes) * 1000 + (SELECT count(*) FROM fractality.node_embeddings)
                    + (SELECT count(*) FROM fractality.embedding_models) * 1000000",
        )
        .unwrap()
        .unwrap();
        assert_eq!(before, after, "a failing call writes nothing");
    }

    #[pg_test]
    fn find_resonant_k_limits_and_scores_match_calculate_resonance() {
        clustered(1, 2, 8);
        let src = node_id("u1-c1-1", 1);
        let n = Spi::get_one::<i64>(&format!(
            "SELECT count(*) FROM fractality.find_resonant('{src}'::uuid, 0.7, 3)"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(n, 3);
        let diff = f64_of(&format!(
            "SELECT max(abs(r.resonance - fractality.calculate_resonance('{src}', r.node_id)))
               FROM fractality.find_resonant('{src}'::uuid, 0.5, 20) r"
        ))
        .unwrap();
        assert!(
            diff < 1e-6,
            "find_resonant and calculate_resonance differ by {diff}"
        );
    }

    #[pg_test(error = "invalid value for k: 0")]
    fn find_resonant_refuses_k_zero() {
        Spi::run("SELECT * FROM fractality.find_resonant(gen_random_uuid(), 0.7, 0)").unwrap();
    }

    #[pg_test(error = "invalid value for threshold: NaN")]
    fn find_resonant_refuses_nan_threshold() {
        Spi::run("SELECT * FROM fractality.find_resonant('x', 'NaN', 5)").unwrap();
    }

    #[pg_test]
    fn consensus_needs_three_users_and_is_idempotent() {
        clustered(2, 2, 3);
        let src = node_id("u1-c1-1", 1);
        let none = Spi::get_one::<pgrx::Uuid>(&format!(
            "SELECT fractality.crystallize_consensus('{src}')"
        ))
        .unwrap();
        assert_eq!(none, None, "two users are not a consensus");
        let written = Spi::get_one::<i64>("SELECT count(*) FROM fractality.consensus_nodes")
            .unwrap()
            .unwrap();
        assert_eq!(written, 0);
        // a third user's node on the same theme
        Spi::run(&format!(
            "INSERT INTO fractality.nodes (id, user_id, node_key, label)
             VALUES ('00000000-0000-0000-0000-0000000000c3', '00000000-0000-0000-0000-000000000003', 'u3-c1-1', 'cluster 1');
             INSERT INTO fractality.node_embeddings (node_id, user_id, embedding)
             SELECT '00000000-0000-0000-0000-0000000000c3', '00000000-0000-0000-0000-000000000003', embedding
               FROM fractality.node_embeddings WHERE node_id = '{src}'"
        ))
        .unwrap();
        let first = Spi::get_one::<pgrx::Uuid>(&format!(
            "SELECT fractality.crystallize_consensus('{src}')"
        ))
        .unwrap()
        .expect("three users form a consensus");
        let second = Spi::get_one::<pgrx::Uuid>(&format!(
            "SELECT fractality.crystallize_consensus('{src}')"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(first, second);
        let (count, links, label) = Spi::get_three::<i32, i64, String>(
            "SELECT c.contributor_count,
                    (SELECT count(*) FROM fractality.consensus_links l WHERE l.consensus_id = c.id),
                    c.label
               FROM fractality.consensus_nodes c",
        )
        .unwrap();
        assert_eq!(count, Some(3));
        assert_eq!(
            links,
            Some(7),
            "3 + 3 cluster-1 nodes of two users and the third user's"
        );
        // no tenant's label is published, though every node carries the same one
        assert_eq!(label, None);
        let score = f64_of("SELECT resonance_score FROM fractality.consensus_nodes").unwrap();
        assert!((0.7..=1.0).contains(&score), "group resonance {score}");
        assert_relative_eq!(score * 10.0, (score * 10.0).round(), epsilon = 1e-9);
        let n = Spi::get_one::<i64>("SELECT count(*) FROM fractality.consensus_nodes")
            .unwrap()
            .unwrap();
        assert_eq!(n, 1);
        // the centroid is kept apart, for the owner
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM fractality.consensus_centroids").unwrap(),
            Some(1)
        );
        // the part that sees across tenants acts only for the node's own embedding
        assert!(failure(&format!(
            "SELECT fractality._crystallize_consensus('{src}', array_fill(0.1, ARRAY[384])::vector, 0.7, 3, 'default')"
        ))
        .starts_with("P0002 node "));
        // two contributors are never enough
        assert!(failure(&format!(
            "SELECT fractality.crystallize_consensus('{src}', 0.7, 2)"
        ))
        .starts_with("22023 invalid value for min_contributors: 2"));
        // a min_contributors of 4 is not met
        assert_eq!(
            Spi::get_one::<pgrx::Uuid>(&format!(
                "SELECT fractality.crystallize_consensus('{src}', 0.7, 4)"
            ))
            .unwrap(),
            None
        );
    }

    /// Two groups that share a member keep a consensus each (the second took the first over and
    /// unlinked its members, and the first took it back in turn), and a consensus whose group no
    /// longer holds enough users goes at its next crystallisation (it kept its count and went on
    /// being published).
    #[pg_test]
    fn consensus_per_group_and_not_beyond_it() {
        Spi::run(
            "SELECT fractality.register_model('m2', 2);
             INSERT INTO fractality.nodes (id, user_id, node_key, label)
             SELECT ('00000000-0000-0000-0000-0000000000a' || g)::uuid,
                    ('00000000-0000-0000-0000-00000000000' || g)::uuid, 'g' || g, 'g' || g
               FROM generate_series(1, 5) g;
             INSERT INTO fractality.node_embeddings (node_id, user_id, model, embedding)
             SELECT ('00000000-0000-0000-0000-0000000000a' || g)::uuid,
                    ('00000000-0000-0000-0000-00000000000' || g)::uuid, 'm2',
                    ARRAY[cos(radians(d)), sin(radians(d))]::real[]::vector
               FROM unnest(ARRAY[1, 2, 3, 4, 5], ARRAY[0, 5, 30, 55, 60]) AS x (g, d);",
        )
        .unwrap();
        // within 0.85 (31.8 degrees): g1 holds g1, g2, g3; g5 holds g3, g4, g5
        let crystallize = |g: i32| {
            Spi::get_one::<pgrx::Uuid>(&format!(
                "SELECT fractality.crystallize_consensus('00000000-0000-0000-0000-0000000000a{g}', 0.85, 3, 'm2')"
            ))
            .unwrap()
        };
        let links = |c: pgrx::Uuid| {
            Spi::get_one::<String>(&format!(
                "SELECT string_agg(n.node_key, ' ' ORDER BY n.node_key) FROM fractality.consensus_links l
                   JOIN fractality.nodes n ON n.id = l.node_id AND n.user_id = l.user_id
                  WHERE l.consensus_id = '{c}'"
            ))
            .unwrap()
        };
        let first = crystallize(1).expect("three users");
        let second = crystallize(5).expect("three users");
        assert_ne!(first, second, "a group of its own");
        assert_eq!(links(first).as_deref(), Some("g1 g2 g3"));
        assert_eq!(links(second).as_deref(), Some("g3 g4 g5"));
        assert_eq!(crystallize(1), Some(first));
        assert_eq!(links(second).as_deref(), Some("g3 g4 g5"));
        // g2 forgotten: g1's group is two users
        Spi::run("DELETE FROM fractality.nodes WHERE node_key = 'g2'").unwrap();
        assert_eq!(crystallize(1), None);
        assert_eq!(
            Spi::get_one::<i64>(&format!(
                "SELECT count(*) FROM fractality.consensus_nodes WHERE id = '{first}'"
            ))
            .unwrap(),
            Some(0),
            "the consensus went with its group"
        );
        assert_eq!(
            Spi::get_one::<i64>(&format!(
                "SELECT count(*) FROM fractality.consensus_centroids WHERE consensus_id = '{first}'"
            ))
            .unwrap(),
            Some(0)
        );
        assert_eq!(
            links(second).as_deref(),
            Some("g3 g4 g5"),
            "the other stays"
        );
        assert_eq!(crystallize(5), Some(second));
        // g3 and g4 move away (their embeddings rewritten, their links left): g5 alone
        Spi::run(
            "UPDATE fractality.node_embeddings SET embedding = '[-1,0]'
              WHERE model = 'm2' AND node_id IN ('00000000-0000-0000-0000-0000000000a3',
                                                 '00000000-0000-0000-0000-0000000000a4')",
        )
        .unwrap();
        assert_eq!(crystallize(5), None);
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM fractality.consensus_nodes").unwrap(),
            Some(0),
            "the consensus its seed alone still held went too"
        );
    }

    /// An expired memory (its `expires_at` passed, run_maintenance's to delete) holds no idea: it
    /// is not a neighbour `find_resonant` returns, a member a consensus counts, or a seed.
    #[pg_test]
    fn expired_memories_neither_resonate_nor_count_in_a_consensus() {
        clustered(3, 1, 3);
        let src = node_id("u1-c1-1", 1);
        let found = |sql: &str| Spi::get_one::<i64>(sql).unwrap().unwrap();
        let resonant = format!(
            "SELECT string_agg(node_key, ' ' ORDER BY node_key)
               FROM fractality.find_resonant('{src}'::uuid, 0.5, 20)"
        );
        let keys = |sql: &str| Spi::get_one::<String>(sql).unwrap();
        assert_eq!(keys(&resonant).as_deref(), Some("u1-c1-2 u1-c1-3"));
        // one of the source's tenant's and all of user 3's expire
        Spi::run(
            "UPDATE fractality.nodes SET expires_at = now() - interval '1 second'
              WHERE node_key IN ('u1-c1-2', 'u3-c1-1', 'u3-c1-2', 'u3-c1-3')",
        )
        .unwrap();
        assert_eq!(
            keys(&resonant).as_deref(),
            Some("u1-c1-3"),
            "the live one only"
        );
        // and with the exact path off, through the tenant's partition's index
        Spi::run("SET LOCAL fractality.exact_scan_limit = 0").unwrap();
        assert_eq!(keys(&resonant).as_deref(), Some("u1-c1-3"));
        Spi::run("RESET fractality.exact_scan_limit").unwrap();
        // two users hold the idea now: no consensus, nothing written
        let consensus = format!("SELECT fractality.crystallize_consensus('{src}', 0.5, 3)");
        assert_eq!(Spi::get_one::<pgrx::Uuid>(&consensus).unwrap(), None);
        assert_eq!(found("SELECT count(*) FROM fractality.consensus_nodes"), 0);
        // user 3's first node lives again: three users, linked without the expired ones
        Spi::run(
            "UPDATE fractality.nodes SET expires_at = now() + interval '1 hour'
              WHERE node_key = 'u3-c1-1'",
        )
        .unwrap();
        let id = Spi::get_one::<pgrx::Uuid>(&consensus)
            .unwrap()
            .expect("three users again");
        assert_eq!(
            keys(&format!(
                "SELECT string_agg(n.node_key, ' ' ORDER BY n.node_key) FROM fractality.consensus_links l
                   JOIN fractality.nodes n ON n.id = l.node_id AND n.user_id = l.user_id
                  WHERE l.consensus_id = '{id}'"
            ))
            .as_deref(),
            Some("u1-c1-1 u1-c1-3 u2-c1-1 u2-c1-2 u2-c1-3 u3-c1-1"),
            "no expired member linked"
        );
        // an expired seed crystallises nothing
        Spi::run(&format!(
            "UPDATE fractality.nodes SET expires_at = now() - interval '1 second' WHERE id = '{src}'"
        ))
        .unwrap();
        assert_eq!(Spi::get_one::<pgrx::Uuid>(&consensus).unwrap(), None);
    }

    /// An id is unique within a tenant only: a third user's node that has the seed's id (an
    /// agent's memory copied into another tenant with its ids) is a member of its own, counted
    /// and linked as such.
    #[pg_test]
    fn consensus_counts_another_tenants_node_of_the_same_id() {
        clustered(2, 2, 3);
        let src = node_id("u1-c1-1", 1);
        Spi::run(&format!(
            "INSERT INTO fractality.nodes (id, user_id, node_key, label)
             VALUES ('{src}', '00000000-0000-0000-0000-000000000003', 'u3-c1-1', 'cluster 1');
             INSERT INTO fractality.node_embeddings (node_id, user_id, embedding)
             SELECT '{src}', '00000000-0000-0000-0000-000000000003', embedding
               FROM fractality.node_embeddings WHERE node_id = '{src}'"
        ))
        .unwrap();
        Spi::run("SET LOCAL fractality.user_id = '00000000-0000-0000-0000-000000000001'").unwrap();
        for _ in 0..2 {
            Spi::get_one::<pgrx::Uuid>(&format!(
                "SELECT fractality.crystallize_consensus('{src}')"
            ))
            .unwrap()
            .expect("the third user's node makes three users");
            let (count, links, of_src) = Spi::get_three::<i32, i64, i64>(&format!(
                "SELECT c.contributor_count,
                        (SELECT count(*) FROM fractality.consensus_links l WHERE l.consensus_id = c.id),
                        (SELECT count(*) FROM fractality.consensus_links l
                          WHERE l.consensus_id = c.id AND l.node_id = '{src}')
                   FROM fractality.consensus_nodes c"
            ))
            .unwrap();
            assert_eq!(count, Some(3));
            assert_eq!(links, Some(7), "the two users' 6 and the third user's");
            assert_eq!(
                of_src,
                Some(2),
                "the seed and the third user's node of its id"
            );
        }
        // a fourth user on the theme, then the third user's node gone: the consensus stays (three
        // users), the third user's link goes and the seed's stays (links were dropped by id
        // alone, so the third user's, of the seed's id, stayed)
        Spi::run(&format!(
            "INSERT INTO fractality.nodes (id, user_id, node_key, label)
             VALUES ('00000000-0000-0000-0000-0000000000c4', '00000000-0000-0000-0000-000000000004', 'u4-c1-1', 'cluster 1');
             INSERT INTO fractality.node_embeddings (node_id, user_id, embedding)
             SELECT '00000000-0000-0000-0000-0000000000c4', '00000000-0000-0000-0000-000000000004', embedding
               FROM fractality.node_embeddings WHERE node_id = '{src}'
                AND user_id = '00000000-0000-0000-0000-000000000001';
             DELETE FROM fractality.node_embeddings
              WHERE node_id = '{src}' AND user_id = '00000000-0000-0000-0000-000000000003'"
        ))
        .unwrap();
        Spi::get_one::<pgrx::Uuid>(&format!("SELECT fractality.crystallize_consensus('{src}')"))
            .unwrap()
            .expect("users 1, 2 and 4");
        let (links, of_src_users) = Spi::get_two::<i64, String>(&format!(
            "SELECT (SELECT count(*) FROM fractality.consensus_links),
                    (SELECT string_agg(right(user_id::text, 1), ',' ORDER BY user_id)
                       FROM fractality.consensus_links WHERE node_id = '{src}')"
        ))
        .unwrap();
        assert_eq!(links, Some(7), "the two users' 6 and the fourth user's");
        assert_eq!(of_src_users.as_deref(), Some("1"), "the seed's link alone");
    }

    /// Members that cancel out (threshold -1 takes nodes on every side) share no direction: no
    /// consensus and nothing written, where the centroid's normalisation raised 22023.
    #[pg_test]
    fn consensus_of_members_that_cancel_out_is_none() {
        Spi::run(
            "INSERT INTO fractality.nodes (id, user_id, node_key)
             SELECT ('00000000-0000-0000-0000-0000000000e' || u)::uuid,
                    ('00000000-0000-0000-0000-00000000000' || u)::uuid, 'axis'
               FROM generate_series(1, 4) u;
             INSERT INTO fractality.node_embeddings (node_id, user_id, embedding)
             SELECT ('00000000-0000-0000-0000-0000000000e' || u)::uuid,
                    ('00000000-0000-0000-0000-00000000000' || u)::uuid,
                    (SELECT array_agg(CASE WHEN d = (u + 1) / 2 THEN (CASE WHEN u % 2 = 1 THEN 1 ELSE -1 END)
                                           ELSE 0 END ORDER BY d)
                       FROM generate_series(1, 384) d)::real[]::vector
               FROM generate_series(1, 4) u;",
        )
        .unwrap();
        assert_eq!(
            Spi::get_one::<pgrx::Uuid>(
                "SELECT fractality.crystallize_consensus('00000000-0000-0000-0000-0000000000e1', -1, 3)"
            )
            .unwrap(),
            None
        );
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM fractality.consensus_nodes").unwrap(),
            Some(0)
        );
    }

    #[pg_test]
    fn consensus_through_the_indexes_counts_staged_members() {
        clustered(2, 2, 3);
        let src = node_id("u1-c1-1", 1);
        // the partitions' HNSW indexes, not every distance; the third user's node on the same
        // theme staged, as remember_many writes it (outside the indexes)
        Spi::run(&format!(
            "SET LOCAL fractality.consensus_exact_limit = 0;
             INSERT INTO fractality.nodes (id, user_id, node_key, label)
             VALUES ('00000000-0000-0000-0000-0000000000c3', '00000000-0000-0000-0000-000000000003', 'u3-c1-1', 'cluster 1');
             INSERT INTO fractality.node_embeddings (node_id, user_id, embedding, staged)
             SELECT '00000000-0000-0000-0000-0000000000c3', '00000000-0000-0000-0000-000000000003', embedding, true
               FROM fractality.node_embeddings WHERE node_id = '{src}'"
        ))
        .unwrap();
        let contributors = || {
            Spi::get_one::<i32>("SELECT contributor_count FROM fractality.consensus_nodes").unwrap()
        };
        let first = Spi::get_one::<pgrx::Uuid>(&format!(
            "SELECT fractality.crystallize_consensus('{src}')"
        ))
        .unwrap()
        .expect("the staged node is the third user");
        assert_eq!(contributors(), Some(3));
        // indexed, the same consensus
        assert_eq!(
            Spi::get_one::<i64>("SELECT fractality.index_staged_embeddings()").unwrap(),
            Some(1)
        );
        let second = Spi::get_one::<pgrx::Uuid>(&format!(
            "SELECT fractality.crystallize_consensus('{src}')"
        ))
        .unwrap();
        assert_eq!(second, Some(first));
        assert_eq!(contributors(), Some(3));
    }

    #[pg_test]
    fn consensus_tree_decays_and_cuts_cycles() {
        clustered(3, 1, 2);
        let a = node_id("u1-c1-1", 1);
        let b = node_id("u1-c1-2", 1);
        Spi::run(&format!(
            "INSERT INTO fractality.edges (user_id, from_node, to_node)
             SELECT user_id, '{a}', '{b}' FROM fractality.nodes WHERE id = '{a}';
             INSERT INTO fractality.edges (user_id, from_node, to_node)
             SELECT user_id, '{b}', '{a}' FROM fractality.nodes WHERE id = '{a}';
             SELECT fractality.crystallize_consensus('{a}', 0.5, 3);"
        ))
        .unwrap();
        let (rows, max_depth) = Spi::get_two::<i64, i32>(
            "SELECT count(*), max(depth) FROM fractality.consensus_tree(0.5, 5)",
        )
        .unwrap();
        // the consensus node, its 6 nodes, and one step along the a <-> b cycle from each of a, b
        assert_eq!(rows, Some(1 + 6 + 2));
        assert_eq!(max_depth, Some(2));
        let ratio = f64_of(
            "SELECT min(resonance_score) / max(resonance_score) FROM fractality.consensus_tree(0.5, 5)",
        )
        .unwrap();
        assert_relative_eq!(ratio, 0.81, epsilon = 1e-9);
        assert_eq!(
            Spi::get_one::<i64>("SELECT count(*) FROM fractality.consensus_tree(0.99, 5)").unwrap(),
            Some(0)
        );
    }
}
