-- pgvector interop: native functions read vector datums in place.
SELECT fractality.cosine_similarity('[1,0,0]', '[1,0,0]') AS same,
       fractality.cosine_similarity('[1,0]', '[0,1]') AS orthogonal,
       fractality.cosine_similarity('[1,2]', '[-1,-2]') AS opposite,
       fractality.cosine_similarity('[0,0]', '[1,1]') AS zero_norm,
       fractality.cosine_similarity(NULL, '[1,1]') AS null_arg;
SELECT round(fractality.cosine_similarity('[1,2,3]', '[3,2,1]')::numeric, 6) AS native,
       round((1 - ('[1,2,3]'::vector <=> '[3,2,1]'::vector))::numeric, 6) AS pgvector;
SELECT fractality.normalize_vector('[3,4]') AS unit, fractality.vector_dims_native('[1,2,3,4,5]') AS dims;
-- errors carry a SQLSTATE: 22000 for a dimension mismatch, 22023 for a zero vector
SELECT FROM regress.each_error(ARRAY['SELECT fractality.cosine_similarity(''[1,2,3]'', ''[1,2]'')']);
SELECT FROM regress.each_error(ARRAY['SELECT fractality.normalize_vector(''[0,0,0]'')']);
-- a toasted 2000-d value and a short-header 3-d value read from a table
CREATE TEMP TABLE vt (id int, v vector);
INSERT INTO vt SELECT 1, array_agg((i % 5 + 1)::real)::vector FROM generate_series(1, 2000) i;
INSERT INTO vt VALUES (2, '[1,2,3]');
SELECT id, fractality.vector_dims_native(v) AS dims,
       round(fractality.cosine_similarity(v, v)::numeric, 9) AS self_similarity
  FROM vt ORDER BY id;
