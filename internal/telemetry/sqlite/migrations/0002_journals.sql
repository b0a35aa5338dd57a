-- 0002: a replay point per named ingest journal (issue 12), as in the
-- PostgreSQL telemetry schema: a store opened for a journal (OpenJournal)
-- keeps the last sequence number it stored in its own row here; the
-- unnamed journal (one node's write-ahead log) keeps state.last_seq.
CREATE TABLE journals (
    journal  TEXT    NOT NULL PRIMARY KEY,
    last_seq INTEGER NOT NULL
) STRICT;
