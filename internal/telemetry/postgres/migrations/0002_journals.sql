-- 0002: a replay point per ingest journal (issue 12). In a cluster each
-- node's durable ingest is its own JetStream subject with its own stream
-- sequence numbers, so each node records the last one it stored here,
-- keyed by the journal's name (the node id). telemetry_state keeps the
-- replay point of the unnamed journal (one node's write-ahead log).
CREATE TABLE telemetry_journals (
    journal  text COLLATE "C" NOT NULL PRIMARY KEY,
    last_seq bigint NOT NULL
);
