-- ---- partitions: rows the default partitions caught move into monthly partitions ------------

--@ file! archive.sql -- Creates the monthly partitions of consciousness_streams and experience_events from the current||-- ---- retention policies
--@ file! archive.sql -- ---- retention policies||-- ---- maintenance
