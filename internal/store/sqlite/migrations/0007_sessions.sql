-- 0007: the broker's persistent MQTT sessions and the QoS 1/2 messages in
-- flight to them, so that both survive a restart. data is the broker's
-- encoding (opaque here).
CREATE TABLE mqtt_sessions (
	client_id  TEXT PRIMARY KEY,
	data       BLOB NOT NULL,
	updated_at INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE mqtt_session_messages (
	client_id TEXT NOT NULL,
	packet_id INTEGER NOT NULL,
	data      BLOB NOT NULL,
	PRIMARY KEY (client_id, packet_id)
) WITHOUT ROWID;
