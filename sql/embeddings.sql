-- fractality: embeddings
-- The embedding models an installation knows (name and dimension) and one embedding per node and
-- model in node_embeddings, hash-partitioned by tenant, with one HNSW index per partition and
-- model. Kept apart from nodes so that energy updates never touch a vector index.
--
-- Vectors of different dimensions share the column `embedding vector`; each model's HNSW index
-- is pgvector's recipe for that: an expression index on the embedding cast to the model's
-- dimension, restricted to the model's rows
--     CREATE INDEX ... USING hnsw ((embedding::vector(384)) vector_cosine_ops) WHERE model = 'default'
-- and a query reaches it by ordering by the same expression with the same WHERE. Models of more
-- than 2 000 dimensions (pgvector's HNSW limit for vector) are indexed as halfvec (up to 4 000):
--     ((embedding::halfvec(3072)) halfvec_cosine_ops)
-- the stored vectors keep full precision; only the index order is computed in half precision.

-- created_at is NULL for 'default' alone: its row comes with the extension (a dump leaves it out,
-- and a restore's CREATE EXTENSION makes it again), so it has no time of registration to keep.
CREATE TABLE fractality.embedding_models (
    model      text        NOT NULL,
    dims       integer     NOT NULL,
    created_at timestamptz DEFAULT now(),
    CONSTRAINT embedding_models_pkey PRIMARY KEY (model),
    CONSTRAINT embedding_models_name CHECK (model ~ '^[a-z][a-z0-9_]{0,31}$'),
    CONSTRAINT embedding_models_dims CHECK (dims BETWEEN 1 AND 4000),
    CONSTRAINT embedding_models_created CHECK ((created_at IS NULL) = (model = 'default'))
);

COMMENT ON TABLE fractality.embedding_models IS
    'Embedding models: name, dimension and when register_model registered it (NULL for ''default'', which comes with the extension). A model is fixed once it holds embeddings.';

-- The element type of a model's index: vector up to 2 000 dimensions, halfvec above.
CREATE FUNCTION fractality.model_index_type(dims integer) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF dims < 1 OR dims > 4000 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for dims: %s', dims),
            HINT = 'A model has 1 to 4 000 dimensions (vector up to 2 000, halfvec above), as register_model takes them.';
    END IF;
    RETURN CASE WHEN dims <= 2000 THEN 'vector' ELSE 'halfvec' END;
END
$$;

COMMENT ON FUNCTION fractality.model_index_type(integer) IS
    'The type a model''s HNSW index casts its embeddings to: vector up to 2 000 dimensions, halfvec above (to 4 000).';

CREATE TABLE fractality.node_embeddings (
    user_id       uuid        NOT NULL DEFAULT fractality.current_user_id(),
    node_id       uuid        NOT NULL,
    model         text        NOT NULL DEFAULT 'default',
    embedding     vector      NOT NULL,
    model_version text,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    staged        boolean     NOT NULL DEFAULT false,
    CONSTRAINT node_embeddings_pkey PRIMARY KEY (user_id, node_id, model),
    CONSTRAINT node_embeddings_node FOREIGN KEY (node_id, user_id)
        REFERENCES fractality.nodes (id, user_id) ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT node_embeddings_model FOREIGN KEY (model)
        REFERENCES fractality.embedding_models (model)
) PARTITION BY HASH (user_id);

COMMENT ON TABLE fractality.node_embeddings IS
    'One embedding per node and model (pgvector), hash-partitioned by tenant; an HNSW index (cosine) per partition and model.';

-- Deleting a node deletes its embeddings; the foreign key's own lookups go through this index
-- (node_id, user_id) rather than the primary key's (user_id, node_id, model).
CREATE INDEX node_embeddings_node ON fractality.node_embeddings (node_id, user_id);

-- Staged embeddings: the rows remember_many writes (staged = true) stay out of the HNSW indexes
-- (whose predicate is `model = ... AND NOT staged`), so that a batch does not pay an index
-- insert per memory; searches read a tenant's staged rows exactly, through this index of them
-- alone, beside its index scan; index_staged_embeddings (and run_maintenance) moves them into
-- the HNSW indexes. Like GIN's pending list: a bulk write is cheap, a search reads the backlog.
CREATE INDEX node_embeddings_staged ON fractality.node_embeddings (user_id, model) WHERE staged;

COMMENT ON COLUMN fractality.node_embeddings.staged IS
    'Written by remember_many and not yet in the model''s HNSW index: searches read it exactly; index_staged_embeddings (run_maintenance) indexes it.';

-- The partitions, fixed at install: the setting fractality.embedding_partitions (default 64), e.g.
--   SET fractality.embedding_partitions = 256; CREATE EXTENSION fractality CASCADE;
-- Each keeps its rows whole up to a page (toast_tuple_target 8160): an embedding of up to about
-- 2 000 dimensions (8 KB) stays in the row instead of going to TOAST in ~2 KB chunks above 2 KB
-- (512 dimensions). A search computes the distance of every row its index scan returns, so a
-- TOASTed embedding cost each returned row a TOAST index probe and four chunk reads (at 1 536
-- dimensions, ~0.3 ms of a 40-row scan). Larger embeddings (halfvec models) still go to TOAST.
DO $$
DECLARE
    setting text := current_setting('fractality.embedding_partitions', true);
    n integer;
BEGIN
    IF setting IS NULL OR setting = '' THEN
        n := 64;
    ELSIF setting !~ '^[0-9]{1,4}$' OR setting::integer NOT BETWEEN 1 AND 1024 THEN
        RAISE EXCEPTION 'invalid value for fractality.embedding_partitions: %', setting
            USING ERRCODE = '22023', HINT = 'The number of partitions of node_embeddings, from 1 to 1024 (default 64).';
    ELSE
        n := setting::integer;
    END IF;
    FOR i IN 0 .. n - 1 LOOP
        EXECUTE format('CREATE TABLE fractality.%I PARTITION OF fractality.node_embeddings
                            FOR VALUES WITH (MODULUS %s, REMAINDER %s)
                            WITH (toast_tuple_target = 8160)',
                       'node_embeddings_p' || lpad(i::text, greatest(2, length((n - 1)::text)), '0'), n, i);
    END LOOP;
END
$$;

-- An embedding's dimension is its model's (22000 naming both), and the model is registered
-- (22023): checked before the row reaches the foreign key or the model's index, by the native
-- trigger function fractality._node_embeddings_check() (src/models.rs: the model's dimension
-- looked up once per statement).
CREATE TRIGGER node_embeddings_check
    BEFORE INSERT OR UPDATE OF model, embedding ON fractality.node_embeddings
    FOR EACH ROW EXECUTE FUNCTION fractality._node_embeddings_check();

-- The dimension of `model` and pgvector's type and operator class for its HNSW indexes, qualified
-- with pgvector's schema (wherever it was installed); 22023 for an unknown model. What
-- build_model_index and build_tenant_graphs build with.
CREATE FUNCTION fractality._model_index_ops(model text, OUT dims integer, OUT index_type text, OUT opclass text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    SELECT m.dims INTO dims FROM fractality.embedding_models m WHERE m.model = _model_index_ops.model;
    IF dims IS NULL THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('unknown embedding model %s', CASE WHEN length(_model_index_ops.model) <= 200 THEN quote_literal(_model_index_ops.model) ELSE format('%L (%s characters)', left(_model_index_ops.model, 197) || '...', length(_model_index_ops.model)) END),
            HINT = 'fractality.embedding_models lists the registered models.';
    END IF;
    SELECT format('%I.%I', n.nspname, fractality.model_index_type(dims)),
           format('%I.%I', n.nspname, fractality.model_index_type(dims) || '_cosine_ops')
      INTO index_type, opclass
      FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
     WHERE e.extname = 'vector';
END
$$;

-- Builds the HNSW index of `model` on every partition of node_embeddings that lacks it (named
-- node_embeddings_<partition>_<model>_hnsw, attached to node_embeddings_<model>_hnsw); returns
-- each partition built and the seconds its build took. Bulk loads drop the index first
-- (drop_model_index), load, then build it here: building is far faster than inserting into it.
CREATE FUNCTION fractality.build_model_index(model text)
RETURNS TABLE (partition_name text, seconds float8)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d integer;
    ty text;
    opclass text;
    parent_index text;
    part record;
    child text;
    t0 timestamptz;
BEGIN
    IF model IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('build_model_index: %s must not be NULL', 'model'),
            HINT = 'Pass a registered model (fractality.embedding_models lists them).';
    END IF;
    SELECT o.dims, o.index_type, o.opclass INTO d, ty, opclass
      FROM fractality._model_index_ops(build_model_index.model) o;
    parent_index := 'node_embeddings_' || build_model_index.model || '_hnsw';
    IF to_regclass(format('fractality.%I', parent_index)) IS NULL THEN
        EXECUTE format('CREATE INDEX %I ON ONLY fractality.node_embeddings USING hnsw ((embedding::%s(%s)) %s) WHERE model = %L AND NOT staged',
                       parent_index, ty, d, opclass, build_model_index.model);
    END IF;
    FOR part IN SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'fractality.node_embeddings'::regclass ORDER BY c.relname
    LOOP
        child := part.relname || '_' || build_model_index.model || '_hnsw';
        CONTINUE WHEN to_regclass(format('fractality.%I', child)) IS NOT NULL;
        t0 := clock_timestamp();
        EXECUTE format('CREATE INDEX %I ON fractality.%I USING hnsw ((embedding::%s(%s)) %s) WHERE model = %L AND NOT staged',
                       child, part.relname, ty, d, opclass, build_model_index.model);
        EXECUTE format('ALTER INDEX fractality.%I ATTACH PARTITION fractality.%I', parent_index, child);
        partition_name := part.relname;
        seconds := date_part('epoch', clock_timestamp() - t0);
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION fractality.build_model_index(text) IS
    'Builds the HNSW index of a model on every partition of node_embeddings that lacks it; returns the seconds each took.';

-- A model's row inserted (by register_model, or by pg_restore from a dump) gets the model's
-- HNSW index on every partition: the indexes made at run time on node_embeddings' partitions,
-- which belong to the extension, are not in a dump; the rows of embedding_models are.
CREATE FUNCTION fractality._embedding_models_index() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM fractality.build_model_index(NEW.model);
    RETURN NULL;
END
$$;

CREATE TRIGGER embedding_models_index
    AFTER INSERT ON fractality.embedding_models
    FOR EACH ROW EXECUTE FUNCTION fractality._embedding_models_index();
-- Also under session_replication_role = replica: a data-only restore loaded that way
-- (docs/OPERATIONS.md) and a logical replica get the index too. (pg_dump --disable-triggers
-- writes ALTER TABLE ... DISABLE TRIGGER ALL instead, which turns this trigger off as well.)
ALTER TABLE fractality.embedding_models ENABLE ALWAYS TRIGGER embedding_models_index;

-- Drops the HNSW index of `model` from every partition (before a bulk load); true when there was one.
CREATE FUNCTION fractality.drop_model_index(model text) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    idx regclass;
    g record;
BEGIN
    IF model IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('drop_model_index: %s must not be NULL', 'model'),
            HINT = 'Pass a registered model (fractality.embedding_models lists them).';
    END IF;
    idx := to_regclass(format('fractality.%I', 'node_embeddings_' || drop_model_index.model || '_hnsw'));
    IF NOT EXISTS (SELECT 1 FROM fractality.embedding_models m WHERE m.model = drop_model_index.model) THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('unknown embedding model %s', CASE WHEN length(drop_model_index.model) <= 200 THEN quote_literal(drop_model_index.model) ELSE format('%L (%s characters)', left(drop_model_index.model, 197) || '...', length(drop_model_index.model)) END),
            HINT = 'fractality.embedding_models lists the registered models.';
    END IF;
    -- the model's tenant graphs go too (build_tenant_graphs builds them again after the load)
    FOR g IN SELECT c.relname FROM pg_class c
              WHERE c.relnamespace = 'fractality'::regnamespace AND c.relkind = 'i'
                AND c.relname ~ ('^t[0-9a-f]{24}_' || drop_model_index.model || '_hnsw$')
    LOOP
        EXECUTE format('DROP INDEX fractality.%I', g.relname);
    END LOOP;
    IF idx IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE format('DROP INDEX %s', idx);
    RETURN true;
END
$$;

COMMENT ON FUNCTION fractality.drop_model_index(text) IS
    'Drops the HNSW index of a model from every partition of node_embeddings, and the model''s tenant graphs (before a bulk load; build_model_index and build_tenant_graphs rebuild them).';

-- Registers an embedding model (name, dimension) and builds its HNSW index on every partition.
-- Idempotent: registering a model again with the same dimension does nothing (and needs no
-- privilege beyond reading embedding_models). A model that holds embeddings is fixed: another
-- dimension for it is an error; one that holds none takes the new dimension (its index rebuilt).
-- Creating indexes needs the owner of node_embeddings: the administrator registers new models.
CREATE FUNCTION fractality.register_model(model text, dims integer) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current_dims integer;
BEGIN
    IF model IS NULL OR dims IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('register_model: %s must not be NULL', CASE WHEN model IS NULL THEN 'model' ELSE 'dims' END),
            HINT = 'Pass a model name and its number of dimensions, e.g. register_model(''text_embedding_3_small'', 1536).';
    END IF;
    IF model !~ '^[a-z][a-z0-9_]{0,31}$' THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for model: %s', CASE WHEN length(model) <= 200 THEN quote_literal(model) ELSE format('%L (%s characters)', left(model, 197) || '...', length(model)) END),
            HINT = 'A model name is a plain identifier: lower-case letters, digits and underscores, starting with a letter, at most 32 characters (e.g. ''text_embedding_3_small'').';
    END IF;
    IF dims < 1 OR dims > 4000 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for dims: %s', dims),
            HINT = 'pgvector''s HNSW indexes take up to 2 000 dimensions as vector and up to 4 000 as halfvec (fractality uses halfvec above 2 000); reduce larger embeddings first (e.g. the dimensions parameter of Matryoshka models).';
    END IF;
    SELECT m.dims INTO current_dims FROM fractality.embedding_models m WHERE m.model = register_model.model;
    IF current_dims = dims THEN
        RETURN;
    END IF;
    IF current_dims IS NULL AND model ~ '^p[0-9]+_' THEN
        -- model m's index on partition p00 is node_embeddings_p00_m_hnsw, which is also the name
        -- of the whole-table index of a model 'p00_m'
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for model: %L', model),
            HINT = 'Names of the form p<digits>_... are taken by the indexes of other models on the partitions of node_embeddings (node_embeddings_p00_<model>_hnsw); choose another.';
    END IF;
    IF NOT pg_has_role((SELECT c.relowner FROM pg_class c
                         WHERE c.oid = 'fractality.node_embeddings'::regclass), 'USAGE') THEN
        RAISE insufficient_privilege USING
            MESSAGE = format('register_model: only the owner of fractality.node_embeddings may register model %L', model),
            HINT = 'A new model builds an HNSW index on every partition: the administrator registers it once; then register_model with the same dimension succeeds for every role.';
    END IF;
    -- one registration of a model at a time: a second session registering it meanwhile waits,
    -- then reads what the first committed (the same dimension: nothing to do)
    PERFORM fractality._lock('register_model ' || model);
    SELECT m.dims INTO current_dims FROM fractality.embedding_models m WHERE m.model = register_model.model;
    IF current_dims = dims THEN
        RETURN;
    END IF;
    IF current_dims IS NOT NULL THEN
        -- the writers of embeddings first: one of this model written meanwhile (staged, it meets
        -- no index that would refuse its dimension) is then seen below, and a later one waits
        -- for the new dimension. A snapshot older than the lock would not see it. ACCESS
        -- EXCLUSIVE at once, which dropping the model's index below takes anyway: a weaker lock
        -- raised to it later was a deadlock with a session that had read embeddings and then
        -- wrote one (40P01, found by a review).
        PERFORM fractality._check_read_committed(
            format('register_model: changing the dimension of model %L', model));
        LOCK TABLE fractality.node_embeddings IN ACCESS EXCLUSIVE MODE;
        IF EXISTS (SELECT 1 FROM fractality.node_embeddings e WHERE e.model = register_model.model) THEN
            RAISE invalid_parameter_value USING
                MESSAGE = format('model %L has %s dimensions and holds embeddings: it cannot change to %s',
                                 model, current_dims, dims),
                HINT = 'A model is fixed once it holds embeddings; register the new one under another name.';
        END IF;
        IF register_model.model = 'default' THEN
            -- the install registers it at 384 and a dump leaves its row out (security.sql), so a
            -- restore would bring it back at 384 and refuse every embedding of another size
            RAISE invalid_parameter_value USING
                MESSAGE = format('model ''default'' has %s dimensions, fixed at install: it cannot change to %s',
                                 current_dims, dims),
                HINT = 'Register a model of its own name for another dimension, e.g. SELECT fractality.register_model(''text_embedding_3_small'', 1536), and pass it as model.';
        END IF;
        PERFORM fractality.drop_model_index(model);
        UPDATE fractality.embedding_models m SET dims = register_model.dims WHERE m.model = register_model.model;
    ELSE
        INSERT INTO fractality.embedding_models (model, dims, created_at)
        VALUES (register_model.model, register_model.dims,
                CASE WHEN register_model.model <> 'default' THEN now() END);
    END IF;
    PERFORM fractality.build_model_index(model);
END
$$;

COMMENT ON FUNCTION fractality.register_model(text, integer) IS
    'Registers an embedding model (a plain identifier, 1 to 4 000 dimensions) and builds its HNSW index on every partition; idempotent.';

-- Moves the caller's staged embeddings (remember_many's) into their models' HNSW indexes, at most
-- `max_rows` of them (NULL: all), oldest first, but for those another session holds (left for
-- the next call); returns how many. As the caller: row-level security limits it to the tenants
-- the caller may write. run_maintenance calls it.
CREATE FUNCTION fractality.index_staged_embeddings(max_rows bigint DEFAULT NULL) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    n bigint;
    tenants uuid[];
    nodes uuid[];
    models text[];
BEGIN
    IF max_rows < 0 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for max_rows: %s', max_rows),
            HINT = 'The most staged embeddings to index in this call, >= 0; NULL indexes every one.';
    END IF;
    -- the oldest max_rows, locked in the order of their keys (as remember_many locks a tenant's),
    -- skipping those another session holds: this never waits, so neither for another caller nor
    -- for a session that holds one and waits for a table run_maintenance holds (its partitions'
    -- and retention's locks, taken first: a deadlock); locked in a
    -- statement of their own and written in the next, whose snapshot sees them as locked (an
    -- UPDATE that locked them in a subquery could wait for a stale version's tuple lock:
    -- sql/queries/decay_lock.sql)
    SELECT array_agg(x.user_id), array_agg(x.node_id), array_agg(x.model) INTO tenants, nodes, models
      FROM (SELECT l.user_id, l.node_id, l.model FROM fractality.node_embeddings l
             WHERE l.staged
               AND (l.user_id, l.node_id, l.model) IN
                   (SELECT s.user_id, s.node_id, s.model FROM fractality.node_embeddings s
                     WHERE s.staged ORDER BY s.updated_at LIMIT max_rows)
             ORDER BY l.user_id, l.node_id, l.model
               FOR NO KEY UPDATE OF l SKIP LOCKED) x;
    UPDATE fractality.node_embeddings e SET staged = false
      FROM ROWS FROM (unnest(tenants), unnest(nodes), unnest(models)) AS x (user_id, node_id, model)
     WHERE e.staged AND e.user_id = x.user_id AND e.node_id = x.node_id AND e.model = x.model;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

COMMENT ON FUNCTION fractality.index_staged_embeddings(bigint) IS
    'Moves staged embeddings (written by remember_many) into their models'' HNSW indexes, at most max_rows (NULL: all), but for those another session holds; returns how many.';

-- Tenant graphs: an HNSW index of one tenant's embeddings of a model alone, beside the
-- partition's index of every tenant there (which keeps them too: crystallize_consensus searches
-- across tenants through it). A partition holds the tenants its hash gives it; in the shared
-- graph a tenant's search steps over the others' rows (pgvector's iterative scan, filtering by
-- tenant), so its cost grows with its share of the partition: a tenant of 10 000 among 40 000
-- rows paid 3.6-4.6 ms where its own graph answers in 0.8-0.9 ms (1M x 384, 2026-12-03). A
-- search reaches the tenant's graph by planning its query for that tenant (src/search.rs): the
-- index predicate names the tenant, which only a plan made for its value can match.
--   t<24 hex digits of md5(user_id)>_<model>_hnsw   ON the tenant's partition
--   WHERE model = <model> AND NOT staged AND left(md5(user_id::text), 24) = <those 24 digits>
-- Each row of such a tenant is inserted into two graphs: the cost of its writes to the indexes
-- doubles. The default min_rows, 500, is fractality.exact_scan_limit's default: a tenant too
-- large to be read whole gets a graph (at 100k x 384, tenants of ~1 000: find_resonant 1.57 ->
-- 1.18 ms, recall 1.42 -> 1.05 ms, remember 2.13 -> 2.87 ms; docs/BENCHMARKS.md). The catalog
-- shows every role the index's name and predicate: both name a digest of the tenant, not the
-- tenant, whose id is all a session needs to act as it; the index's size tells the tenant's.
-- The search (sql/queries/tenant_nearest.sql) states the same digest of its tenant, which its
-- plan, made for that tenant, folds into the constant the predicate names.
--
-- build_tenant_graphs builds the graph of every tenant holding at least min_rows embeddings of
-- `model` that lacks one, and drops those of tenants now under half of min_rows (or gone);
-- returns what it did; one call at a time (a second waits for the first). Creating and dropping
-- indexes needs the owner of node_embeddings (42501 for any other role). The call is one
-- transaction: a build's SHARE lock on the tenant's partition (writes wait, reads go on), and a
-- drop's ACCESS EXCLUSIVE one, last until the whole call commits. Not in a dump, like the models' indexes:
-- run it again after a restore (searches go on either way: without the graph a tenant is
-- searched through the shared one).
CREATE FUNCTION fractality.build_tenant_graphs(model text DEFAULT 'default', min_rows bigint DEFAULT 500)
RETURNS TABLE (index_name text, partition_name text, tenant_rows bigint, action text, seconds float8)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    d integer;
    ty text;
    opclass text;
    t record;
    t0 timestamptz;
    tenants uuid[];
    parts regclass[];
    counts bigint[];
    seen text[] := '{}';
    shrunk integer[] := '{}';
    k integer;
BEGIN
    IF model IS NULL OR min_rows IS NULL THEN
        RAISE null_value_not_allowed USING
            MESSAGE = format('build_tenant_graphs: %s must not be NULL', CASE WHEN model IS NULL THEN 'model' ELSE 'min_rows' END),
            HINT = 'Pass a registered model and the fewest embeddings a tenant holds to get its own graph, e.g. build_tenant_graphs(''default'', 500).';
    END IF;
    IF min_rows < 1 THEN
        RAISE invalid_parameter_value USING
            MESSAGE = format('invalid value for min_rows: %s', min_rows),
            HINT = 'The fewest embeddings of the model a tenant holds to get its own graph, >= 1 (default 500).';
    END IF;
    IF NOT pg_has_role((SELECT c.relowner FROM pg_class c
                         WHERE c.oid = 'fractality.node_embeddings'::regclass), 'USAGE') THEN
        RAISE insufficient_privilege USING
            MESSAGE = format('build_tenant_graphs: only the owner of fractality.node_embeddings may build tenant graphs (model %s)', CASE WHEN length(build_tenant_graphs.model) <= 200 THEN quote_literal(build_tenant_graphs.model) ELSE format('%L (%s characters)', left(build_tenant_graphs.model, 197) || '...', length(build_tenant_graphs.model)) END),
            HINT = 'A tenant graph is an index on a partition of node_embeddings: the administrator builds them (e.g. after run_maintenance).';
    END IF;
    SELECT o.dims, o.index_type, o.opclass INTO d, ty, opclass
      FROM fractality._model_index_ops(build_tenant_graphs.model) o;
    -- one build at a time: a second call waits for the first to commit, then finds its graphs
    -- (two at once would both create the same index, and the second would fail)
    PERFORM fractality._lock('build_tenant_graphs');
    -- the tenants first, all of them (an index cannot be built on a partition a scan still reads)
    SELECT coalesce(array_agg(x.user_id ORDER BY x.part::text, x.user_id), '{}'),
           coalesce(array_agg(x.part ORDER BY x.part::text, x.user_id), '{}'),
           coalesce(array_agg(x.n ORDER BY x.part::text, x.user_id), '{}')
      INTO tenants, parts, counts
      FROM (SELECT e.user_id, e.tableoid::regclass AS part, count(*) AS n
              FROM fractality.node_embeddings e
             WHERE e.model = build_tenant_graphs.model
             GROUP BY e.user_id, e.tableoid) x;
    FOR i IN 1 .. cardinality(tenants) LOOP
        -- the name src/search.rs (tenant_path.sql) looks for
        index_name := 't' || left(md5(tenants[i]::text), 24) || '_' || build_tenant_graphs.model || '_hnsw';
        seen := seen || index_name;
        partition_name := (SELECT c.relname FROM pg_class c WHERE c.oid = parts[i]);
        tenant_rows := counts[i];
        t0 := clock_timestamp();
        IF counts[i] >= min_rows AND to_regclass(format('fractality.%I', index_name)) IS NULL THEN
            EXECUTE format('CREATE INDEX %I ON %s USING hnsw ((embedding::%s(%s)) %s) WHERE model = %L AND NOT staged AND left(md5(user_id::text), 24) = %L',
                           index_name, parts[i], ty, d, opclass, build_tenant_graphs.model, left(md5(tenants[i]::text), 24));
            action := 'built';
        ELSIF counts[i] < min_rows / 2.0 AND to_regclass(format('fractality.%I', index_name)) IS NOT NULL THEN
            -- dropped after every build: a drop locks its partition against reads to the end of
            -- the call, so the searches of the tenants there would wait through the builds after
            -- it
            shrunk := shrunk || i;
            CONTINUE;
        ELSE
            CONTINUE;
        END IF;
        seconds := date_part('epoch', clock_timestamp() - t0);
        RETURN NEXT;
    END LOOP;
    -- (seen holds each tenant's index name at its place)
    FOREACH k IN ARRAY shrunk LOOP
        t0 := clock_timestamp();
        index_name := seen[k];
        EXECUTE format('DROP INDEX fractality.%I', index_name);
        partition_name := (SELECT c.relname FROM pg_class c WHERE c.oid = parts[k]);
        tenant_rows := counts[k];
        action := 'dropped';
        seconds := date_part('epoch', clock_timestamp() - t0);
        RETURN NEXT;
    END LOOP;
    -- the graphs of tenants that hold no embedding of the model any more
    FOR t IN SELECT c.relname, p.relname AS part
               FROM pg_class c
               JOIN pg_index i ON i.indexrelid = c.oid
               JOIN pg_class p ON p.oid = i.indrelid
              WHERE c.relnamespace = 'fractality'::regnamespace AND c.relkind = 'i'
                AND c.relname ~ ('^t[0-9a-f]{24}_' || build_tenant_graphs.model || '_hnsw$')
                AND c.relname <> ALL (seen)
              ORDER BY c.relname
    LOOP
        t0 := clock_timestamp();
        EXECUTE format('DROP INDEX fractality.%I', t.relname);
        index_name := t.relname;
        partition_name := t.part;
        tenant_rows := 0;
        action := 'dropped';
        seconds := date_part('epoch', clock_timestamp() - t0);
        RETURN NEXT;
    END LOOP;
END
$$;

COMMENT ON FUNCTION fractality.build_tenant_graphs(text, bigint) IS
    'Builds an HNSW index of its own for every tenant holding at least min_rows embeddings of the model (searched instead of the partition''s shared index), and drops those of tenants under half of it; the owner of node_embeddings runs it.';

SELECT fractality.register_model('default', 384);
