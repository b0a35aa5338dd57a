-- 0003 (assigned 0007 for the s3 merge): as SQLite migration 0010. A
-- symmetricKey credential (Azure IoT Hub SAS tokens) keeps its key, sealed
-- with the data directory's seal.key; '' for other credentials.
ALTER TABLE credentials ADD COLUMN sealed_key text NOT NULL DEFAULT '';
