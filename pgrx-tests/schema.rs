//! The data model as CREATE EXTENSION installs it: tables, partitions, constraints, triggers,
//! row-level security.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn count(sql: &str) -> i64 {
        Spi::get_one::<i64>(sql)
            .expect("query runs")
            .expect("not null")
    }

    /// Every function, aggregate and trigger function of the schema but the internal helpers
    /// (named with a leading underscore) has a description for `\df+`: pgrx gives the Rust
    /// functions none, and 123 of 137 had none.
    #[pg_test]
    fn every_function_a_user_meets_is_described() {
        let missing = Spi::get_one::<String>(
            "SELECT string_agg(p.oid::regprocedure::text, ', ' ORDER BY p.oid::regprocedure::text)
               FROM pg_proc p
              WHERE p.pronamespace = 'fractality'::regnamespace AND p.proname !~ '^_'
                AND obj_description(p.oid, 'pg_proc') IS NULL",
        )
        .unwrap();
        assert_eq!(missing, None);
        assert!(count("SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'fractality'::regnamespace AND p.proname !~ '^_'") > 80);
    }

    #[pg_test]
    fn schema_has_every_table_of_the_data_model() {
        for table in [
            "nodes",
            "node_embeddings",
            "edges",
            "consciousness_streams",
            "consciousness_archive",
            "consensus_nodes",
            "consensus_links",
            "experience_events",
            "action_metadata",
            "adna_policies",
            "configuration_store",
            "learning_metrics",
            "retention_policies",
        ] {
            let n = count(&format!(
                "SELECT count(*) FROM pg_class WHERE relnamespace = 'fractality'::regnamespace AND relname = '{table}'"
            ));
            assert_eq!(n, 1, "table fractality.{table} is missing");
        }
        for view in [
            "active_consciousness",
            "consciousness_evolution",
            "database_health",
        ] {
            let n = count(&format!(
                "SELECT count(*) FROM pg_views WHERE schemaname = 'fractality' AND viewname = '{view}'"
            ));
            assert_eq!(n, 1, "view fractality.{view} is missing");
        }
    }

    /// Scale-out: every primary and unique key of a table that holds tenants' rows (a user_id
    /// column) includes user_id, the distribution column should the data outgrow one server.
    #[pg_test]
    fn schema_every_key_of_a_tenant_table_includes_user_id() {
        let tenant_tables = count(
            "SELECT count(*) FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
              WHERE c.relnamespace = 'fractality'::regnamespace AND c.relkind IN ('r', 'p')
                AND a.attname = 'user_id' AND NOT a.attisdropped",
        );
        // nodes, node_embeddings and its 16 partitions, edges, the stream partitions and
        // parent, consciousness_archive, consensus_links
        assert!(tenant_tables >= 23, "{tenant_tables} tenant tables");
        let keys_with_user = count(
            "SELECT count(*) FROM pg_index i
               JOIN pg_class c ON c.oid = i.indrelid
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped
              WHERE c.relnamespace = 'fractality'::regnamespace AND i.indisunique
                AND a.attnum = ANY (i.indkey::int2[])",
        );
        assert!(keys_with_user >= 20, "{keys_with_user} keys with user_id");
        let offending: Option<String> = Spi::get_one(
            "SELECT string_agg(c.relname || ': ' || pg_get_indexdef(i.indexrelid), '; ')
               FROM pg_index i
               JOIN pg_class c ON c.oid = i.indrelid
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped
              WHERE c.relnamespace = 'fractality'::regnamespace AND i.indisunique
                AND NOT a.attnum = ANY (i.indkey::int2[])",
        )
        .unwrap();
        assert_eq!(offending, None, "unique keys without user_id");
    }

    #[pg_test]
    fn schema_partitions_current_and_next_month_and_default() {
        // the install script makes only the default partitions (monthly partitions are ordinary
        // tables that pg_dump dumps); maintenance makes the months
        for parent in ["consciousness_streams", "experience_events"] {
            let n = count(&format!(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'fractality.{parent}'::regclass"
            ));
            assert_eq!(n, 1, "{parent}: the default partition alone after install");
        }
        let made = count("SELECT fractality.ensure_partitions(1)::bigint");
        assert_eq!(made, 4, "this month and the next, of both tables");
        for parent in ["consciousness_streams", "experience_events"] {
            let n = count(&format!(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'fractality.{parent}'::regclass"
            ));
            assert_eq!(n, 3, "{parent}: current month, next month and default");
        }
        // a point now lands in this month's partition, not the default
        Spi::run(
            "INSERT INTO fractality.nodes (user_id, node_key) VALUES ('00000000-0000-0000-0000-000000000001', 'p');
             INSERT INTO fractality.consciousness_streams (time, node_id, user_id, atp_level)
             SELECT now(), id, user_id, 0.5 FROM fractality.nodes WHERE node_key = 'p';",
        )
        .unwrap();
        let part = Spi::get_one::<String>(
            "SELECT tableoid::regclass::text FROM fractality.consciousness_streams",
        )
        .unwrap()
        .unwrap();
        assert!(
            part.starts_with("fractality.consciousness_streams_2"),
            "landed in {part}"
        );
        // creating an existing partition again is a no-op
        let created = Spi::get_one::<bool>(
            "SELECT fractality._create_month_partition('fractality.experience_events', (now() AT TIME ZONE 'UTC')::date)",
        )
        .unwrap()
        .unwrap();
        assert!(!created);
    }

    #[pg_test(
        error = "new row for relation \"nodes\" violates check constraint \"nodes_atp_range\""
    )]
    fn schema_refuses_atp_out_of_range() {
        Spi::run(
            "INSERT INTO fractality.nodes (user_id, node_key, atp) VALUES (gen_random_uuid(), 'x', 1.5)",
        )
        .unwrap();
    }

    #[pg_test(
        error = "new row for relation \"nodes\" violates check constraint \"nodes_atp_range\""
    )]
    fn schema_refuses_nan_atp() {
        Spi::run(
            "INSERT INTO fractality.nodes (user_id, node_key, atp) VALUES (gen_random_uuid(), 'x', 'NaN')",
        )
        .unwrap();
    }

    #[pg_test(
        error = "new row for relation \"edges\" violates check constraint \"edges_weight_range\""
    )]
    fn schema_refuses_edge_weight_out_of_range() {
        Spi::run(
            "INSERT INTO fractality.nodes (id, user_id, node_key) VALUES
                ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', 'a'),
                ('00000000-0000-0000-0000-00000000000b', '00000000-0000-0000-0000-000000000001', 'b');
             INSERT INTO fractality.edges (user_id, from_node, to_node, weight)
             VALUES ('00000000-0000-0000-0000-000000000001',
                     '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-00000000000b', -1.5);",
        )
        .unwrap();
    }

    #[pg_test]
    fn schema_edges_stay_within_one_tenant_and_cascade() {
        Spi::run(
            "INSERT INTO fractality.nodes (id, user_id, node_key) VALUES
                ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', 'a'),
                ('00000000-0000-0000-0000-00000000000b', '00000000-0000-0000-0000-000000000001', 'b');
             INSERT INTO fractality.edges (user_id, from_node, to_node, weight)
             VALUES ('00000000-0000-0000-0000-000000000001',
                     '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-00000000000b', 0.5);
             INSERT INTO fractality.node_embeddings (node_id, user_id, embedding)
             SELECT '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001',
                    array_fill(0.1::real, ARRAY[384])::vector;",
        )
        .unwrap();
        assert_eq!(count("SELECT count(*) FROM fractality.edges"), 1);
        Spi::run("DELETE FROM fractality.nodes WHERE node_key = 'a'").unwrap();
        assert_eq!(count("SELECT count(*) FROM fractality.edges"), 0);
        assert_eq!(count("SELECT count(*) FROM fractality.node_embeddings"), 0);
    }

    #[pg_test(
        error = "insert or update on table \"edges\" violates foreign key constraint \"edges_to\""
    )]
    fn schema_refuses_an_edge_into_another_tenant() {
        Spi::run(
            "INSERT INTO fractality.nodes (id, user_id, node_key) VALUES
                ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-000000000001', 'a'),
                ('00000000-0000-0000-0000-00000000000b', '00000000-0000-0000-0000-000000000002', 'b');
             INSERT INTO fractality.edges (user_id, from_node, to_node)
             VALUES ('00000000-0000-0000-0000-000000000001',
                     '00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-00000000000b');",
        )
        .unwrap();
    }

    #[pg_test(
        error = "duplicate key value violates unique constraint \"adna_policies_one_active\""
    )]
    fn schema_allows_one_active_policy_per_state_bin() {
        Spi::run(
            "INSERT INTO fractality.adna_policies (state_bin_id, rule_id, action_weights, version_hash)
             VALUES ('bin', 'r1', '{}', 1), ('bin', 'r2', '{}', 2);",
        )
        .unwrap();
    }

    #[pg_test]
    fn schema_full_text_is_indexed() {
        Spi::run(
            "INSERT INTO fractality.nodes (user_id, node_key, label, metadata)
             VALUES (gen_random_uuid(), 'q', 'Quantum consciousness', '{\"description\": \"entangled minds\"}')",
        )
        .unwrap();
        assert_eq!(
            count("SELECT count(*) FROM fractality.node_text WHERE search @@ to_tsquery('english', 'entangle & quantum')"),
            1
        );
        // the text follows the label and the description, and goes with its node
        Spi::run(
            "UPDATE fractality.nodes SET label = 'Classical', metadata = '{\"description\": \"alone\"}'
              WHERE node_key = 'q'",
        )
        .unwrap();
        assert_eq!(
            count("SELECT count(*) FROM fractality.node_text WHERE search @@ to_tsquery('english', 'entangle | quantum')"),
            0
        );
        assert_eq!(
            count("SELECT count(*) FROM fractality.node_text WHERE search @@ to_tsquery('english', 'classical & alone')"),
            1
        );
        // an energy write leaves the text row as it was (no new row version)
        let before = Spi::get_one::<String>(
            "SELECT t.ctid::text FROM fractality.node_text t JOIN fractality.nodes n ON n.id = t.node_id
              WHERE n.node_key = 'q'",
        )
        .unwrap()
        .unwrap();
        Spi::run("UPDATE fractality.nodes SET atp = 0.5 WHERE node_key = 'q'").unwrap();
        let after = Spi::get_one::<String>(
            "SELECT t.ctid::text FROM fractality.node_text t JOIN fractality.nodes n ON n.id = t.node_id
              WHERE n.node_key = 'q'",
        )
        .unwrap()
        .unwrap();
        assert_eq!(before, after);
        Spi::run("DELETE FROM fractality.nodes WHERE node_key = 'q'").unwrap();
        assert_eq!(count("SELECT count(*) FROM fractality.node_text"), 0);
    }

    #[pg_test]
    fn schema_rls_is_enabled_on_every_tenant_table() {
        let n = count(
            "SELECT count(*) FROM pg_class WHERE relnamespace = 'fractality'::regnamespace
               AND relrowsecurity AND relname IN ('nodes', 'node_text', 'node_embeddings', 'edges',
                 'consciousness_streams', 'consciousness_archive', 'consensus_links')",
        );
        assert_eq!(n, 7);
        // and on every table and partition the catalog says carries a tenant: row-level
        // security enabled with a policy naming the session's tenant (a table added later, or a
        // partition made by maintenance, is covered without being named here)
        Spi::run("SELECT fractality.ensure_partitions(1)").unwrap();
        let carriers = count(
            "SELECT count(*) FROM pg_class c
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped
              WHERE c.relnamespace = 'fractality'::regnamespace AND c.relkind IN ('r', 'p')",
        );
        assert!(
            carriers > 64,
            "node_embeddings' partitions and the rest: {carriers}"
        );
        let unguarded = Spi::get_one::<String>(
            "SELECT string_agg(c.relname, ', ') FROM pg_class c
               JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'user_id' AND NOT a.attisdropped
              WHERE c.relnamespace = 'fractality'::regnamespace AND c.relkind IN ('r', 'p')
                AND NOT (c.relrowsecurity AND EXISTS (
                    SELECT 1 FROM pg_policy p
                     WHERE p.polrelid = c.oid
                       AND pg_get_expr(p.polqual, p.polrelid) LIKE '%current_user_id()%'))",
        )
        .unwrap();
        assert_eq!(unguarded, None, "tables of tenants without their policy");
    }

    #[pg_test]
    fn schema_current_user_id_follows_the_setting() {
        Spi::run("SET LOCAL fractality.user_id = '00000000-0000-0000-0000-0000000000aa'").unwrap();
        let id = Spi::get_one::<String>("SELECT fractality.current_user_id()::text")
            .unwrap()
            .unwrap();
        assert_eq!(id, "00000000-0000-0000-0000-0000000000aa");
        // the setting is also the default tenant of a new row
        Spi::run("INSERT INTO fractality.nodes (node_key) VALUES ('mine')").unwrap();
        assert_eq!(
            count("SELECT count(*) FROM fractality.nodes WHERE user_id = '00000000-0000-0000-0000-0000000000aa'"),
            1
        );
    }
}
