-- CREATE EXTENSION installs pgvector and btree_gin too (requires = 'vector, btree_gin') and everything
-- in schema fractality.
CREATE EXTENSION fractality CASCADE;
-- monthly partitions are made by maintenance (run_maintenance, or ensure_partitions), never by
-- the install script: this month's and the next
SELECT fractality.ensure_partitions(1) AS partitions_made;
SELECT extname, extnamespace::regnamespace AS schema, extrelocatable
  FROM pg_extension WHERE extname IN ('fractality', 'vector') ORDER BY extname;
-- the suite's helper (the later files use it): each statement run on its own, in its own
-- subtransaction, and what it did reported: its error's SQLSTATE and message, or 'no error'
CREATE SCHEMA regress;
GRANT USAGE ON SCHEMA regress TO PUBLIC;
CREATE FUNCTION regress.each_error(statements text[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE q text;
BEGIN
    FOREACH q IN ARRAY statements LOOP
        BEGIN
            EXECUTE q;
            RAISE NOTICE 'no error: %', q;
        EXCEPTION WHEN OTHERS THEN
            RAISE NOTICE 'SQLSTATE % : %', SQLSTATE, SQLERRM;
        END;
    END LOOP;
END $$;
