-- Whether the words $1 make a text search recall can run (web-search syntax, as memory_text.sql
-- reads them): a text of stop words alone ("what is it?") makes none, and is no words.
SELECT pg_catalog.numnode(pg_catalog.websearch_to_tsquery('english'::pg_catalog.regconfig, $1)) > 0
