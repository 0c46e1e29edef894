-- ---- streams: a stream point's resonance vector is bounded --------------------------------------
-- (the archive packs up to 1 000 points of a node in one row: vectors of any size could make that
-- row too large to write, and every archiving run fail). A point of 0.4.0 holding more than
-- 1 000 000 elements stops the update here with 23514: shorten it (or archive it elsewhere) first.
ALTER TABLE fractality.consciousness_streams
    ADD CONSTRAINT consciousness_streams_vector_size CHECK (cardinality(resonance_vector) <= 1000000);

-- and the archive's rows of them are bounded in size too
--@ file! archive.sql -- Packs the stream rows that the query `src` yields||-- Moves every stream point with time < cutoff
