-- 0006: the broker's retained messages, so that they survive a restart.
-- data is the broker's encoding of the message (opaque here).
CREATE TABLE retained (
	topic      TEXT PRIMARY KEY,
	data       BLOB NOT NULL,
	updated_at INTEGER NOT NULL
) WITHOUT ROWID;
